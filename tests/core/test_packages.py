# SPDX-License-Identifier: GPL-2.0-or-later
"""Deep learning packages (.dlpk): loading, the extraction cache, the choice of .emd, hostile archives, create_package."""

from __future__ import annotations

import json
import stat
import struct
import uuid
import zipfile
from pathlib import Path

import pytest
from builders import conv_module, export_onnx, write_emd
from dltools.core.errors import ModelDefinitionError, PackageError
from dltools.core.model import packages
from dltools.core.model.definition import ClassInfo
from dltools.core.model.loader import load_model_definition
from dltools.core.model.packages import create_package, extract_package, package_properties


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return path


@pytest.fixture
def landcover_dlpk(testdata, tmp_path) -> Path:
    folder = testdata("esri", "landcover")
    return _zip(tmp_path / "landcover.dlpk", {"trained.emd": folder / "trained.emd", "trained.onnx": folder / "trained.onnx"})


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny .emd + .onnx pair built here (no shared test data needed)."""
    folder = tmp_path_factory.mktemp("small")
    export_onnx(conv_module(3, 2, 3), folder / "net.onnx", 3, 32)
    emd = write_emd(folder / "net.emd", "net.onnx", classes=[(0, "water", (0, 0, 255)), (1, "land", (0, 128, 0))])
    return emd, folder / "net.onnx"


def test_landcover_package_loads_from_the_cache(landcover_dlpk, tmp_path, testdata):
    cache = tmp_path / "cache"
    md = load_model_definition(landcover_dlpk, cache_dir=cache)
    assert (md.origin, md.source, md.package_path) == ("dlpk", str(landcover_dlpk), landcover_dlpk.resolve())
    assert md.model_file is not None and md.model_file.is_file()
    assert md.model_file.parent.parent == cache
    assert md.model_file.name == "trained.onnx"
    assert md.model_file.read_bytes() == testdata("esri", "landcover", "trained.onnx").read_bytes()
    assert (md.model_padding, md.data_range, md.model_format_kind) == (64, (0.0, 1.0), "onnx")
    assert [c.name for c in md.classes][:2] == ["Evergreen Forest", "Grassland/Herbaceous"]
    assert _tree(md.model_file.parent) == [".complete", "trained.emd", "trained.onnx"]


def test_second_load_reuses_the_cache(landcover_dlpk, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_model_definition(landcover_dlpk, cache_dir=cache)
    stamp = first.model_file.stat().st_mtime_ns

    def no_extraction(*args, **kwargs):
        raise AssertionError("the package was extracted again")

    monkeypatch.setattr(packages.tempfile, "mkdtemp", no_extraction)
    second = load_model_definition(landcover_dlpk, cache_dir=cache)
    assert second.model_file == first.model_file
    assert second.model_file.stat().st_mtime_ns == stamp
    assert len(list(cache.iterdir())) == 1


def test_incomplete_cache_entry_is_extracted_again(small_model, tmp_path):
    emd, onnx = small_model
    dlpk = _zip(tmp_path / "net.dlpk", {"net.emd": emd, "net.onnx": onnx})
    cache = tmp_path / "cache"
    emd_path = extract_package(dlpk, cache_dir=cache)
    (emd_path.parent / ".complete").unlink()
    (emd_path.parent / "net.onnx").write_bytes(b"truncated")
    again = extract_package(dlpk, cache_dir=cache)
    assert again == emd_path
    assert (again.parent / "net.onnx").read_bytes() == onnx.read_bytes()


def test_emd_named_like_the_package_wins(small_model, tmp_path):
    emd, onnx = small_model
    other = json.loads(emd.read_text())
    other["ModelType"] = "ObjectClassification"
    dlpk = _zip(tmp_path / "net.dlpk", {"aaa.emd": json.dumps(other).encode(), "net.emd": emd, "net.onnx": onnx})
    assert extract_package(dlpk, cache_dir=tmp_path / "c").name == "net.emd"
    assert load_model_definition(dlpk, cache_dir=tmp_path / "c").model_type == "ImageClassification"


def test_several_emds_without_a_winner(small_model, tmp_path):
    emd, onnx = small_model
    dlpk = _zip(tmp_path / "pkg.dlpk", {"b.emd": emd, "a.emd": emd, "net.onnx": onnx})
    with pytest.raises(PackageError) as info:
        extract_package(dlpk, cache_dir=tmp_path / "c")
    assert str(info.value) == ("Package 'pkg.dlpk' has several .emd files (b.emd, a.emd) and none is named like the "
                               "package ('pkg.emd'): keep one, or rename the one to use")


def test_emd_one_folder_down(small_model, tmp_path):
    emd, onnx = small_model
    dlpk = _zip(tmp_path / "pkg.dlpk", {"model/net.emd": emd, "model/net.onnx": onnx})
    md = load_model_definition(dlpk, cache_dir=tmp_path / "c")
    assert md.model_file.relative_to(tmp_path / "c").parts[1:] == ("model", "net.onnx")


def test_package_without_emd(small_model, tmp_path):
    dlpk = _zip(tmp_path / "pkg.dlpk", {"net.onnx": small_model[1], "deep/er/x.emd": b"{}"})
    with pytest.raises(PackageError) as info:
        load_model_definition(dlpk, cache_dir=tmp_path / "c")
    assert str(info.value) == "Package 'pkg.dlpk' has no .emd model definition at its top level"


def test_package_whose_model_file_is_missing(small_model, tmp_path):
    dlpk = _zip(tmp_path / "pkg.dlpk", {"pkg.emd": small_model[0]})
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(dlpk, cache_dir=tmp_path / "c")
    assert str(info.value).startswith("ModelFile 'net.onnx' not found next to the .emd (")


# ------------------------------------------------------------------------------------------ hostile archives
def _symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg.emd", b"{}")
        link = zipfile.ZipInfo("link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return path


def _set_declared_sizes(path: Path, sizes: dict[str, int]) -> Path:
    """Rewrite the sizes a zip's central directory (and local headers) declare for some members."""
    data = bytearray(path.read_bytes())
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        pos = data.find(sig)
        while pos >= 0:
            (name_len,) = struct.unpack_from("<H", data, pos + name_len_at)
            name = bytes(data[pos + name_at:pos + name_at + name_len]).decode()
            if name in sizes:
                struct.pack_into("<I", data, pos + size_at, sizes[name])
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))
    return path


def _bomb_zip(path: Path) -> Path:
    """80 MB of zeros that deflate to well under 1 MB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg.emd", b"{}")
        with zf.open("zeros.bin", "w") as dst:
            block = bytes(1 << 20)
            for _ in range(80):
                dst.write(block)
    return path


def _huge_declared_zip(path: Path) -> Path:
    _zip(path, {"pkg.emd": b"{}", "a.bin": b"a", "b.bin": b"b", "c.bin": b"c"})
    return _set_declared_sizes(path, {n: 0xFFFFFFF0 for n in ("a.bin", "b.bin", "c.bin")})


def _lying_zip(path: Path) -> Path:
    _zip(path, {"pkg.emd": b"{}", "big.bin": bytes(1_000_000)})
    return _set_declared_sizes(path, {"big.bin": 1000})


_EVIL_ABSOLUTE = f"/tmp/dltools-evil-{uuid.uuid4().hex}"

HOSTILE = {
    "zip-slip": (lambda p: _zip(p, {"pkg.emd": b"{}", "../evil.txt": b"evil"}),
                 "Package 'pkg.dlpk' contains a path leaving its folder ('../evil.txt'): refused"),
    "zip-slip-nested": (lambda p: _zip(p, {"pkg.emd": b"{}", "a/../../evil.txt": b"evil"}),
                        "Package 'pkg.dlpk' contains a path leaving its folder ('a/../../evil.txt'): refused"),
    "absolute": (lambda p: _zip(p, {"pkg.emd": b"{}", _EVIL_ABSOLUTE: b"evil"}),
                 f"Package 'pkg.dlpk' contains an absolute path '{_EVIL_ABSOLUTE}': refused"),
    "windows-absolute": (lambda p: _zip(p, {"pkg.emd": b"{}", "C:/evil.txt": b"evil"}),
                         "Package 'pkg.dlpk' contains an absolute path 'C:/evil.txt': refused"),
    "symlink": (_symlink_zip, "Package 'pkg.dlpk' contains a symbolic link 'link': refused"),
    "bomb-ratio": (_bomb_zip, "Package 'pkg.dlpk' would unpack to 80 MB from 0.1 MB (ratio over 200): refused as a "
                              "possible zip bomb"),
    "bomb-declared": (_huge_declared_zip, "Package 'pkg.dlpk' would unpack to 12.0 GB, more than the 8 GB limit: "
                                          "refused as a possible zip bomb"),
    "lying-size": (_lying_zip, "Package 'pkg.dlpk' is damaged: member 'big.bin' does not match its declared size and "
                               "checksum (Bad CRC-32 for file 'big.bin')"),
    "not-a-zip": (lambda p: p.write_bytes(b'{"ModelType": "ImageClassification"}'),
                  "'pkg.dlpk' is not a deep learning package: a .dlpk must be a zip archive"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_package_is_refused_and_writes_nothing(case, tmp_path):
    build, message = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    dlpk = work / "pkg.dlpk"
    build(dlpk)
    cache = work / "cache"
    before = _tree(tmp_path)
    with pytest.raises(PackageError) as info:
        load_model_definition(dlpk, cache_dir=cache)
    assert str(info.value) == message
    after = [p for p in _tree(tmp_path) if p != "work/cache"]
    assert after == before
    assert not cache.exists() or list(cache.iterdir()) == []
    assert not Path(_EVIL_ABSOLUTE).exists()
    assert not (tmp_path / "evil.txt").exists()


def test_too_many_members(tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "MAX_MEMBERS", 3)
    dlpk = _zip(tmp_path / "pkg.dlpk", {f"{i}.txt": b"x" for i in range(4)})
    with pytest.raises(PackageError) as info:
        extract_package(dlpk, cache_dir=tmp_path / "c")
    assert str(info.value) == "Package 'pkg.dlpk' has 4 files; refusing more than 3"


def test_missing_package(tmp_path):
    with pytest.raises(PackageError) as info:
        extract_package(tmp_path / "none.dlpk", cache_dir=tmp_path / "c")
    assert str(info.value) == f"Package '{tmp_path / 'none.dlpk'}' does not exist"


def test_extract_to_a_destination(small_model, tmp_path):
    emd, onnx = small_model
    dlpk = _zip(tmp_path / "net.dlpk", {"net.emd": emd, "net.onnx": onnx, "docs/readme.txt": b"hello"})
    out = tmp_path / "out"
    assert extract_package(dlpk, destination=out) == out / "net.emd"
    assert _tree(out) == ["docs", "docs/readme.txt", "net.emd", "net.onnx"]
    with pytest.raises(PackageError) as info:
        extract_package(dlpk, destination=out)
    assert str(info.value) == f"Output folder '{out}' is not empty: choose an empty or new folder"


# ------------------------------------------------------------------------------------------ create_package
def test_create_package_round_trip(small_model, tmp_path):
    emd, onnx = small_model
    readme = tmp_path / "README.txt"
    readme.write_text("about the model", encoding="utf-8")
    out = create_package(emd, tmp_path / "out" / "mymodel", extra_files=[readme],
                         description="A tiny test model", summary="tiny", tags="test,onnx")
    assert out == tmp_path / "out" / "mymodel.dlpk"
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["README.txt", "mymodel.emd", "net.onnx"]
        inner = json.loads(zf.read("mymodel.emd"))
    assert inner["ModelFile"] == "net.onnx"
    assert inner["QGISPlugin"] == {"description": "A tiny test model", "summary": "tiny", "tags": "test,onnx"}
    assert package_properties(inner) == {"framework": "ONNX", "model_type": "ImageClassification", "model_name": "",
                                         "description": "A tiny test model", "summary": "tiny", "tags": "test,onnx"}
    md = load_model_definition(out, cache_dir=tmp_path / "cache")
    assert md.origin == "dlpk"
    assert md.classes == [ClassInfo(0, "water", (0, 0, 255)), ClassInfo(1, "land", (0, 128, 0))]
    assert md.model_file.read_bytes() == onnx.read_bytes()
    assert not list((tmp_path / "out").glob(".*partial"))


def test_create_package_from_the_esri_landcover_emd(testdata, tmp_path):
    out = create_package(testdata("esri", "landcover", "trained.emd"), tmp_path / "landcover.dlpk")
    md = load_model_definition(out, cache_dir=tmp_path / "cache")
    assert (md.model_padding, len(md.classes), md.model_file.name) == (64, 6, "trained.onnx")


def test_create_package_with_a_missing_model_file(tmp_path):
    emd = write_emd(tmp_path / "x.emd", "missing.onnx")
    with pytest.raises(PackageError) as info:
        create_package(emd, tmp_path / "x.dlpk")
    assert str(info.value) == (f"ModelFile 'missing.onnx' referenced by 'x.emd' not found ({tmp_path / 'missing.onnx'}): "
                               "the package would be incomplete")
    assert _tree(tmp_path) == ["x.emd"]


def test_create_package_refuses_a_second_emd(small_model, tmp_path):
    emd, _ = small_model
    with pytest.raises(PackageError) as info:
        create_package(emd, tmp_path / "x.dlpk", extra_files=[emd])
    assert str(info.value) == "Extra file 'net.emd' is a second .emd: a package holds exactly one"
    assert _tree(tmp_path) == []

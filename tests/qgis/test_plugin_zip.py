# SPDX-License-Identifier: GPL-2.0-or-later
"""`make package` builds a zip the QGIS plugin repository accepts and QGIS installs.

``repository_problems`` checks what plugins.qgis.org's upload validator checks (size limit, a readable zip, no
path tricks, no ``.pyc``/``__pycache__``/``.git``/``__MACOSX``, one top-level folder with a valid name holding
``__init__.py`` and ``metadata.txt``, a ``[general]`` section with every mandatory field, an icon that is in the
zip, a LICENSE, well-formed addresses) plus this project's rules (the folder is ``dltools``, no tests, test data,
build or docs output, no binaries or model files). The zip is then unpacked with QGIS's own installer code and
loaded in ``qgis_process``.
"""

from __future__ import annotations

import configparser
import importlib.util
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "dltools"
REPOSITORY_LIMIT = 25_000_000  # bytes: plugins.qgis.org refuses bigger uploads
WELL_UNDER = 2_000_000  # what this plugin (Python files, an icon, the README) must stay under
MANDATORY = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository",
             "tracker")
FORBIDDEN_DIRS = ("__MACOSX", ".git", "__pycache__")
NOT_PLUGIN_DIRS = ("tests", "test", "build", "dist", "docs", "_build", "scripts", ".ci", ".venv")
BINARY_SUFFIXES = (".so", ".pyd", ".dll", ".dylib", ".exe", ".o", ".a", ".class", ".jar", ".bin", ".onnx", ".pt",
                   ".pth", ".pb", ".h5", ".tflite", ".dlpk", ".whl", ".tif", ".tiff", ".npy")
BINARY_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"PK\x03\x04")


def repository_problems(data: bytes) -> list[str]:
    """Every reason the plugin repository (or this project) would refuse the zip ``data``; [] when none."""
    problems = []
    if len(data) > REPOSITORY_LIMIT:
        problems.append(f"size {len(data)} bytes is over the repository's limit {REPOSITORY_LIMIT}")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return problems + ["not a zip file"]
    names = zf.namelist()
    if not names:
        return problems + ["empty zip"]
    bad = zf.testzip()
    if bad:
        problems.append(f"bad CRC in {bad}")
    for name in names:
        parts = name.split("/")
        if ".." in name or name.startswith("/") or "\\" in name:
            problems.append(f"path information in {name}")
        if ".pyc" in name:
            problems.append(f".pyc file {name}")
        for part in parts[:-1]:
            if part in FORBIDDEN_DIRS or part in NOT_PLUGIN_DIRS:
                problems.append(f"{part}/ directory in {name}")
        if name.endswith("/"):
            continue
        if name.lower().endswith(BINARY_SUFFIXES) or zf.read(name)[:4].startswith(BINARY_MAGIC):
            problems.append(f"binary file {name}")
    tops = sorted({name.split("/")[0] for name in names})
    if len(tops) != 1 or not all("/" in n for n in names):
        return problems + [f"not exactly one top-level folder: {tops}"]
    top = tops[0]
    if not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", top):
        problems.append(f"invalid folder name {top!r}")
    if top != PLUGIN:
        problems.append(f"top-level folder {top!r} is not named like the plugin ({PLUGIN!r})")
    for required in ("__init__.py", "metadata.txt", "LICENSE"):
        if f"{top}/{required}" not in names:
            problems.append(f"{top}/{required} missing")
    if f"{top}/metadata.txt" not in names:
        return problems
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    try:
        parser.read_string(zf.read(f"{top}/metadata.txt").decode("utf-8"))
    except (UnicodeDecodeError, configparser.Error) as exc:
        return problems + [f"metadata.txt does not parse: {exc}"]
    if not parser.has_section("general"):
        return problems + ["metadata.txt has no [general] section"]
    meta = dict(parser.items("general"))
    qgis_reader = configparser.ConfigParser()  # how QGIS's plugin manager reads it: '%' interpolation is on
    try:
        qgis_reader.read_string(zf.read(f"{top}/metadata.txt").decode("utf-8"))
        for key in meta:
            qgis_reader.get("general", key)
    except configparser.Error as exc:
        problems.append(f"QGIS cannot read metadata.txt: {exc}")
    missing = [key for key in MANDATORY if not meta.get(key, "").strip()]
    if missing:
        problems.append(f"metadata.txt lacks mandatory field(s): {', '.join(missing)}")
    if "/" in meta.get("author", ""):
        problems.append("author contains a slash")
    for key in ("repository", "tracker", "homepage"):
        if key in meta:
            url = urlparse(meta[key])
            if not (url.scheme and url.netloc):
                problems.append(f"{key} is not an address: {meta[key]!r}")
    icon = meta.get("icon", "").removeprefix("./")
    if icon and f"{top}/{icon}" not in names:
        problems.append(f"icon {icon} is not in the zip")
    for flag in ("experimental", "deprecated", "server"):
        if flag in meta and meta[flag].strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            problems.append(f"{flag} is not a boolean: {meta[flag]!r}")
    return problems


def _metadata() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    return dict(parser.items("general"))


@pytest.fixture(scope="module")
def built():
    """``make package`` once for the module: (zip path, its stderr)."""
    if not (ROOT / ".git").exists():
        pytest.skip("make package lists files with git; this is not a git checkout")
    proc = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = ROOT / "dist" / f"{PLUGIN}-{_metadata()['version']}.zip"
    assert path.is_file(), proc.stdout
    return path, proc.stderr


def test_the_zip_passes_the_repository_checks(built):
    path, _ = built
    assert repository_problems(path.read_bytes()) == []
    assert path.stat().st_size < WELL_UNDER, path.stat().st_size


def test_the_minimum_qgis_version_is_one_the_suite_runs_on(qgis_app):
    from qgis.core import Qgis

    major, minor = (int(x) for x in _metadata()["qgisMinimumVersion"].split(".")[:2])
    assert major * 10000 + minor * 100 <= Qgis.QGIS_VERSION_INT, (
        f"qgisMinimumVersion {major}.{minor} is above the QGIS this suite runs ({Qgis.QGIS_VERSION})")
    assert _metadata()["experimental"].strip().lower() == "true"  # until the GUI tests pass on two QGIS versions


def test_the_zip_holds_the_plugin_and_nothing_else(built):
    path, _ = built
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    tracked = subprocess.run(["git", "ls-files", "--", "algorithms", "core", "resources"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    expected = {f"{PLUGIN}/{n}" for n in tracked if (ROOT / n).is_file()}
    expected |= {f"{PLUGIN}/{n}" for n in ("metadata.txt", "__init__.py", "plugin.py", "LICENSE", "README.md",
                                            "requirements.txt")}
    expected |= {f"{PLUGIN}/{p.relative_to(ROOT)}" for p in (ROOT / "i18n").glob("*.qm")}
    # the Help button's page, rendered from the README, and the docs pages it links to (each docs/x.md as x.html)
    linked = set(re.findall(r"\]\(docs/([\w-]+)\.md", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert {"classify_objects", "architecture"} <= linked
    expected |= {f"{PLUGIN}/resources/help/{page}.html" for page in linked | {"index"}}
    assert set(names) == expected
    page = zf.read(f"{PLUGIN}/resources/help/index.html").decode("utf-8")
    assert 'id="classify-pixels-using-deep-learning"' in page and "<img" not in page
    assert zf.read(f"{PLUGIN}/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert b"GNU GENERAL PUBLIC LICENSE" in zf.read(f"{PLUGIN}/LICENSE") and b"Version 2" in zf.read(f"{PLUGIN}/LICENSE")
    assert zf.read(f"{PLUGIN}/metadata.txt") == (ROOT / "metadata.txt").read_bytes()
    # QGIS's "Install from ZIP" names the plugin after the folder of the first metadata.txt, sorted
    assert sorted(n for n in names if n.endswith("metadata.txt"))[0] == f"{PLUGIN}/metadata.txt"


def test_every_link_of_the_packaged_help_leads_somewhere(built):
    """Each page of the zip's help: a relative link names a page that is in the zip, at an anchor that page has;
    an in-page anchor exists; nothing links to a Markdown file (the zip has no docs/ folder)."""
    path, _ = built
    zf = zipfile.ZipFile(path)
    folder = f"{PLUGIN}/resources/help/"
    pages = {n[len(folder):]: zf.read(n).decode("utf-8") for n in zf.namelist() if n.startswith(folder)}
    ids = {name: set(re.findall(r'id="([^"]+)"', text)) for name, text in pages.items()}
    checked = 0
    for name, text in pages.items():
        for href in re.findall(r'href="([^"]*)"', text):
            if href.startswith(("http://", "https://")):
                assert urlparse(href).netloc, (name, href)
                continue
            target, _, anchor = href.partition("#")
            target = target or name
            assert target in pages, f"{name} links to {href!r}, which is not in the zip's help"
            assert not anchor or anchor in ids[target], f"{name} links to {href!r}: {target} has no such anchor"
            checked += 1
    assert checked > 20 and 'href="classify_objects.html"' in pages["index.html"]
    assert 'href="index.html#devices-and-threads"' in pages["classify_objects.html"]


def test_the_help_refuses_a_link_it_cannot_ship(tmp_path):
    """A relative link to something that is not a Markdown page of the repository stops packaging, naming it."""
    spec = importlib.util.spec_from_file_location("dltools_help_page", ROOT / "algorithms" / "help_page.py")
    help_page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(help_page)
    (tmp_path / "README.md").write_text("# Tool\n\nSee [the code](core/x.py).\n", encoding="utf-8")
    with pytest.raises(ValueError, match="README.md links to 'core/x.py'"):
        help_page.help_pages(tmp_path / "README.md")


def test_the_same_files_give_the_same_zip(built):
    path, _ = built
    first = path.read_bytes()
    proc = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes() == first


def test_package_warns_while_addresses_are_placeholders(built):
    _, stderr = built
    meta = _metadata()
    held = [key for key in ("repository", "tracker", "homepage", "email") if "PLACEHOLDER" in meta.get(key, "")]
    if held:
        assert "WARNING" in stderr and all(key in stderr for key in held), stderr
    else:
        assert "placeholder" not in stderr.lower(), stderr


def _packager():
    spec = importlib.util.spec_from_file_location("package_plugin", ROOT / "scripts" / "package_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_refuses_metadata_without_a_mandatory_field():
    packager = _packager()
    meta = _metadata()
    assert packager.check_metadata(meta) == []
    del meta["email"]
    meta["about"] = " "
    errors = packager.check_metadata(meta)
    assert errors and "email" in errors[0] and "about" in errors[0]
    assert packager.placeholders({"repository": "https://PLACEHOLDER.invalid/x", "tracker": "https://x.org"}) == [
        "repository"]


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_the_checks_catch_what_the_repository_refuses(built):
    good = {n: zipfile.ZipFile(built[0]).read(n) for n in zipfile.ZipFile(built[0]).namelist()}
    assert repository_problems(_zip(good)) == []

    def problems_with(changes: dict[str, bytes | None]) -> str:
        files = dict(good)
        for name, data in changes.items():
            if data is None:
                files.pop(name)
            else:
                files[name] = data
        return "; ".join(repository_problems(_zip(files)))

    assert "LICENSE missing" in problems_with({"dltools/LICENSE": None})
    assert "__init__.py missing" in problems_with({"dltools/__init__.py": None})
    assert "__pycache__" in problems_with({"dltools/core/__pycache__/x.cpython-311.pyc": b"\x00"})
    assert ".pyc" in problems_with({"dltools/core/x.pyc": b"\x00"})
    assert "tests/ directory" in problems_with({"dltools/tests/test_x.py": b""})
    assert "path information" in problems_with({"dltools/../evil.py": b""})
    assert "binary file" in problems_with({"dltools/core/fast.so": b"\x7fELF...."})
    assert "binary file" in problems_with({"dltools/core/helper": b"\x7fELF...."})
    assert "binary file" in problems_with({"dltools/resources/model.onnx": b"\x08\x07"})
    assert "one top-level folder" in problems_with({"other/metadata.txt": b""})
    meta = good["dltools/metadata.txt"].decode()
    no_email = re.sub(r"(?m)^email=.*\n", "", meta).encode()
    assert "email" in problems_with({"dltools/metadata.txt": no_email})
    bad_icon = re.sub(r"(?m)^icon=.*$", "icon=resources/missing.svg", meta).encode()
    assert "icon" in problems_with({"dltools/metadata.txt": bad_icon})
    assert "QGIS cannot read" in problems_with({"dltools/metadata.txt": meta.replace("about=", "about=100% ").encode()})
    assert "[general]" in problems_with({"dltools/metadata.txt": meta.replace("[general]", "[plugin]").encode()})
    renamed = {n.replace("dltools/", "deep-learning tools/", 1): d for n, d in good.items()}
    assert "invalid folder name" in "; ".join(repository_problems(_zip(renamed)))
    assert "over the repository's limit" in "; ".join(repository_problems(b"\0" * (REPOSITORY_LIMIT + 1)))


def _qgis_unzip(path: Path, target: Path) -> None:
    """Unpack as QGIS's *Install from ZIP* does (pyplugin_installer/unzip.py), or with zipfile without it."""
    unzip_py = Path("/usr/share/qgis/python/pyplugin_installer/unzip.py")
    if unzip_py.is_file():
        spec = importlib.util.spec_from_file_location("qgis_unzip", unzip_py)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.unzip(str(path), str(target))
    else:
        zipfile.ZipFile(path).extractall(target)


def test_unzipped_plugin_loads_in_qgis_process(built, tmp_path, qgis_app):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    plugins = tmp_path / "plugins"
    _qgis_unzip(built[0], plugins)
    assert (plugins / PLUGIN / "metadata.txt").is_file() and not (plugins / PLUGIN / "tests").exists()
    profile = tmp_path / "profile"
    qgis_process_util.enable_plugin(profile)
    env = qgis_process_util.qgis_process_env(profile)
    env["QGIS_PLUGINPATH"] = str(plugins)
    proc = subprocess.run([str(qgis_process_util.QGIS_PROCESS), "list"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from qgis.core import QgsApplication

    in_process = sorted(a.id() for a in QgsApplication.processingRegistry().providerById(PLUGIN).algorithms())
    assert {"dltools:classifypixels", "dltools:classifyobjects", "dltools:detectchange"} <= set(in_process)
    missing = [alg for alg in in_process if alg not in proc.stdout]
    assert not missing, f"the zip's plugin lacks {missing}:\n{proc.stdout[-3000:]}"

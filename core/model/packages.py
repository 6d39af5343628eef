# SPDX-License-Identifier: GPL-2.0-or-later
"""Deep learning packages (.dlpk): safe extraction, and building new ones.

A .dlpk is a plain zip with the .emd at its root (esri-compat.md section 6).  A
package is untrusted input, so extraction refuses absolute member names,
``..`` components, symbolic links and archives whose uncompressed size is
absurd, and writes nothing outside its own cache folder.  Packages are cached
by the SHA-256 of their bytes: the second run on the same package does not
extract it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..errors import PackageError
from ..progress import NullProgress, Progress, check_canceled
from ..safe_output import same_path

#: Refuse packages that would unpack to more than this (real .dlpk files are < 2 GB).
MAX_UNCOMPRESSED_BYTES = 8 * 1024**3
#: ...or that compress suspiciously well overall (a zip bomb; real models compress < 10x).
MAX_COMPRESSION_RATIO = 200
MAX_MEMBERS = 20000


def default_cache_dir() -> Path:
    """Where packages are extracted unless the caller says otherwise."""
    base = os.environ.get("DLTOOLS_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "dltools" / "packages" if xdg else Path.home() / ".cache" / "dltools" / "packages"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_member(info: zipfile.ZipInfo, package: str) -> PurePosixPath:
    name = info.filename
    if "\\" in name:
        name = name.replace("\\", "/")
    mode = (info.external_attr >> 16) & 0xFFFF
    if stat.S_ISLNK(mode):
        raise PackageError(f"Package '{package}' contains a symbolic link '{info.filename}': refused")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise PackageError(f"Package '{package}' contains an absolute path '{info.filename}': refused")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise PackageError(f"Package '{package}' contains a path leaving its folder ('{info.filename}'): refused")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def list_package(path: Path) -> list[zipfile.ZipInfo]:
    """The members of a package after every safety check (nothing is written)."""
    if not zipfile.is_zipfile(path):
        raise PackageError(f"'{path.name}' is not a deep learning package: a .dlpk must be a zip archive")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"Package '{path.name}' cannot be read: {exc}") from exc
    if len(infos) > MAX_MEMBERS:
        raise PackageError(f"Package '{path.name}' has {len(infos)} files; refusing more than {MAX_MEMBERS}")
    total = 0
    compressed = 0
    for info in infos:
        _check_member(info, path.name)
        total += info.file_size
        compressed += info.compress_size
    if total > MAX_UNCOMPRESSED_BYTES:
        raise PackageError(
            f"Package '{path.name}' would unpack to {total / 1024**3:.1f} GB, more than the "
            f"{MAX_UNCOMPRESSED_BYTES / 1024**3:.0f} GB limit: refused as a possible zip bomb")
    if total > 64 * 1024**2 and total > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise PackageError(
            f"Package '{path.name}' would unpack to {total / 1024**2:.0f} MB from {compressed / 1024**2:.1f} MB "
            f"(ratio over {MAX_COMPRESSION_RATIO}): refused as a possible zip bomb")
    return infos


def _choose_emd(names: list[PurePosixPath], package: Path) -> PurePosixPath:
    emds = [n for n in names if n.suffix.lower() == ".emd"]
    top = [n for n in emds if len(n.parts) == 1]
    candidates = top or [n for n in emds if len(n.parts) == 2]
    if not candidates:
        raise PackageError(f"Package '{package.name}' has no .emd model definition at its top level")
    if len(candidates) == 1:
        return candidates[0]
    same_name = [n for n in candidates if n.stem.lower() == package.stem.lower()]
    if len(same_name) == 1:
        return same_name[0]
    listed = ", ".join(str(n) for n in candidates)
    raise PackageError(
        f"Package '{package.name}' has several .emd files ({listed}) and none is named like the package "
        f"('{package.stem}.emd'): keep one, or rename the one to use")


def extract_package(package: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                    destination: str | os.PathLike[str] | None = None, progress: Progress | None = None) -> Path:
    """Extract a .dlpk safely and return the path of its .emd.

    Without ``destination`` the package goes to ``<cache>/<sha256>/`` and is reused
    on later calls; with it, into that folder (which must be empty or absent).
    ``progress`` gets the share of bytes extracted; a cancel leaves nothing behind.
    """
    progress = progress or NullProgress()
    path = Path(package)
    if not path.is_file():
        raise PackageError(f"Package '{path}' does not exist")
    infos = list_package(path)
    names = [_check_member(i, path.name) for i in infos if not i.is_dir()]
    emd_rel = _choose_emd(names, path)

    if destination is None:
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        target = root / _sha256(path)
        if (target / ".complete").is_file() and (target / emd_rel).is_file():
            return target / emd_rel
    else:
        target = Path(destination)
        if target.exists() and any(target.iterdir()):
            raise PackageError(f"Output folder '{target}' is not empty: choose an empty or new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    total = max(1, sum(i.file_size for i in infos))
    done = 0
    try:
        staging_resolved = staging.resolve()
        with zipfile.ZipFile(path) as zf:
            for info in infos:
                rel = _check_member(info, path.name)
                if not rel.parts:
                    continue
                out = staging / Path(*rel.parts)
                if not out.resolve().is_relative_to(staging_resolved):
                    raise PackageError(f"Package '{path.name}' member '{info.filename}' leaves its folder: refused")
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                try:
                    with zf.open(info) as src, out.open("wb") as dst:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            written += len(chunk)
                            if written > info.file_size or written > MAX_UNCOMPRESSED_BYTES:
                                raise PackageError(f"Package '{path.name}' member '{info.filename}' is larger than it "
                                                   "declares: refused as a possible zip bomb")
                            dst.write(chunk)
                            done += len(chunk)
                            check_canceled(progress)
                            progress.set_progress(100.0 * done / total)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    # zipfile stops at the declared size and then finds the CRC wrong: a member that lies about
                    # its size (or a damaged archive) ends here
                    raise PackageError(f"Package '{path.name}' is damaged: member '{info.filename}' does not match "
                                       f"its declared size and checksum ({exc})") from exc
        (staging / ".complete").write_text(path.name, encoding="utf-8")
        if target.exists():
            if destination is None:
                shutil.rmtree(target)
            else:
                target.rmdir()
        staging.replace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if destination is not None:
        (target / ".complete").unlink(missing_ok=True)
    return target / emd_rel


#: .emd keys that name a file the plugin (or a model's allowed function) opens; any other key ending in "File" too.
#: Values starting ``[Functions]`` are Esri's own bundled functions, not files.
REFERENCE_KEYS = ("ModelFile", "InferenceFunction", "ModelConfigurationFile", "WeightsFile", "ModelWeights")


def package_root(emd_path: Path) -> Path:
    """The folder a package was extracted into, given the path of its .emd (at its top level or one folder down)."""
    for folder in (emd_path.parent, emd_path.parent.parent):
        if (folder / ".complete").is_file():
            return folder
    return emd_path.parent


def _references(data: dict) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, str) and value and not value.startswith("[Functions]") and (
                key in REFERENCE_KEYS or key.endswith("File")):
            refs.append((key, value))
    ts = data.get("TorchScript")
    if isinstance(ts, dict):
        refs.extend((f"TorchScript.{k}", v) for k, v in ts.items() if isinstance(v, str) and v)
    return refs


def check_package_references(data: dict, emd_path: Path, package_name: str, root: Path | None = None) -> None:
    """Every file the package's .emd names must resolve inside the extracted package folder.

    Absolute paths (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) and paths that climb out (``../x``) are refused, before
    anything opens them: a package is untrusted, and must not make the plugin read or run files outside it.
    """
    root = (root or package_root(emd_path)).resolve()
    for key, value in _references(data):
        text = value.replace("\\", "/")
        if text.startswith("/") or text.startswith("~") or (len(text) > 1 and text[1] == ":"):
            raise PackageError(f"Package '{package_name}': {key} '{value}' is an absolute path; every file a package "
                               "references must be inside the package: refused")
        resolved = (emd_path.parent / text).resolve()
        if not resolved.is_relative_to(root):
            raise PackageError(f"Package '{package_name}': {key} '{value}' points outside the package; every file a "
                               "package references must be inside it: refused")


def package_properties(emd_data: dict) -> dict[str, str]:
    """The properties a user sees for a package: framework, type, description, tags."""
    plugin = emd_data.get("QGISPlugin") if isinstance(emd_data.get("QGISPlugin"), dict) else {}
    return {
        "framework": str(emd_data.get("Framework") or ""),
        "model_type": str(emd_data.get("ModelType") or ""),
        "model_name": str(emd_data.get("ModelName") or ""),
        "description": str(plugin.get("description") or emd_data.get("Description") or ""),
        "summary": str(plugin.get("summary") or ""),
        "tags": str(plugin.get("tags") or ""),
    }


def _folder_members(folder: Path, progress: Progress) -> list[tuple[Path, str]]:
    """The regular files under an extra folder, with their names in the package.

    Symbolic links are never followed out of the folder: a link whose target is outside it is refused (it would pack
    whatever it points to, e.g. a private file), a link to a file inside it is stored as a copy of that file, and a
    link to a folder inside it is skipped (that folder is packed anyway).  Each is reported.
    """
    root = folder.resolve()
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            entry = here / name
            arcname = f"{folder.name}/{entry.relative_to(folder).as_posix()}"
            if entry.is_symlink():
                target = entry.resolve()
                if not target.is_relative_to(root) or not target.exists():
                    raise PackageError(
                        f"Extra folder '{folder}' holds the symbolic link '{entry.relative_to(folder)}' pointing "
                        f"outside the folder (to '{os.readlink(entry)}'): refused, a package never packs what a link "
                        "points to outside its folder. Remove the link, or copy the file into the folder")
                if target.is_dir():
                    progress.warning(f"Skipped the symbolic link '{arcname}' to a folder inside '{folder.name}': "
                                     "that folder is packed under its own name")
                else:
                    progress.warning(f"Stored the symbolic link '{arcname}' as a copy of "
                                     f"'{target.relative_to(root).as_posix()}' (links are not kept in a package)")
                    found.append((target, arcname))
            elif name in filenames and entry.is_file():
                found.append((entry, arcname))
            elif name in filenames:
                raise PackageError(f"Extra folder '{folder}' holds '{entry.relative_to(folder)}', which is not a "
                                   "regular file (a pipe, socket or device): refused")
    return sorted(found, key=lambda item: item[1])


def create_package(emd_path: str | os.PathLike[str], output: str | os.PathLike[str],
                   extra_files: list[str | os.PathLike[str]] | None = None,
                   description: str = "", summary: str = "", tags: str = "",
                   progress: Progress | None = None, stored: tuple[str, ...] = ()) -> Path:
    """Write a .dlpk: the .emd at the root, every file it references, and extra files.

    The .emd inside gets relative ModelFile/InferenceFunction paths, so the package
    works wherever it is extracted; description/summary/tags go under ``QGISPlugin``
    (a key ArcGIS ignores).  The archive is written to a temporary name and renamed,
    so a failure or a cancel (through ``progress``) never leaves a half-written package.  Members whose names end
    with one of ``stored`` (e.g. ``.pth``: float weights barely compress) are stored, not deflated.
    """
    progress = progress or NullProgress()
    emd = Path(emd_path)
    try:
        data = json.loads(emd.read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PackageError(f"Cannot read model definition '{emd}': {exc}") from exc
    if not isinstance(data, dict):
        raise PackageError(f"Model definition '{emd}' is not a JSON object")
    members: dict[str, Path] = {}

    def add(src: Path, arcname: str) -> None:
        arcname = arcname.replace("\\", "/").lstrip("/")
        if arcname in members and members[arcname].resolve() != src.resolve():
            raise PackageError(f"Two different files would be stored as '{arcname}' in the package")
        members[arcname] = src

    for key in ("ModelFile", "InferenceFunction", "ModelConfigurationFile"):
        ref = data.get(key)
        if not isinstance(ref, str) or not ref or ref.startswith("[Functions]"):
            continue
        src = Path(ref.replace("\\", "/"))
        if not src.is_absolute():
            src = (emd.parent / src).resolve()
        if not src.is_file():
            raise PackageError(f"{key} '{ref}' referenced by '{emd.name}' not found ({src}): the package would be incomplete")
        data[key] = src.name
        add(src, src.name)
    ts = data.get("TorchScript")
    if isinstance(ts, dict):
        for k, ref in list(ts.items()):
            if isinstance(ref, str):
                src = (emd.parent / ref.replace("\\", "/")).resolve()
                if not src.is_file():
                    raise PackageError(f"TorchScript.{k} '{ref}' referenced by '{emd.name}' not found ({src})")
                ts[k] = src.name
                add(src, src.name)
    for extra in extra_files or []:
        src = Path(extra)
        if src.is_dir():
            for f, arcname in _folder_members(src, progress):
                add(f, arcname)
        elif src.is_file():
            add(src, src.name)
        else:
            raise PackageError(f"Extra file '{src}' not found")
    if description or summary or tags:
        plugin = data.setdefault("QGISPlugin", {})
        if description:
            plugin["description"] = description
        if summary:
            plugin["summary"] = summary
        if tags:
            plugin["tags"] = tags
    out = Path(output)
    if out.suffix.lower() != ".dlpk":
        out = out.with_suffix(".dlpk")
    for what, src in [("the model definition", emd)] + [(f"the packaged file '{a}'", p) for a, p in
                                                         sorted(members.items())]:
        if same_path(out, src):
            raise PackageError(f"OUTPUT '{out}' is the same file as {what}: choose another output file, the run "
                               "never writes over its inputs")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    total = max(1, sum(src.stat().st_size for src in members.values()))
    done = 0
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{out.stem}.emd", json.dumps(data, indent=4))
            for arcname, src in sorted(members.items()):
                if arcname.lower().endswith(".emd"):
                    raise PackageError(f"Extra file '{src.name}' is a second .emd: a package holds exactly one")
                info = zipfile.ZipInfo.from_file(src, arcname)
                info.compress_type = zipfile.ZIP_STORED if arcname.lower().endswith(stored) else \
                    zipfile.ZIP_DEFLATED
                with src.open("rb") as fin, zf.open(info, "w") as fout:
                    for chunk in iter(lambda: fin.read(1 << 20), b""):
                        fout.write(chunk)
                        done += len(chunk)
                        check_canceled(progress)
                        progress.set_progress(100.0 * done / total)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out

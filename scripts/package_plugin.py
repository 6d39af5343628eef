# SPDX-License-Identifier: GPL-2.0-or-later
"""`make package`: the plugin zip for *Install from ZIP* and for upload to the QGIS plugin repository.

Why not qgis-plugin-ci (evaluated at 2.10.0): it archives a plugin that lives in a sub-folder of its repository
(``plugin_path``), and ours lives at the top (QGIS names the package after the folder, and every import,
test and the design card rely on that). Given ``plugin_path = "."`` it archived the whole repository (tests,
Makefile, .ci) and replaced every "." in the file names with the folder name ("README.md" became
"READMEdeep_learning_toolsmd", no top-level folder, archive "..0.2.0.zip"). It also rewrites metadata.txt in
the working tree during the build and restores it with ``git checkout -- .`` / ``git reset --hard``, which
throws away a developer's uncommitted edits, and brings 15 packages (GitPython, PyGithub, transifex-python,
PyNaCl, ...) for what is, here, a file list and a zip. What we take from it: the files come from git (what is
tracked, never what happens to lie in the folder), metadata.txt is checked before anything is written.

What goes in: the files git tracks (their working-tree content) under SHIPPED, plus the compiled translations
``i18n/*.qm`` that ``make translations`` builds, all under one top-level folder ``dltools/``. Never: tests,
test data, build or docs output, caches, ``.pyc``, binaries (the repository refuses compiled code), model files.
"""

from __future__ import annotations

import argparse
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "dltools"
#: what the plugin needs at run time (README.md: the manual; requirements.txt: what QGIS's Python needs)
SHIPPED = ("metadata.txt", "__init__.py", "plugin.py", "LICENSE", "README.md", "requirements.txt",
           "algorithms", "core", "resources", "i18n")
#: the QGIS plugin repository refuses uploads without these (plugins.qgis.org's validator)
MANDATORY = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository",
             "tracker")
PLACEHOLDER_KEYS = ("repository", "tracker", "homepage", "email")
REPOSITORY_LIMIT = 25_000_000  # bytes, plugins.qgis.org's upload limit
NEVER_DIRS = {"tests", "test", "__pycache__", "build", "dist", "docs", "_build", ".git", "__MACOSX"}
NEVER_SUFFIXES = {".pyc", ".pyo", ".ts", ".orig", ".rej", ".swp"}
BINARY_SUFFIXES = {".so", ".pyd", ".dll", ".dylib", ".exe", ".o", ".a", ".lib", ".class", ".jar", ".bin",
                   ".onnx", ".pt", ".pth", ".pb", ".h5", ".tflite", ".dlpk", ".whl", ".egg"}
BINARY_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same files give the same zip


class PackageError(Exception):
    pass


def read_metadata(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read(path, encoding="utf-8")
    if not parser.has_section("general"):
        raise PackageError(f"{path} has no [general] section")
    return dict(parser.items("general"))


def check_metadata(meta: dict[str, str]) -> list[str]:
    """Errors that make the repository refuse the zip; warnings are printed by the caller."""
    missing = [key for key in MANDATORY if not meta.get(key, "").strip()]
    return [f"metadata.txt: mandatory field(s) missing or empty: {', '.join(missing)}"] if missing else []


def placeholders(meta: dict[str, str]) -> list[str]:
    return [key for key in PLACEHOLDER_KEYS if "placeholder" in meta.get(key, "").lower()]


def tracked_files() -> list[str]:
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--", *SHIPPED], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise PackageError(f"git ls-files failed (make package lists the files with git): {proc.stderr.strip()}")
    return [name for name in proc.stdout.split("\0") if name]


def is_binary(path: Path) -> bool:
    if path.suffix.lower() in BINARY_SUFFIXES:
        return True
    with path.open("rb") as fh:
        return fh.read(4).startswith(BINARY_MAGIC)


def select_files() -> list[str]:
    names = []
    for name in tracked_files():
        parts = Path(name).parts
        if set(parts[:-1]) & NEVER_DIRS or Path(name).suffix in NEVER_SUFFIXES:
            continue
        if not (ROOT / name).is_file():
            print(f"WARNING: {name} is tracked but missing from the working tree; not packaged", file=sys.stderr)
            continue
        if is_binary(ROOT / name):
            raise PackageError(f"{name} is a binary (compiled code or a model file): the QGIS plugin repository "
                               "refuses those. Keep it out of algorithms/, core/ and resources/.")
        names.append(name)
    names += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "i18n").glob("*.qm"))
    return sorted(set(names))


def help_pages_html() -> dict[str, str]:
    """The README as the local help page, with the docs pages it links to rendered beside it (docs/ screenshots
    are not shipped: their alt text stays)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dltools_help_page", ROOT / "algorithms" / "help_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module.help_pages(ROOT / "README.md", image_base=None)
    except ValueError as exc:
        raise PackageError(f"the help page has a link it cannot ship: {exc}") from exc


def build(output: Path) -> Path:
    meta = read_metadata(ROOT / "metadata.txt")
    errors = check_metadata(meta)
    if errors:
        raise PackageError("; ".join(errors))
    names = select_files()
    for required in ("metadata.txt", "__init__.py", "LICENSE"):
        if required not in names:
            raise PackageError(f"{required} is not tracked by git: it must be in the zip")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            info = zipfile.ZipInfo(f"{PLUGIN}/{name}", date_time=FIXED_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (ROOT / name).read_bytes())
        # the tools' Help button opens index.html (algorithms/help_page.py renders the README and its docs pages)
        for page, text in sorted(help_pages_html().items()):
            info = zipfile.ZipInfo(f"{PLUGIN}/resources/help/{page}", date_time=FIXED_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text.encode("utf-8"))
    size = tmp.stat().st_size
    if size > REPOSITORY_LIMIT:
        tmp.unlink()
        raise PackageError(f"the zip is {size} bytes, over the plugin repository's limit of {REPOSITORY_LIMIT}")
    tmp.replace(output)
    print(f"Plugin zip: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
          f"({len(names)} files, {size / 1000:.0f} kB; the repository's limit is {REPOSITORY_LIMIT / 1e6:.0f} MB). "
          "QGIS: Plugins > Manage and Install Plugins > Install from ZIP")
    unset = placeholders(meta)
    if unset:
        print(f"WARNING: metadata.txt: {', '.join(unset)} still hold placeholders (PLACEHOLDER-...invalid). "
              "Set them to the project's public home before uploading to plugins.qgis.org, which checks that "
              "these addresses exist; the zip is fine for Install from ZIP.", file=sys.stderr)
    return output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, help="the zip to write (default dist/dltools-<version>.zip)")
    args = ap.parse_args(argv)
    try:
        version = read_metadata(ROOT / "metadata.txt").get("version", "").strip()
        build(args.output or ROOT / "dist" / f"{PLUGIN}-{version}.zip")
    except PackageError as exc:
        print(f"make package: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

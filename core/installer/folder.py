# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugin's private library folder: where it is, how it goes on ``sys.path``, and how a new one replaces it.

``<QGIS settings folder>/python/dltools-libs/py3.11`` (``DLTOOLS_LIBS_DIR`` replaces ``.../dltools-libs``) is
a Python *user base* (``PYTHONUSERBASE``): pip installs into it with ``--user``, so pip sees QGIS's own packages
(numpy above all) as installed and leaves them alone. Its ``site-packages`` goes on ``sys.path`` where the user
site would be: after the standard library, before QGIS's site-packages, exactly the order pip resolved for.

A change is built in a sibling temporary folder and swapped in by two renames only when pip has succeeded.
Where the current folder cannot be renamed (Windows keeps loaded ``.pyd`` files locked) the new folder waits as
``py3.11.pending`` and is swapped in the next time the plugin loads, before anything imports from it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import site
import sys
import sysconfig
import uuid
from pathlib import Path

LIBS_ENV = "DLTOOLS_LIBS_DIR"
MANIFEST = "dltools-libraries.json"
PENDING_SUFFIX = ".pending"
REMOVE_MARK = ".remove"


def libs_root(settings_dir: str | os.PathLike[str] | None) -> Path:
    """``$DLTOOLS_LIBS_DIR``, else ``<settings_dir>/python/dltools-libs``."""
    override = os.environ.get(LIBS_ENV, "").strip()
    if override:
        return Path(override)
    if not settings_dir:
        raise ValueError("the QGIS settings folder is not known")
    return Path(settings_dir) / "python" / "dltools-libs"


def version_folder(root: str | os.PathLike[str], version: tuple[int, int] | None = None) -> Path:
    """The user base for one Python version: a library built for 3.11 never loads into a QGIS on 3.12."""
    major, minor = version or sys.version_info[:2]
    return Path(root) / f"py{major}.{minor}"


def site_dir(base: str | os.PathLike[str]) -> Path:
    """The ``site-packages`` of the user base ``base`` for the running Python (its own user scheme)."""
    if hasattr(sysconfig, "get_preferred_scheme"):
        scheme = sysconfig.get_preferred_scheme("user")
    else:  # Python 3.9 (QGIS 3.22 on Windows)
        scheme = "osx_framework_user" if sys.platform == "darwin" and sys._framework else f"{os.name}_user"
    return Path(sysconfig.get_path("purelib", scheme, vars={"userbase": str(base)}))


def read_manifest(base: str | os.PathLike[str]) -> dict:
    """What the plugin installed in ``base``: ``{"libraries": [records], "versions": {dist: version}}``."""
    try:
        data = json.loads((Path(base) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"libraries": [], "versions": {}}
    return {"libraries": list(data.get("libraries", [])), "versions": dict(data.get("versions", {}))}


def write_manifest(base: str | os.PathLike[str], libraries: list[dict], versions: dict[str, str]) -> None:
    text = json.dumps({"libraries": libraries, "versions": versions}, indent=2) + "\n"
    (Path(base) / MANIFEST).write_text(text, encoding="utf-8")


def apply_pending(base: str | os.PathLike[str]) -> str:
    """Finish a swap or a removal that a locked folder deferred; what was done ("" when nothing waited)."""
    base = Path(base)
    pending = base.with_name(base.name + PENDING_SUFFIX)
    remove = base.with_name(base.name + REMOVE_MARK)
    if base.parent.is_dir():  # old folders a locked file kept from being deleted (Windows)
        for stale in base.parent.glob(f".{base.name}-*.old"):
            shutil.rmtree(stale, ignore_errors=True)
    done = ""
    if remove.exists():
        if not base.exists() or _retire(base):
            remove.unlink(missing_ok=True)
            done = "removed"
    if pending.is_dir() and (not base.exists() or _retire(base)):
        try:
            pending.rename(base)
            done = "updated"
        except OSError:
            pass
    return done


def activate(base: str | os.PathLike[str]) -> Path | None:
    """Put the user base's ``site-packages`` on ``sys.path`` (where a user site goes); None when there is none."""
    apply_pending(base)
    path = site_dir(base)
    if not path.is_dir():
        return None
    text = str(path)
    if text in sys.path:
        return path
    before = list(sys.path)
    site.addsitedir(text)  # also runs the folder's .pth files, as for any site folder
    added = [p for p in sys.path if p not in before] or [text]
    sys.path[:] = [p for p in sys.path if p not in added]
    index = next((i for i, p in enumerate(sys.path)
                  if os.path.basename(os.path.normpath(p)) in ("site-packages", "dist-packages")), len(sys.path))
    sys.path[index:index] = added
    importlib.invalidate_caches()
    return path


def temporary_sibling(base: str | os.PathLike[str], label: str) -> Path:
    """A new folder name beside ``base`` (same file system, so the swap is a rename)."""
    base = Path(base)
    return base.with_name(f".{base.name}-{uuid.uuid4().hex[:12]}.{label}")


def _retire(folder: Path) -> bool:
    """Rename ``folder`` aside and delete it; False when it is locked (it stays as it was)."""
    old = temporary_sibling(folder, "old")
    try:
        folder.rename(old)
    except OSError:
        return False
    shutil.rmtree(old, ignore_errors=True)
    return True


def swap_in(new: Path, base: Path) -> bool:
    """Make ``new`` the user base ``base``; True when done now, False when it waits for the next plugin load.

    The old folder is deleted only once the new one is in place (it is renamed back if that fails)."""
    old = temporary_sibling(base, "old")
    try:
        if base.exists():
            base.rename(old)
    except OSError:  # locked (Windows): the next plugin load swaps
        pending = base.with_name(base.name + PENDING_SUFFIX)
        shutil.rmtree(pending, ignore_errors=True)
        new.rename(pending)
        return False
    try:
        new.rename(base)
    except OSError:
        if old.exists():
            old.rename(base)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


def remove(base: Path) -> bool:
    """Remove the user base; True when done now, False when it is marked for removal at the next plugin load."""
    shutil.rmtree(base.with_name(base.name + PENDING_SUFFIX), ignore_errors=True)
    if not base.exists() or _retire(base):
        return True
    base.with_name(base.name + REMOVE_MARK).write_text("remove at the next start\n", encoding="utf-8")
    return False

# SPDX-License-Identifier: GPL-2.0-or-later
"""Which Python interpreter QGIS really runs.

Inside QGIS (and ``qgis_process``) ``sys.executable`` is often the QGIS binary, not a Python: running
``sys.executable -m pip`` would start a second QGIS. Each QGIS distribution keeps the interpreter it embeds
somewhere else, so the candidates are tried in the order the layouts make likely:

* Linux distribution packages (Debian, Ubuntu, Fedora): ``/usr/bin/qgis``, prefix ``/usr`` ->
  ``/usr/bin/python3.11``;
* conda and virtual environments: ``<prefix>/bin/python3.X`` (``<prefix>/python.exe`` on Windows);
* macOS app bundle: ``QGIS.app/Contents/MacOS/QGIS`` -> ``Contents/MacOS/bin/python3.X`` or the bundled
  ``Contents/Frameworks/Python.framework/Versions/3.X/bin/python3.X``;
* Windows OSGeo4W and the standalone installer: ``<root>\\bin\\qgis-ltr-bin.exe`` with the prefix
  ``<root>\\apps\\Python39`` -> ``<root>\\apps\\Python39\\python.exe`` (then ``<root>\\bin\\python3.exe``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from ..errors import DependencyMissingError


@dataclass(frozen=True)
class RunningPython:
    """What the running process says about itself (``sys``), as plain values a test can fake."""

    executable: str
    exec_prefix: str
    base_exec_prefix: str
    version: tuple[int, int]
    platform: str  # sys.platform: "linux", "darwin", "win32"

    @classmethod
    def current(cls) -> RunningPython:
        return cls(executable=sys.executable or "", exec_prefix=sys.exec_prefix, base_exec_prefix=sys.base_exec_prefix,
                   version=(sys.version_info.major, sys.version_info.minor), platform=sys.platform)


def _pure(platform: str, text: str) -> PurePath:
    return PureWindowsPath(text) if platform == "win32" else PurePosixPath(text)


def _is_python_name(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("python") and not lower.startswith("pythonw")


def own_interpreter(run: RunningPython) -> bool:
    """Whether ``sys.executable`` itself is a Python inside its prefix (a plain Python or a virtual environment)."""
    exe = _pure(run.platform, run.executable)
    if not run.executable or not _is_python_name(exe.name):
        return False
    prefixes = [_pure(run.platform, p) for p in (run.exec_prefix, run.base_exec_prefix) if p]
    return any(exe.is_relative_to(p) for p in prefixes)


def candidates(run: RunningPython) -> list[PurePath]:
    """The interpreters that may be QGIS's Python, most likely first (nothing is checked on disk here)."""
    major, minor = run.version
    exe = _pure(run.platform, run.executable)
    prefixes = list(dict.fromkeys(_pure(run.platform, p) for p in (run.exec_prefix, run.base_exec_prefix) if p))
    found: list[PurePath] = []
    if own_interpreter(run):
        found.append(exe)
    if run.platform == "win32":
        for prefix in prefixes:  # OSGeo4W / standalone: <root>\apps\Python3X\python.exe; conda: <env>\python.exe
            found += [prefix / "python.exe", prefix / "python3.exe"]
        root = exe.parent.parent  # <root>\bin\qgis-bin.exe
        found += [exe.parent / "python3.exe", exe.parent / "python.exe",
                  root / "apps" / f"Python{major}{minor}" / "python.exe"]
        return list(dict.fromkeys(found))
    names = [f"python{major}.{minor}", f"python{major}", "python"]
    for prefix in prefixes:
        found += [prefix / "bin" / name for name in names]
    contents = next((p for p in exe.parents if p.name == "Contents" and p.parent.suffix == ".app"), None)
    if contents is not None:  # macOS bundle: QGIS.app/Contents/MacOS/QGIS
        found += [contents / "MacOS" / "bin" / name for name in names]
        framework = contents / "Frameworks" / "Python.framework" / "Versions" / f"{major}.{minor}" / "bin"
        found += [framework / name for name in names]
    found += [exe.parent / name for name in names]  # /usr/bin/qgis next to /usr/bin/python3.11
    return list(dict.fromkeys(found))


def _runnable(path: PurePath, platform: str) -> bool:
    real = Path(path.as_posix())
    return real.is_file() and (platform == "win32" or os.access(real, os.X_OK))


def locate_python(run: RunningPython | None = None) -> Path:
    """The interpreter of QGIS's Python version, or :class:`DependencyMissingError` naming where it looked."""
    run = run or RunningPython.current()
    tried = candidates(run)
    for path in tried:
        if _runnable(path, run.platform):
            return Path(path.as_posix())
    major, minor = run.version
    raise DependencyMissingError(
        f"The Python {major}.{minor} interpreter that QGIS runs was not found (QGIS is {run.executable or 'unknown'}, "
        f"its Python prefix {run.exec_prefix}); looked for: {', '.join(str(p) for p in tried[:8])}")

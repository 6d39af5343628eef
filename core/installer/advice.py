# SPDX-License-Identifier: GPL-2.0-or-later
"""What every "X is not installed" message says: the installer first, then a terminal command that works as written.

The command is built for the Python that is running (the same one QGIS runs), so it works where a generic
``python3 -m pip install`` does not: Debian 12 and Ubuntu 23.04+ refuse pip in the system Python unless told
``--break-system-packages`` (with ``--user`` that only writes to the user's own folder); Windows has no
``python3`` outside the OSGeo4W Shell; QGIS's macOS bundle has its Python inside the app. ``numpy==<QGIS's>``
keeps the numpy QGIS was built with.
"""

from __future__ import annotations

import os
import sys
import sysconfig

from .catalogue import library

INSTALLER_NAME = "Install Inference Libraries"
INSTALLER_ID = "dltools:installlibraries"


def _numpy_version() -> str | None:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        return getattr(numpy, "__version__", None)
    try:
        from importlib.metadata import version

        return version("numpy")
    except Exception:  # noqa: BLE001 - no numpy metadata: the pin is left out
        return None


def _externally_managed() -> bool:
    try:
        return os.path.isfile(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))
    except (KeyError, OSError):
        return False


def terminal_command(requirements: tuple[str, ...] | list[str]) -> str:
    """``pip install --user`` for the running Python, as one line to paste (where: said before it on Windows)."""
    from .interpreter import locate_python

    numpy = _numpy_version()
    packages = ([f'"numpy=={numpy}"'] if numpy else []) + [f'"{r}"' if "[" in r else r for r in requirements]
    if sys.platform == "win32":
        return "in the OSGeo4W Shell: python -m pip install --user " + " ".join(packages)
    try:
        python = str(locate_python())
    except Exception:  # noqa: BLE001 - the message must not fail: the usual name then
        python = "python3"
    if sys.prefix != sys.base_prefix:  # a virtual environment: pip installs into it (it refuses --user there)
        flags = ""
    else:
        flags = "--user --break-system-packages " if _externally_managed() else "--user "
    return f'"{python}" -m pip install {flags}' + " ".join(packages)


def install_advice(key: str) -> str:
    """The sentence after "X is not installed in QGIS's Python": the installer first, then the terminal."""
    lib = library(key)
    return (f"install it from QGIS with Processing Toolbox › Deep Learning Tools › {INSTALLER_NAME} "
            f"({INSTALLER_ID}, LIBRARY '{lib.label}'), then run again; or in a terminal: "
            f"{terminal_command(lib.requirements)}")


def not_installed(what: str, key: str, extra: str = "") -> str:
    """``"<what> is not installed in QGIS's Python[ extra]: <install_advice>"``."""
    return f"{what} is not installed in QGIS's Python{extra}: {install_advice(key)}"

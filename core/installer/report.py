# SPDX-License-Identifier: GPL-2.0-or-later
"""What the inference libraries are in this QGIS: version, folder each was loaded from, the devices they see.

Each library is imported (it is what a run would do); one that fails to import is reported with its error
instead of stopping the report.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from .catalogue import CHECKED_MODULES


def _devices(name: str, module) -> str:  # noqa: ANN001 - a module
    if name == "onnxruntime":
        return ", ".join(module.get_available_providers())
    if name == "torch":
        if module.cuda.is_available():
            names = [module.cuda.get_device_name(i) for i in range(module.cuda.device_count())]
            return "CUDA: " + ", ".join(f"{i}: {n}" for i, n in enumerate(names))
        return "CPU (torch.cuda sees no GPU)"
    return ""


def _origin(module, private_site: Path | None) -> tuple[str, str]:  # noqa: ANN001 - a module
    """(folder the module was loaded from, "plugin" / "QGIS's Python")."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__ or "")))
    if private_site is not None and os.path.normcase(folder).startswith(os.path.normcase(str(private_site))):
        return folder, "installed by Deep Learning Tools"
    return folder, "QGIS's Python"


def check_libraries(private_site: Path | None, modules: tuple[str, ...] = CHECKED_MODULES) -> list[dict]:
    """One row per library: name, installed, version, folder, source, devices, error."""
    rows = []
    for name in modules:
        row = {"library": name, "installed": False, "version": "", "folder": "", "source": "", "devices": "",
               "error": ""}
        if importlib.util.find_spec(name) is None:
            rows.append(row)
            continue
        try:
            module = importlib.import_module(name)
            row["version"] = str(getattr(module, "__version__", ""))
            row["folder"], row["source"] = _origin(module, private_site)
            row["devices"] = _devices(name, module)
            row["installed"] = True
        except Exception as exc:  # noqa: BLE001 - a broken library is reported, not fatal
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def report_lines(rows: list[dict], python: str, private_site: Path | None) -> list[str]:
    lines = [f"QGIS's Python: {python} (Python {sys.version.split()[0]})",
             f"Plugin's library folder: {private_site if private_site else '(none installed)'}"]
    for row in rows:
        if row["error"]:
            lines.append(f"{row['library']}: BROKEN ({row['error']})")
        elif not row["installed"]:
            lines.append(f"{row['library']}: not installed")
        else:
            devices = f"; devices: {row['devices']}" if row["devices"] else ""
            lines.append(f"{row['library']} {row['version']}: {row['folder']} ({row['source']}){devices}")
    return lines

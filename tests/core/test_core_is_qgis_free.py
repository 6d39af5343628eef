# SPDX-License-Identifier: GPL-2.0-or-later
"""``core`` must import without QGIS or PyQt, and without loading torch or onnxruntime."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "build" / "plugins"

TORCH_ONLY = ("fastai_layers", "unet", "ssd", "retinanet", "network", "torchvision_nets")

_SCRIPT = f"TORCH_ONLY = {TORCH_ONLY!r}\n" + r"""
import importlib, json, pkgutil, sys
for blocked in ("qgis", "PyQt5", "PyQt6", "sip"):
    sys.modules[blocked] = None  # any import of these now raises ImportError
import dltools.core as core
names = ["dltools.core"]
for info in pkgutil.walk_packages(core.__path__, "dltools.core."):
    names.append(info.name)
# the rebuilt arcgis.learn networks subclass torch.nn.Module: only the arcgis.learn backend imports them,
# after checking torch; they are imported last, once the rest has been checked not to load torch
torch_only = {"dltools.core.backends.arcgis_learn." + m for m in TORCH_ONLY}
failed = {}
heavy = None
for name in [n for n in names if n not in torch_only] + sorted(torch_only & set(names)):
    if name in torch_only and heavy is None:
        heavy = sorted(m for m in ("torch", "onnxruntime", "onnx") if m in sys.modules)
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
if heavy is None:
    heavy = sorted(m for m in ("torch", "onnxruntime", "onnx") if m in sys.modules)
print(json.dumps({"modules": names, "failed": failed, "heavy": heavy}))
"""


def _core_modules_on_disk() -> set[str]:
    core = ROOT / "core"
    names = {"dltools.core"}
    for info in pkgutil.walk_packages([str(core)], "dltools.core."):
        names.add(info.name)
    return names


def test_every_core_module_imports_without_qgis_and_without_torch_or_onnxruntime():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=str(PLUGINS), capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(PLUGINS), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert report["heavy"] == []
    assert set(report["modules"]) == _core_modules_on_disk()
    assert {"dltools.core.model.loader", "dltools.core.tools.describe.report", "dltools.core.backends.onnx_backend",
            "dltools.core.backends.torch_backend", "dltools.core.model.packages", "dltools.core.backends.arcgis_learn.families",
            "dltools.core.backends.arcgis_learn_backend"} <= set(report["modules"])


def test_the_check_would_catch_a_qgis_import(tmp_path):
    """The same blocking makes a module that imports qgis fail, so the test above can fail."""
    pkg = tmp_path / "probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from qgis.core import QgsApplication\n", encoding="utf-8")
    script = "import sys\nsys.modules['qgis'] = None\nimport probe_pkg\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ModuleNotFoundError: No module named 'qgis.core'; 'qgis' is not a package" in proc.stderr

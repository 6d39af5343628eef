# SPDX-License-Identifier: GPL-2.0-or-later
"""The first start as a new user has it: the real QGIS desktop under Xvfb, a fresh profile, QGIS's Python without
ONNX Runtime. The message bar appears, its button opens the installer, the install runs (from the package index),
then Classify Pixels runs from its dialog. Screenshots in build/screenshots/ (the README's are copied from there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
sys.path.insert(0, str(ROOT / "tests"))

from builders import conv_module, export_onnx, read_raster, write_emd, write_raster  # noqa: E402
from installer_helpers import system_python_without_onnxruntime  # noqa: E402


def test_first_start_message_bar_install_then_classify(tmp_path):
    if shutil.which("xvfb-run") is None or shutil.which("qgis") is None:
        pytest.skip("the desktop test needs xvfb-run and the QGIS desktop (qgis)")
    system_python_without_onnxruntime()
    raster = np.zeros((3, 16, 16), np.uint8)
    raster[0, :, :8], raster[1, :, :8] = 200, 10
    raster[0, :, 8:], raster[1, :, 8:] = 10, 200
    tif = write_raster(tmp_path / "in.tif", raster)
    weight = np.array([[1, 0, 0], [0, 1, 0]], np.float32).reshape(2, 3, 1, 1)
    export_onnx(conv_module(3, 2, 1, weight=weight), tmp_path / "m.onnx", 3, 8)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=[(1, "a", (255, 0, 0)), (2, "b", (0, 0, 255))])
    SHOTS.mkdir(parents=True, exist_ok=True)
    plan = {"screenshots": str(SHOTS), "raster": str(tif), "model": str(emd), "output": str(tmp_path / "out.tif")}
    (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    result = tmp_path / "result.json"

    profiles = tmp_path / "profiles"
    profile = profiles / "profiles" / "default"
    (profile / "python" / "plugins").mkdir(parents=True)
    (profile / "python" / "plugins" / "dltools").symlink_to(ROOT, target_is_directory=True)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\ndltools=true\nprocessing=true\n[qgis]\ncheckVersion=false\nshowTips=false\n",
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DLTOOLS_LIBS_DIR", "QGIS_PLUGINPATH", "QGIS_CUSTOM_CONFIG_PATH")}
    env.update(DLTOOLS_GUI_PLAN=str(tmp_path / "plan.json"), DLTOOLS_GUI_RESULT=str(result), QT_QPA_PLATFORM="xcb",
               DLTOOLS_THREADS="2")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x1000x24", "qgis", "--profiles-path", str(profiles), "--profile",
           "default", "--nologo", "--noversioncheck", "--code", str(ROOT / "tests" / "gui" / "installer_driver.py")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540)
    if not result.is_file():
        pytest.fail(f"QGIS wrote no result (exit {proc.returncode}): {proc.stderr[-3000:]}")
    data = json.loads(result.read_text(encoding="utf-8"))
    assert not data["errors"], "\n".join(data["errors"])

    assert data["message"] == "ONNX Runtime is not installed: the tools cannot run models yet."
    assert data["messages_with_button"] == 1
    assert data["dialog_alg"] == "dltools:installlibraries" and not data["bar_after_click"]
    assert data["install"]["ok"], data["install"]["log"]
    assert "onnxruntime" in data["install"]["result"]["INSTALLED"]
    libs = profile / "python" / "dltools-libs" / f"py{sys.version_info[0]}.{sys.version_info[1]}"
    assert Path(data["install"]["result"]["FOLDER"]) == libs
    assert data["offered_again"] is False
    assert "CPU (ONNX Runtime)" in data["summary"]
    assert data["classify"]["ok"], data["classify"]["log"]
    expected = np.zeros((16, 16), np.uint8)
    expected[:, :8], expected[:, 8:] = 1, 2
    assert np.array_equal(np.squeeze(read_raster(tmp_path / "out.tif")), expected)
    for name in ("install_message_bar", "install_libraries_dialog", "install_libraries_log"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, name

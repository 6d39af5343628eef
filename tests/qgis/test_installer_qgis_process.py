# SPDX-License-Identifier: GPL-2.0-or-later
"""Install Inference Libraries for real: QGIS's own Python (the system's, no venv, no ONNX Runtime) in qgis_process.

A fresh QGIS profile; the plugin installs ONNX Runtime from the package index into the profile's
``python/dltools-libs/py3.11``, and a separate ``qgis_process`` loads the plugin and runs Classify Pixels with it.
Then: removal (the run says how to install), a wheel-folder install of an older version, an upgrade from the index,
the report of Check Inference Libraries, QGIS's proxy passed to pip, and numpy's files unchanged throughout.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, read_raster, write_emd, write_raster
from installer_helpers import serve, system_python_without_onnxruntime, tree_hashes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

pytestmark = pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")


def _env(profile: Path, own_pip_config: bool = True) -> dict[str, str]:
    """qgis_process as a user runs it: no test venv on PYTHONPATH, the profile's own library folder; without
    ``own_pip_config`` pip reads no configuration of this machine (its mirrors would answer instead of the proxy)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DLTOOLS_LIBS_DIR")
           and (own_pip_config or not k.startswith("PIP_"))}
    if not own_pip_config:
        env["PIP_CONFIG_FILE"] = os.devnull
    env.update(QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(profile),
               QGIS_PLUGINPATH=str(qgis_process_util.PLUGINS), DLTOOLS_THREADS="2")
    return env


def _run(profile: Path, alg: str, params: dict, tmp_path: Path, ok: bool = True,
         own_pip_config: bool = True) -> dict | str:
    qgis_process_util.enable_plugin(profile)
    proc = subprocess.run([str(qgis_process_util.QGIS_PROCESS), *qgis_process_util.run_args(alg, params)],
                          env=_env(profile, own_pip_config), capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    if not ok:
        assert proc.returncode != 0, proc.stdout[-3000:]
        return qgis_process_util.stderr_message(proc)
    assert proc.returncode == 0, f"{qgis_process_util.stderr_message(proc)}\n{proc.stdout[-3000:]}"
    return json.loads(proc.stdout[proc.stdout.find("{"):])


@pytest.fixture
def two_class_model(tmp_path):
    """Class a where band 1 is brighter than band 2, class b where band 2 is: a 1x1 convolution, exact by design."""
    raster = np.zeros((3, 16, 16), np.uint8)
    raster[0, :, :8], raster[1, :, :8] = 200, 10
    raster[0, :, 8:], raster[1, :, 8:] = 10, 200
    tif = write_raster(tmp_path / "in.tif", raster)
    weight = np.array([[1, 0, 0], [0, 1, 0]], np.float32).reshape(2, 3, 1, 1)
    export_onnx(conv_module(3, 2, 1, weight=weight), tmp_path / "m.onnx", 3, 8)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", model_type="ImageClassification", tile=8,
                    classes=[(1, "a", (255, 0, 0)), (2, "b", (0, 0, 255))])
    expected = np.zeros((16, 16), np.uint8)
    expected[:, :8], expected[:, 8:] = 1, 2
    return tif, emd, expected


def _classify(profile: Path, tmp_path: Path, case, name: str) -> None:
    tif, emd, expected = case
    out = tmp_path / f"{name}.tif"
    _run(profile, "dltools:classifypixels", {"INPUT": tif, "MODEL": emd, "ARGUMENTS": "padding 0", "OUTPUT": out},
         tmp_path)
    assert np.array_equal(np.squeeze(read_raster(out)), expected)


def test_install_run_remove_offline_upgrade_in_qgis_own_python(tmp_path, two_class_model):
    python = system_python_without_onnxruntime()
    profile = tmp_path / "profile"
    libs = profile / "profiles" / "default" / "python" / "dltools-libs" / f"py{sys.version_info[0]}.{sys.version_info[1]}"
    numpy_dir = Path(subprocess.run([str(python), "-c", "import numpy, os; print(os.path.dirname(numpy.__file__))"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    numpy_before = tree_hashes(numpy_dir)

    # 1. from the package index into a fresh folder; a separate qgis_process then runs Classify Pixels with it
    result = _run(profile, "dltools:installlibraries", {}, tmp_path)
    assert Path(result["results"]["FOLDER"]) == libs
    latest = dict(item.split(" ") for item in result["results"]["INSTALLED"].split(", "))["onnxruntime"]
    assert any(line.startswith("Successfully installed") for line in result["log"]["info"])
    _classify(profile, tmp_path, two_class_model, "first")

    # 2. removal: the folder goes, and a run says how to install, naming the installer first
    _run(profile, "dltools:installlibraries", {"ACTION": 2}, tmp_path)
    assert not libs.exists() and not list(libs.parent.iterdir())
    tif, emd, _ = two_class_model
    message = _run(profile, "dltools:classifypixels", {"INPUT": tif, "MODEL": emd, "OUTPUT": tmp_path / "no.tif"},
                   tmp_path, ok=False)
    assert "ONNX Runtime is not installed in QGIS's Python: install it from QGIS with Processing Toolbox › Deep " \
           "Learning Tools › Install Inference Libraries (dltools:installlibraries" in message
    assert f'"{python}" -m pip install --user --break-system-packages "numpy==' in message
    assert not (tmp_path / "no.tif").exists()
    # the terminal command works as written (its --user folder redirected into this test's folder)
    command = next(line for line in message.splitlines() if "or in a terminal: " in line).split(
        "or in a terminal: ", 1)[1]
    user_env = dict(_env(profile), PYTHONUSERBASE=str(tmp_path / "user-site"))
    assert subprocess.run(command, shell=True, env=user_env, capture_output=True, timeout=600).returncode == 0
    assert subprocess.run([str(python), "-c", "import onnxruntime"], env=user_env).returncode == 0

    # 3. offline, from a folder of wheel files: an older version
    wheels = tmp_path / "wheels"
    subprocess.run([str(python), "-m", "pip", "download", "-q", "-d", str(wheels), f"onnxruntime<{latest}"],
                   check=True, capture_output=True, timeout=600)
    result = _run(profile, "dltools:installlibraries", {"WHEELS": wheels}, tmp_path)
    older = dict(item.split(" ") for item in result["results"]["INSTALLED"].split(", "))["onnxruntime"]
    assert older != latest
    _classify(profile, tmp_path, two_class_model, "offline")

    # 4. upgrade from the index
    result = _run(profile, "dltools:installlibraries", {"ACTION": 1, "LIBRARY": 0}, tmp_path)
    assert dict(item.split(" ") for item in result["results"]["INSTALLED"].split(", "))["onnxruntime"] == latest
    _classify(profile, tmp_path, two_class_model, "upgraded")

    # 5. the report: the version, the folder it was loaded from, the providers it sees
    result = _run(profile, "dltools:checklibraries", {"OUTPUT_JSON": tmp_path / "check.json"}, tmp_path)
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["python"] == str(python)
    rows = {row["library"]: row for row in report["libraries"]}
    assert rows["onnxruntime"]["version"] == latest
    assert rows["onnxruntime"]["source"] == "installed by Deep Learning Tools"
    assert rows["onnxruntime"]["folder"].startswith(str(libs))
    assert "CPUExecutionProvider" in rows["onnxruntime"]["devices"]
    assert rows["numpy"]["source"] == "QGIS's Python" and rows["numpy"]["folder"] == str(numpy_dir.parent)
    assert f"onnxruntime {latest}: {rows['onnxruntime']['folder']} (installed by Deep Learning Tools)" in \
        result["results"]["REPORT"]

    assert tree_hashes(numpy_dir) == numpy_before


class _RefusingProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that writes down what it was asked for and refuses it."""

    seen: list[str] = []

    def do_CONNECT(self) -> None:  # noqa: N802 - http.server API
        type(self).seen.append(self.requestline)
        self.send_error(403, "refused by the test proxy")

    do_GET = do_CONNECT  # noqa: N815

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def test_qgis_proxy_settings_reach_pip(tmp_path):
    system_python_without_onnxruntime()
    profile = tmp_path / "profile"
    with serve(_RefusingProxy) as proxy:
        port = proxy.rsplit(":", 1)[1]
        ini = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
        ini.parent.mkdir(parents=True)
        ini.write_text(f"[proxy]\nproxyEnabled=true\nproxyType=HttpProxy\nproxyHost=127.0.0.1\nproxyPort={port}\n"
                       "proxyUser=me\nproxyPassword=secret\n")
        message = _run(profile, "dltools:installlibraries", {"INDEX_URL": "https://dltools-index.invalid/simple"},
                       tmp_path, ok=False, own_pip_config=False)
    assert any("dltools-index.invalid" in line for line in _RefusingProxy.seen), _RefusingProxy.seen
    assert message.startswith(f"pip could not get through the proxy http://me:***@127.0.0.1:{port} to the "
                              "package index https://dltools-index.invalid/simple: check QGIS's proxy settings"), message
    assert "secret" not in message
    assert not (profile / "profiles" / "default" / "python" / "dltools-libs").exists() or not any(
        p.name.startswith(".") for p in (profile / "profiles" / "default" / "python" / "dltools-libs").iterdir())

# SPDX-License-Identifier: GPL-2.0-or-later
"""Without onnxruntime and torch the plugin still loads, lists every tool, and a run says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from builders import write_emd

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["onnxruntime"] = None   # import onnxruntime -> ImportError, as on a QGIS without it
    sys.modules["torch"] = None
    sys.path.insert(0, {plugins!r})
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication, QgsProcessingException
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing
    Processing.initialize()
    import dltools
    plugin = dltools.classFactory(None)
    plugin.initProcessing()
    provider = QgsApplication.processingRegistry().providerById("dltools")
    print("TOOLS", len(provider.algorithms()))
    import processing
    try:
        processing.run("dltools:classifypixels", {{"INPUT": {raster!r}, "MODEL": {model!r}, "OUTPUT": {out!r}}})
    except QgsProcessingException as exc:
        print("ERROR", exc)
    print("OFFERED", plugin.offer_installer())   # no message bar without a desktop (iface None)
    print("IMPORTED", "onnxruntime" in sys.modules and sys.modules["onnxruntime"] is not None)
""")


def test_plugin_loads_and_explains_without_inference_libraries(tmp_path):
    import numpy as np
    from builders import write_raster

    raster = write_raster(tmp_path / "in.tif", np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "m.onnx").write_bytes(b"not needed: the backend import fails first")
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=[(0, "a", (0, 0, 0)), (1, "b", (9, 9, 9))])
    script = SCRIPT.format(plugins=str(ROOT / "build" / "plugins"), raster=str(raster), model=str(emd),
                           out=str(tmp_path / "out.tif"))
    # in-process: the sys.modules trick hides onnxruntime from this Python only, while a library really missing
    # is missing in the run's child process too (same interpreter, same sys.path)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DLTOOLS_IN_PROCESS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tools = int(proc.stdout.split("TOOLS ", 1)[1].split()[0])
    assert tools >= 9  # every tool, Detect Objects and Non Maximum Suppression included
    assert "ERROR ONNX Runtime is not installed in QGIS's Python: install it from QGIS with Processing Toolbox › " \
           "Deep Learning Tools › Install Inference Libraries (dltools:installlibraries, LIBRARY 'ONNX Runtime for the " \
           "CPU'), then run again; or in a terminal: " in proc.stdout
    # a command that works as written here: the interpreter that runs (the test's virtual environment: no --user,
    # which pip refuses there; tests/qgis/test_installer_qgis_process.py checks QGIS's own), QGIS's numpy pinned
    assert f'"{sys.executable}" -m pip install "numpy==' in proc.stdout
    assert f'"numpy=={np.__version__}" onnxruntime' in proc.stdout
    assert not (tmp_path / "out.tif").exists()
    assert "OFFERED False" in proc.stdout

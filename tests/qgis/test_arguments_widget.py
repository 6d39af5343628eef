# SPDX-License-Identifier: GPL-2.0-or-later
"""The dialog's arguments table shows, beside each value typed, the value the run will use (the model contract's
batch rule): a model whose batch dimension is fixed at 1 shows batch_size 1 and why, whatever is typed.

The widget needs a QApplication with widgets, which the session's headless QgsApplication is not: it runs in a
child Python with its own QgsApplication (offscreen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from builders import conv_module, export_onnx, write_emd

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, sys
sys.path.insert(0, "/usr/share/qgis/python/plugins")
sys.path.insert(0, sys.argv[1])
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], True)
app.initQgis()
from dltools.algorithms.arguments_widget import ArgumentsWidget, _effective
from dltools.core.arguments.table import argument_rows
from dltools.core.model.loader import load_model_definition

def used(widget):
    return {widget.table.item(i, 0).text(): widget.table.item(i, 4).text() for i in range(widget.table.rowCount())}

out = {}
for emd in sys.argv[2:]:
    md = load_model_definition(emd)
    widget = ArgumentsWidget()
    widget.effective = _effective(md, "classify_pixels")
    rows, note = argument_rows(md, "classify_pixels")
    widget.fill(rows, {"batch_size": "6"}, note)
    before = used(widget)
    names = [widget.table.item(i, 0).text() for i in range(widget.table.rowCount())]
    widget.table.item(names.index("batch_size"), 1).setText("9")  # as a user types: the column follows
    widget.validate()
    out[emd] = {"header": widget.table.horizontalHeaderItem(4).text(), "before": before, "after": used(widget)}
print("RESULT " + json.dumps(out))
'''


def test_table_shows_the_batch_size_the_run_uses(tmp_path):
    export_onnx(conv_module(3, 2, 1), tmp_path / "fixed.onnx", 3, 16, fixed_batch=1)
    export_onnx(conv_module(3, 2, 1), tmp_path / "free.onnx", 3, 16)
    fixed = write_emd(tmp_path / "fixed.emd", "fixed.onnx", tile=16)
    free = write_emd(tmp_path / "free.emd", "free.onnx", tile=16)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "build" / "plugins"), str(fixed), str(free)],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    result = json.loads(lines[0][len("RESULT "):])
    why = "the model's batch dimension is fixed at 1"
    assert result[str(fixed)]["header"] == "The run uses"
    assert result[str(fixed)]["before"]["batch_size"] == f"1 ({why})"
    assert result[str(fixed)]["after"]["batch_size"] == f"1 ({why})"
    assert result[str(free)]["before"]["batch_size"] == "4 (6 is not a perfect square: lowered as ArcGIS does)"
    assert result[str(free)]["after"]["batch_size"] == "9"
    assert result[str(free)]["after"]["edge_fill"] == "mirror"

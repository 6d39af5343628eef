# SPDX-License-Identifier: GPL-2.0-or-later
"""The dialog's arguments table gives the arguments room: about nine rows in sight, every column in the table's
width, and a line under the table with the selected argument in full (its whole description, its default and the
value the run will use), so no description is only "…".

The widget needs a QApplication with widgets: it runs in a child Python with its own QgsApplication (offscreen)."""

from __future__ import annotations

import html
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
from qgis.PyQt.QtCore import Qt
from dltools.algorithms.arguments_widget import ArgumentsWidget, _effective
from dltools.core.arguments.table import argument_rows
from dltools.core.model.loader import load_model_definition

md = load_model_definition(sys.argv[2])
widget = ArgumentsWidget()
widget.resize(560, 500)
widget.effective = _effective(md, "classify_pixels")
rows, note = argument_rows(md, "classify_pixels")
widget.fill(rows, {"batch_size": "6"}, note)
widget.show()
app.processEvents()
t = widget.table
names = [t.item(i, 0).text() for i in range(t.rowCount())]
descriptions = {t.item(i, 0).text(): t.item(i, 3).text() for i in range(t.rowCount())}
longest = max(descriptions, key=lambda n: len(descriptions[n]))
out = {"min_height": t.minimumHeight(), "wrap": t.wordWrap(), "elide": int(t.textElideMode()),
       "first_detail": widget.detail.text(), "names": names, "descriptions": descriptions, "longest": longest,
       "row_heights": {n: t.rowHeight(i) for i, n in enumerate(names)}, "widths": [t.columnWidth(c) for c in range(5)],
       "viewport": t.viewport().width(), "hscroll": t.horizontalScrollBar().isVisible()}
t.setCurrentCell(names.index("batch_size"), 1)
out["batch_detail"] = widget.detail.text()
t.setCurrentCell(names.index(longest), 1)
out["longest_detail"] = widget.detail.text()
print("RESULT " + json.dumps(out))
'''


def test_the_table_has_room_and_shows_whole_descriptions(tmp_path):
    export_onnx(conv_module(3, 2, 1), tmp_path / "free.onnx", 3, 16)
    emd = write_emd(tmp_path / "free.emd", "free.onnx", tile=16)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "build" / "plugins"), str(emd)],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    got = json.loads(lines[0][len("RESULT "):])
    assert got["min_height"] >= 260
    first = got["names"][0]
    assert got["first_detail"].startswith(f"<b>{first}</b>: ")  # the first row is selected and described
    # the selected row in full under the table, with its default and the value the run will use
    assert got["batch_detail"].startswith("<b>batch_size</b>: " + html.escape(got["descriptions"]["batch_size"]))
    assert "Default: 4." in got["batch_detail"] and "The run uses 4 (6 is not a perfect square" in got["batch_detail"]
    longest = got["longest"]
    assert len(got["descriptions"][longest]) > 80
    assert html.escape(got["descriptions"][longest]) in got["longest_detail"]
    # every column in sight (nothing scrolled out of the table)
    assert sum(got["widths"]) <= got["viewport"] and not got["hscroll"], (got["widths"], got["viewport"])
    # one-line rows: at least nine fit in the table's height (wrapped cells once let two fill it)
    assert got["min_height"] >= 9 * max(got["row_heights"].values())

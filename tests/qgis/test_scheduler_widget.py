# SPDX-License-Identifier: GPL-2.0-or-later
"""The Dask scheduler field in the dialogs: a hint under the box says what to type (not only its tooltip), and turns
into the reason, in a sentence with an example, as soon as the value would be refused.

The widget needs a QApplication with widgets: it runs in a child Python with its own QgsApplication (offscreen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, sys
sys.path.insert(0, "/usr/share/qgis/python/plugins")
sys.path.insert(0, sys.argv[1])
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], True)
app.initQgis()
from dltools.algorithms.scheduler_widget import SchedulerWidget

widget = SchedulerWidget()
out = {}
for text in ("", "local", "local:2", "tcp://10.0.0.5:8786", "local 2", "cluster"):
    widget.edit.setText(text)
    out[text] = {"hint": widget.hint.text(), "ok": widget.check()}
print("RESULT " + json.dumps(out))
'''


def test_the_scheduler_field_has_a_hint_that_turns_into_the_reason():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "build" / "plugins")], capture_output=True,
                          text=True, timeout=120, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    got = json.loads(lines[0][len("RESULT "):])
    for good in ("", "local", "local:2", "tcp://10.0.0.5:8786"):
        assert got[good]["ok"] and "Empty: in this process" in got[good]["hint"] and "local:2" in got[good]["hint"]
    assert not got["local 2"]["ok"] and "color:#a00000" in got["local 2"]["hint"]
    assert "(for 2 local workers write local:2)" in got["local 2"]["hint"]
    assert not got["cluster"]["ok"] and "is not a setting this tool knows" in got["cluster"]["hint"]


def test_the_raster_tools_ask_for_the_hinting_field_in_their_dialogs(qgis_app):
    """Classify Pixels, Detect Change and Detect Objects (and Classify Objects) put our widget on SCHEDULER in their
    dialog; batch mode and the modeler keep QGIS's own text box (the factory's choice)."""
    from qgis.core import QgsApplication

    for name in ("classifypixels", "detectchange", "detectobjects", "classifyobjects"):
        param = QgsApplication.processingRegistry().algorithmById(f"dltools:{name}").parameterDefinition("SCHEDULER")
        assert param.metadata()["widget_wrapper"]["class"] == \
            "dltools.algorithms.scheduler_widget.SchedulerWidgetFactory", name
    from dltools.algorithms.scheduler_widget import SchedulerWidgetFactory  # importable as the dialog imports it

    assert callable(SchedulerWidgetFactory)


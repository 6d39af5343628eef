# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs inside the real QGIS desktop (``qgis --code``) whose Python has no ONNX Runtime: finds the plugin's message
bar, clicks *Install…*, runs the installer's dialog, then runs Classify Pixels from its dialog.

Plan in $DLTOOLS_GUI_PLAN (JSON), result in $DLTOOLS_GUI_RESULT (JSON), PNG screenshots; then QGIS quits.
"""

import json
import os
import time
import traceback

from qgis.core import QgsApplication, QgsProcessingContext, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QPushButton, QTextEdit
from qgis.utils import iface, plugins

PLAN = json.loads(open(os.environ["DLTOOLS_GUI_PLAN"], encoding="utf-8").read())
RESULT = os.environ["DLTOOLS_GUI_RESULT"]
SHOTS = PLAN["screenshots"]
results = {"errors": []}


def wait(seconds, until=None):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def run_dialog(dlg, name, timeout):
    finished = {}
    dlg.algorithmFinished.connect(lambda ok, res: finished.update(ok=ok, result=res))
    dlg.runAlgorithm()
    wait(timeout, lambda: bool(finished))
    wait(1.0)
    dlg.grab().save(os.path.join(SHOTS, f"{name}_log.png"))
    return {"ok": finished.get("ok"), "result": {k: str(v) for k, v in (finished.get("result") or {}).items()},
            "log": dlg.findChild(QTextEdit, "txtLog").toPlainText()[-4000:]}  # the dialog's Log tab


def message_bar():
    bar = iface.messageBar()
    for item in bar.items():
        button = item.findChild(QPushButton, "dltoolsInstallButton")
        if button is not None:
            return item, button
    return None, None


def main():
    try:
        iface.mainWindow().resize(1200, 800)
        wait(1.0)
        item, button = message_bar()
        results["message"] = item.text() if item is not None else None
        results["messages_with_button"] = sum(1 for i in iface.messageBar().items()
                                              if i.findChild(QPushButton, "dltoolsInstallButton") is not None)
        iface.mainWindow().grab().save(os.path.join(SHOTS, "install_message_bar.png"))
        if button is None:
            raise RuntimeError("no message bar with the Install button")
        button.click()
        wait(1.0)
        plugin = plugins["dltools"]
        dlg = plugin.installer_dialog
        results["dialog_alg"] = dlg.algorithm().id()
        results["bar_after_click"] = message_bar()[0] is not None
        dlg.resize(800, 700)
        wait(0.5)
        dlg.grab().save(os.path.join(SHOTS, "install_libraries_dialog.png"))
        results["install"] = run_dialog(dlg, "install_libraries", 400)
        dlg.close()
        results["offered_again"] = plugin.offer_installer()  # once per session

        from processing.gui.AlgorithmDialog import AlgorithmDialog

        alg = QgsApplication.processingRegistry().createAlgorithmById("dltools:classifypixels")
        cdlg = AlgorithmDialog(alg, False, iface.mainWindow())
        cdlg.show()
        wait(0.5)
        wrappers = cdlg.mainWidget().wrappers
        ctx = QgsProcessingContext()
        wrappers["INPUT"].setParameterValue(PLAN["raster"], ctx)
        wrappers["MODEL"].setValue(PLAN["model"])
        wait(0.5)
        results["summary"] = wrappers["MODEL"].widget.summary.text()
        wrappers["OUTPUT"].setWidgetValue(PLAN["output"], ctx)
        results["classify"] = run_dialog(cdlg, "classify_after_install", 120)
        cdlg.close()
    except Exception:  # noqa: BLE001 - recorded for the test to report
        results["errors"].append(traceback.format_exc())
    finally:
        with open(RESULT, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
        QgsProject.instance().setDirty(False)
        os._exit(0)


QTimer.singleShot(500, main)

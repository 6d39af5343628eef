# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs inside the real QGIS desktop (``qgis --code``): opens each tool's dialog as a user would, sets a model,
reads the argument table, changes a value, runs, and records what ended up in the project.

It reads its plan from $DLTOOLS_GUI_PLAN (JSON) and writes $DLTOOLS_GUI_RESULT (JSON) and PNG screenshots, then
quits QGIS.  Any exception is recorded, never left to hang the desktop.
"""

import json
import os
import sys
import time
import traceback

from qgis.core import QgsApplication, QgsProcessingContext, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface, plugins

PLAN = json.loads(open(os.environ["DLTOOLS_GUI_PLAN"], encoding="utf-8").read())
RESULT = os.environ["DLTOOLS_GUI_RESULT"]
SHOTS = PLAN["screenshots"]
results = {"tools": {}, "plugins": sorted(plugins), "errors": [],
           "plugin_file": getattr(sys.modules.get("dltools"), "__file__", "")}  # which copy QGIS loaded


def wait(seconds, until=None):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def table_rows(wrapper):
    table = wrapper.widget.table
    rows = []
    for i in range(table.rowCount()):
        rows.append({"name": table.item(i, 0).text(), "value": table.item(i, 1).text(),
                     "default": table.item(i, 2).text(), "description": table.item(i, 3).text(),
                     "background": table.item(i, 1).background().color().name()})
    return rows


def run_tool(step):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    alg = QgsApplication.processingRegistry().createAlgorithmById(step["alg"])
    out = {"alg": step["alg"], "help_url": alg.helpUrl(), "group": alg.group()}
    dlg = AlgorithmDialog(alg, False, iface.mainWindow())
    dlg.resize(900, 900)
    dlg.show()
    wait(0.5)
    panel = dlg.mainWidget()
    wrappers = panel.wrappers
    ctx = QgsProcessingContext()
    out["shown"] = sorted(n for n, w in wrappers.items() if w is not None)  # the parameters the dialog shows
    for name, value in step.get("inputs", {}).items():
        wrappers[name].setParameterValue(value, ctx)
    if "model" in step:
        model_part(step, out, dlg, wrappers)
    for name, value in step.get("outputs", {}).items():
        wrappers[name].setWidgetValue(value, ctx)
    finished = {}
    dlg.algorithmFinished.connect(lambda ok, res: finished.update(ok=ok, result=res))
    dlg.runAlgorithm()
    wait(120, lambda: bool(finished))
    wait(1.0)
    out["finished"] = {"ok": finished.get("ok"),
                       "result": {k: str(v) for k, v in (finished.get("result") or {}).items()}}
    out["log"] = dlg.textLog.toPlainText()[-3000:] if hasattr(dlg, "textLog") else ""
    dlg.grab().save(os.path.join(SHOTS, f"{step['name']}_log.png"))
    out["layers"] = project_layers()
    dlg.close()
    return out


def model_part(step, out, dlg, wrappers):
    """What a tool with a model does in its dialog: the model set, the argument table read, edited and checked."""
    out["model_wrapper"] = type(wrappers["MODEL"]).__name__
    out["arguments_wrapper"] = type(wrappers["ARGUMENTS"]).__name__
    wrappers["MODEL"].setValue(step["model"])
    wait(0.5)
    out["summary"] = wrappers["MODEL"].widget.summary.text()
    out["rows_before"] = table_rows(wrappers["ARGUMENTS"])
    out["value_before"] = wrappers["ARGUMENTS"].value()
    table = wrappers["ARGUMENTS"].widget.table
    for name, bad in step.get("invalid", {}).items():
        row = [r["name"] for r in out["rows_before"]].index(name)
        table.item(row, 1).setText(bad)
        wait(0.2)
        out.setdefault("invalid_seen", {})[name] = {
            "background": table.item(row, 1).background().color().name(),
            "note": wrappers["ARGUMENTS"].widget.note.text()}
        dlg.grab().save(os.path.join(SHOTS, f"{step['name']}_invalid.png"))
    for name, value in step.get("change", {}).items():
        row = [r["name"] for r in out["rows_before"]].index(name)
        table.item(row, 1).setText(value)
    wait(0.2)
    out["value_after"] = wrappers["ARGUMENTS"].value()
    out["note_after"] = wrappers["ARGUMENTS"].widget.note.text()
    dlg.grab().save(os.path.join(SHOTS, f"{step['name']}.png"))
    if step.get("batch"):  # batch mode keeps QGIS's own widgets
        from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog

        batch = BatchAlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById(step["alg"]),
                                     iface.mainWindow())
        batch.show()
        wait(0.3)
        ws = batch.mainWidget().wrappers[0]
        out["batch_wrappers"] = sorted({type(w).__name__ for w in ws if w is not None})
        batch.close()
    if step.get("modeler"):  # so does the Graphical Modeler (model inputs can feed MODEL and ARGUMENTS)
        from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
        from qgis.core import QgsProcessingModelAlgorithm

        model = QgsProcessingModelAlgorithm("m", "g")
        mdlg = ModelerParametersDialog(QgsApplication.processingRegistry().createAlgorithmById(step["alg"]), model)
        mdlg.show()
        wait(0.3)
        ws = mdlg.widget.widget.wrappers
        out["modeler_wrappers"] = {name: type(ws[name]).__name__ for name in ("MODEL", "ARGUMENTS")}
        mdlg.grab().save(os.path.join(SHOTS, f"{step['name']}_modeler.png"))
        mdlg.close()


def project_layers():
    """Every layer in the project: name, source and how it is drawn."""
    layers = []
    for layer in QgsProject.instance().mapLayers().values():
        info = {"name": layer.name(), "source": layer.source(), "provider": layer.providerType()}
        if isinstance(layer, QgsRasterLayer):
            info["renderer"] = layer.renderer().type()
            if info["renderer"] == "paletted":
                info["classes"] = [[c.value, c.label, c.color.name()] for c in layer.renderer().classes()]
        elif isinstance(layer, QgsVectorLayer):
            r = layer.renderer()
            info["renderer"] = r.type()
            info["count"] = layer.featureCount()
            if r.type() == "categorizedSymbol":
                info["field"] = r.classAttribute()
                info["categories"] = [[c.value(), c.label(), c.symbol().color().name()] for c in r.categories()]
        layers.append(info)
    return layers


def toolbox():
    """The Processing Toolbox as a user sees it, filtered on our provider: what sits under its node."""
    from qgis.gui import QgsProcessingToolboxTreeView
    from qgis.PyQt.QtWidgets import QDockWidget, QLineEdit

    dock = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    dock.show()
    wait(0.3)
    search = dock.findChild(QLineEdit)
    if search is not None:
        search.setText("Deep Learning")
    view = dock.findChild(QgsProcessingToolboxTreeView)
    view.expandAll()
    wait(0.3)
    model = view.model()
    children = {}

    def walk(parent, depth=0):
        for r in range(model.rowCount(parent)):
            index = model.index(r, 0, parent)
            text = model.data(index)
            if text == "Deep Learning Tools":
                children["under_provider"] = [model.data(model.index(c, 0, index))
                                              for c in range(model.rowCount(index))]
            elif depth < 3:
                walk(index, depth + 1)

    from qgis.PyQt.QtCore import QModelIndex

    walk(QModelIndex())
    dock.grab().save(os.path.join(SHOTS, "toolbox.png"))
    return children


def main():
    try:
        for step in PLAN["steps"]:
            try:
                results["tools"][step["name"]] = run_tool(step)
            except Exception:  # noqa: BLE001 - recorded for the test to report
                results["errors"].append(f"{step['name']}: {traceback.format_exc()}")
        results["toolbox"] = toolbox()
        iface.mainWindow().resize(1200, 800)
        iface.mapCanvas().zoomToFullExtent()
        iface.mapCanvas().refreshAllLayers()
        wait(2.0)
        iface.mainWindow().grab().save(os.path.join(SHOTS, "qgis_main_window.png"))
    except Exception:  # noqa: BLE001
        results["errors"].append(traceback.format_exc())
    finally:
        with open(RESULT, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
        QgsProject.instance().setDirty(False)
        os._exit(0)  # no "save the project?" question, no lingering desktop


QTimer.singleShot(500, main)

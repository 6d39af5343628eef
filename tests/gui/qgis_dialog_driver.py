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

from qgis.core import QgsApplication, QgsProcessingContext, QgsProject, QgsRasterLayer, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QLabel, QProgressBar, QTextEdit
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
    for path in step.get("project_layers", []):  # loaded before the dialog opens, as a user has them
        name = os.path.splitext(os.path.basename(path))[0]
        layer = QgsRasterLayer(path, name) if path.endswith(".tif") else QgsVectorLayer(path, name)
        QgsProject.instance().addMapLayer(layer)
    if "active_layer" in step:  # the layer selected in the Layers panel (the last one added, unless chosen)
        iface.setActiveLayer(QgsProject.instance().mapLayersByName(step["active_layer"])[0])
        wait(0.2)
    if "compare_with" in step:  # what QGIS's own tool preselects in the same project
        out["qgis_preselects"] = preselected(step["compare_with"])
    for key, value in step.get("settings", {}).items():  # Processing > Options > Providers > Deep Learning Tools
        QgsSettings().setValue(f"Processing/Configuration/{key}", value)
    dlg = AlgorithmDialog(alg, False, iface.mainWindow())
    dlg.resize(900, 900)
    dlg.show()
    wait(0.5)
    dlg.resize(900, 900)  # again once shown: QGIS may restore a saved geometry when the dialog shows
    wait(0.2)
    out["size"] = [dlg.width(), dlg.height()]
    panel = dlg.mainWidget()
    wrappers = panel.wrappers
    ctx = QgsProcessingContext()
    out["shown"] = sorted(n for n, w in wrappers.items() if w is not None)  # the parameters the dialog shows
    out["labels"] = labels(wrappers)
    out["preselected"] = {n: layer_name(w.parameterValue()) for n, w in wrappers.items()
                          if w is not None and n in ("INPUT", "FEATURES")}
    out["active_layer"] = layer_name(iface.activeLayer().id()) if iface.activeLayer() is not None else ""
    if step.get("project_layers"):
        dlg.grab().save(os.path.join(SHOTS, f"{step['name']}_opened.png"))
    for name, value in step.get("inputs", {}).items():
        wrappers[name].setParameterValue(value, ctx)
    if "model" in step:
        model_part(step, out, dlg, wrappers)
    for name, value in step.get("outputs", {}).items():
        wrappers[name].setWidgetValue(value, ctx)
    finished = {}
    dlg.algorithmFinished.connect(lambda ok, res: finished.update(ok=ok, result=res))
    dlg.runAlgorithm()
    if "cancel" in step:
        out["cancel"] = cancel(dlg, step["cancel"])
    else:
        wait(120, lambda: bool(finished))
    wait(1.0)
    out["finished"] = {"ok": finished.get("ok"),
                       "result": {k: str(v) for k, v in (finished.get("result") or {}).items()}}
    out["log"] = log_text(dlg)[-3000:]
    dlg.grab().save(os.path.join(SHOTS, f"{step['name']}_log.png"))
    out["layers"] = project_layers()
    dlg.close()
    for key in step.get("settings", {}):
        QgsSettings().remove(f"Processing/Configuration/{key}")
    return out


def preselected(alg_id):
    """The layer a tool's dialog opens with in its INPUT field."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    dlg = AlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById(alg_id), False, iface.mainWindow())
    dlg.show()
    wait(0.3)
    value = layer_name(dlg.mainWidget().wrappers["INPUT"].parameterValue())
    dlg.close()
    return value


def log_text(dlg):
    """The dialog's Log tab (QGIS's "txtLog"; the dialog has no Python attribute for it)."""
    return dlg.findChild(QTextEdit, "txtLog").toPlainText()


def labels(wrappers):
    """Each parameter's label as the dialog shows it, with its tooltip."""
    shown = {}
    for name, w in wrappers.items():
        label = w.wrappedLabel() if w is not None else None
        if label is not None:
            shown[name] = {"text": label.text(), "tooltip": label.toolTip()}
    return shown


def layer_name(value):
    """A layer parameter's value as the layer's name (the widgets give a layer id), or the value itself."""
    layer = QgsProject.instance().mapLayer(str(value)) if value not in (None, "") else None
    return layer.name() if layer is not None else ("" if value is None else str(value))


def cancel(dlg, plan):
    """Click the dialog's own Cancel button once the run has done ``plan["after_progress"]`` %: what the dialog
    says right after the click (no event processed in between), and how long the run goes on after it."""
    bar = dlg.findChild(QProgressBar)
    started = time.time()
    button = dlg.cancelButton()
    wait(120, lambda: bar.value() >= plan["after_progress"] or not button.isEnabled())
    seen = {"progress_at_click": bar.value(), "start_to_click": time.time() - started,
            "enabled_before": button.isEnabled()}
    clicked = time.time()
    button.click()
    seen["log_at_click"] = log_text(dlg)[-2000:]
    seen["labels_at_click"] = [w.text() for w in dlg.findChildren(QLabel) if "Cancelling" in w.text()]
    dlg.grab().save(os.path.join(SHOTS, f"{plan['screenshot']}_at_click.png"))  # may make the end seen later
    ended = wait(30, lambda: not button.isEnabled())  # the dialog disables Cancel when the run has ended
    seen["ended"] = ended
    seen["click_to_end"] = time.time() - clicked
    dlg.grab().save(os.path.join(SHOTS, f"{plan['screenshot']}.png"))
    return seen


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

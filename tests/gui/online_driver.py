# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs inside the real QGIS desktop (``qgis --code``): the XYZ connection the test wrote into the profile (as
the Browser's "New Connection" stores it), its layer added from the Browser's XYZ Tiles node, the map canvas
zoomed onto the test's tiles, then Classify Pixels from its dialog with the extent taken from the map canvas, and
screenshots.

Plan in $DLTOOLS_GUI_PLAN (JSON), result in $DLTOOLS_GUI_RESULT (JSON); then QGIS quits.
"""

import json
import os
import time
import traceback

from qgis.core import QgsProcessingContext, QgsProject, QgsRectangle
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface

PLAN = json.loads(open(os.environ["DLTOOLS_GUI_PLAN"], encoding="utf-8").read())
RESULT = os.environ["DLTOOLS_GUI_RESULT"]
SHOTS = PLAN["screenshots"]
results = {"errors": []}


def mark(step):
    """Where the run has got to (a crash leaves the last step in <result>.steps)."""
    with open(RESULT + ".steps", "a", encoding="utf-8") as fh:
        fh.write(step + "\n")


def wait(seconds, until=None):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def browser_layer(name):
    """The XYZ connection's layer, added as a double click in the Browser adds it (the item's mime URI)."""
    model = iface.browserModel()
    for row in range(model.rowCount()):
        index = model.index(row, 0)
        if model.data(index) != "XYZ Tiles":
            continue
        mark("xyz node")
        model.fetchMore(index)

        def child(parent=index):
            for r in range(model.rowCount(parent)):
                if model.data(model.index(r, 0, parent)) == name:
                    return model.index(r, 0, parent)
            return None

        wait(15, lambda: child() is not None)
        uri = model.dataItem(child()).mimeUris()[0]
        results["browser_uri"] = {"uri": uri.uri, "provider": uri.providerKey, "kind": uri.layerType}
        return iface.addRasterLayer(uri.uri, uri.name, uri.providerKey)
    raise RuntimeError("the Browser has no XYZ Tiles node")


def main():
    try:
        # the connection is in the profile (written before QGIS started, as "New Connection" stores it)
        mark("connection")
        layer = browser_layer(PLAN["name"])
        mark("layer added")
        results["layer"] = {"valid": layer.isValid(), "provider": layer.providerType(), "crs": layer.crs().authid()}
        iface.mainWindow().resize(1200, 800)
        canvas = iface.mapCanvas()
        canvas.setDestinationCrs(layer.crs())
        wait(1.0)  # the first layer's own zoom to its (world) extent comes first
        for _ in range(3):
            canvas.setExtent(QgsRectangle(*PLAN["canvas_extent"]))
            canvas.refresh()
            wait(2.0)
            if canvas.extent().width() < 2 * (PLAN["canvas_extent"][2] - PLAN["canvas_extent"][0]):
                break
        mark("canvas")
        extent = canvas.extent()
        results["canvas_extent"] = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]

        from processing.gui.AlgorithmDialog import AlgorithmDialog
        from qgis.core import QgsApplication

        dlg = AlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById("dltools:classifypixels"),
                              False, iface.mainWindow())
        dlg.resize(900, 900)
        dlg.show()
        wait(0.5)
        wrappers = dlg.mainWidget().wrappers
        ctx = QgsProcessingContext()
        wrappers["INPUT"].setParameterValue(layer, ctx)
        wrappers["MODEL"].setValue(PLAN["model"])
        wait(0.5)
        wrapper = wrappers["EXTENT"]
        panel = wrapper.wrappedWidget() if hasattr(wrapper, "wrappedWidget") else getattr(wrapper, "widget", None)
        results["extent_widget"] = type(panel).__name__
        if hasattr(panel, "setOutputExtentFromCurrent"):  # QgsExtentWidget's "Use Current Map Canvas Extent"
            panel.setOutputExtentFromCurrent()
            results["extent_from"] = "Use Current Map Canvas Extent"
        elif hasattr(panel, "useCanvasExtent"):  # the Python panel's "Use Map Canvas Extent"
            panel.useCanvasExtent()
            results["extent_from"] = "Use Map Canvas Extent"
        else:
            wrappers["EXTENT"].setParameterValue(extent, ctx)
            results["extent_from"] = "canvas extent value"
        wrappers["CELL_SIZE"].setParameterValue(PLAN["cell_size"], ctx)
        wrappers["OUTPUT"].setWidgetValue(PLAN["output"], ctx)
        dlg.grab().save(os.path.join(SHOTS, "online_xyz_dialog.png"))
        finished = {}
        dlg.algorithmFinished.connect(lambda ok, res: finished.update(ok=ok, result=res))
        mark("dialog filled")
        dlg.runAlgorithm()
        wait(180, lambda: bool(finished))
        wait(1.0)
        results["finished"] = {"ok": finished.get("ok"),
                               "result": {k: str(v) for k, v in (finished.get("result") or {}).items()}}
        from qgis.PyQt.QtWidgets import QTextEdit

        log = dlg.findChild(QTextEdit, "txtLog")
        results["log"] = log.toPlainText()[-4000:] if log is not None else ""
        mark("run finished")
        dlg.close()
        results["layers"] = [{"name": lyr.name(), "source": lyr.source(), "provider": lyr.providerType()}
                             for lyr in QgsProject.instance().mapLayers().values()]
        for lyr in QgsProject.instance().mapLayers().values():  # the classes over the basemap, half see-through
            if lyr.source() == PLAN["output"] and lyr.renderer() is not None:
                lyr.renderer().setOpacity(0.45)
                lyr.triggerRepaint()
        canvas.refreshAllLayers()
        wait(4.0)
        iface.mainWindow().grab().save(os.path.join(SHOTS, "online_xyz.png"))
    except Exception:  # noqa: BLE001 - recorded for the test to report
        results["errors"].append(traceback.format_exc())
    finally:
        with open(RESULT, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
        QgsProject.instance().setDirty(False)
        os._exit(0)


QTimer.singleShot(500, main)

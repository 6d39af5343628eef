# SPDX-License-Identifier: GPL-2.0-or-later
"""Non Maximum Suppression's output is styled: it carries its input's style by attributes (Detect Objects' classes,
say), else it is categorized by the class field in the colour-blind-safe palette; a file output gets the style as a
.qml beside it, a loaded layer gets it on loading."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dialog_run import run_like_the_dialog, to_project  # noqa: E402
from test_non_maximum_suppression import CHAIN, polygon_layer  # noqa: E402

NMS = "dltools:nonmaximumsuppression"


def categorized(field: str, colours: dict[str, tuple[int, int, int]]):
    from qgis.core import QgsCategorizedSymbolRenderer, QgsRendererCategory, QgsSymbol, QgsWkbTypes
    from qgis.PyQt.QtGui import QColor

    cats = []
    for value, rgb in colours.items():
        symbol = QgsSymbol.defaultSymbol(QgsWkbTypes.PolygonGeometry)
        symbol.setColor(QColor(*rgb))
        cats.append(QgsRendererCategory(value, symbol, value))
    return QgsCategorizedSymbolRenderer(field, cats)


def colours_of(renderer) -> dict[str, tuple]:
    return {str(c.value()): c.symbol().color().getRgb()[:3] for c in renderer.categories()}


def test_the_inputs_style_is_carried_to_the_loaded_layer_and_the_file(qgis_app, tmp_path):
    from qgis.core import QgsProject, QgsVectorLayer

    layer = polygon_layer(CHAIN)
    layer.setRenderer(categorized("Class", {"car": (200, 10, 10), "truck": (10, 10, 200)}))
    QgsProject.instance().addMapLayer(layer)
    try:
        run = run_like_the_dialog(NMS, {"INPUT": layer.id(), "CLASS_FIELD": "Class",
                                        "OUTPUT": to_project(str(tmp_path / "kept.gpkg"))})
        assert run.ok and run.handled, run.errors
        loaded = run.layers[0]
        assert loaded.renderer().type() == "categorizedSymbol" and loaded.renderer().classAttribute() == "Class"
        assert colours_of(loaded.renderer()) == {"car": (200, 10, 10), "truck": (10, 10, 200)}
    finally:
        QgsProject.instance().removeAllMapLayers()
    again = QgsVectorLayer(str(tmp_path / "kept.gpkg"), "again", "ogr")  # the .qml beside the file applies
    assert (tmp_path / "kept.qml").is_file() and again.renderer().type() == "categorizedSymbol"
    assert colours_of(again.renderer()) == {"car": (200, 10, 10), "truck": (10, 10, 200)}


def test_an_unstyled_input_is_categorized_by_its_class_field(context, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    far_truck = ("POLYGON((40 0,50 0,50 10,40 10,40 0))", 70.0, "truck")
    processing.run(NMS, {"INPUT": polygon_layer(CHAIN + [far_truck]), "CLASS_FIELD": "Class",
                         "OUTPUT": str(tmp_path / "k.gpkg")}, context=context)
    layer = QgsVectorLayer(str(tmp_path / "k.gpkg"), "k", "ogr")
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "Class"
    # kept: car 95 (it removes truck 90, which removed truck 80) and the far truck; the palette's first two, sorted
    assert colours_of(renderer) == {"car": (204, 102, 119), "truck": (51, 34, 136)}
    assert {f["Class"] for f in layer.getFeatures()} <= set(colours_of(renderer))


def test_without_classes_or_style_nothing_is_invented(context, tmp_path):
    import processing

    processing.run(NMS, {"INPUT": polygon_layer(CHAIN, class_field=None), "OUTPUT": str(tmp_path / "k.gpkg")},
                   context=context)
    assert not (tmp_path / "k.qml").exists()

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects' output styled by class: a categorized renderer on the label field with the model's colours,
applied when the layer is loaded and written as a .qml next to a file output (QGIS applies it on every load)."""

from __future__ import annotations

import os

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsReadWriteContext,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtXml import QDomDocument

from ..core.model.definition import ClassInfo, palette


def categorized_renderer(field: str, classes: list[ClassInfo], geometry_type: int) -> QgsCategorizedSymbolRenderer:
    """One category per class (its Name, in its Color, or a palette colour), labelled with the class name."""
    colours = palette(max(1, len(classes)))
    categories = []
    for i, c in enumerate(classes):
        symbol = QgsSymbol.defaultSymbol(geometry_type)
        rgb = c.color or colours[i % len(colours)]
        symbol.setColor(QColor(*rgb))
        if geometry_type == 2:  # polygons: see the image through them
            symbol.setOpacity(0.6)
        categories.append(QgsRendererCategory(c.name, symbol, c.name))
    return QgsCategorizedSymbolRenderer(field, categories)


def carried_style_qml(layer: QgsMapLayer | None) -> str | None:
    """The symbology of a vector layer styled by its attributes (categorized, graduated, rule-based), as QML to put
    on an output with the same fields: Non Maximum Suppression's result looks like its input. None otherwise.
    Call it in prepareAlgorithm (the main thread): a project layer's renderer is not for the worker thread."""
    if not isinstance(layer, QgsVectorLayer) or layer.renderer() is None or \
            layer.renderer().type() not in ("categorizedSymbol", "graduatedSymbol", "RuleRenderer"):
        return None
    doc = QDomDocument("qgis")
    layer.exportNamedStyle(doc, QgsReadWriteContext(), QgsMapLayer.Symbology)
    return doc.toString()


def values_style_qml(field: str, values: list, geometry_type: int) -> str:
    """A categorized style on ``field``: one colour of the colour-blind-safe palette per value, in sorted order."""
    ordered = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    colours = palette(max(1, len(ordered)))
    categories = []
    for value, rgb in zip(ordered, colours):
        symbol = QgsSymbol.defaultSymbol(geometry_type)
        symbol.setColor(QColor(*rgb))
        if geometry_type == 2:
            symbol.setOpacity(0.6)
        categories.append(QgsRendererCategory(value, symbol, str(value)))
    style = QgsVectorLayer(f"{_geometry_name(geometry_type)}?field={field}:string", "style", "memory")
    style.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    doc = QDomDocument("qgis")
    style.exportNamedStyle(doc, QgsReadWriteContext(), QgsMapLayer.Symbology)
    return doc.toString()


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a style (QML text) to the output layer, raster or vector, once Processing has loaded it."""

    instances: list = []  # Python must keep them alive while QGIS holds the pointer

    def __init__(self, qml: str) -> None:
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802, ANN001 - QGIS API
        doc = QDomDocument("qgis")
        if isinstance(layer, QgsMapLayer) and doc.setContent(self.qml):
            layer.importNamedStyle(doc)
            layer.triggerRepaint()

    @classmethod
    def create(cls, qml: str) -> StylePostProcessor:
        proc = cls(qml)
        cls.instances.append(proc)
        return proc


def style_on_load(output: str, qml_file: str, context: QgsProcessingContext) -> None:
    """Apply the .qml written next to ``output`` when Processing loads the output into the project."""
    if os.path.isfile(qml_file) and context.willLoadLayerOnCompletion(output):
        with open(qml_file, encoding="utf-8") as fh:
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(StylePostProcessor.create(fh.read()))


def style_classified_objects(dest: str, classes: list[ClassInfo], context: QgsProcessingContext) -> str | None:
    """Style Classify Objects' output ``dest`` by its label field; returns the .qml written, if any."""
    if not dest or not classes:
        return None
    layer = QgsProcessingUtils.mapLayerFromString(dest, context)
    if not isinstance(layer, QgsVectorLayer) or layer.fields().count() < 3 or int(layer.geometryType()) not in (0, 1, 2):
        return None  # a table (images without georeference) has nothing to draw
    field = layer.fields()[layer.fields().count() - 3].name()  # the tool appends label, ClassValue, Confidence
    style = QgsVectorLayer(f"{_geometry_name(layer.geometryType())}?field={field}:string", "style", "memory")
    style.setRenderer(categorized_renderer(field, classes, layer.geometryType()))
    doc = QDomDocument("qgis")
    style.exportNamedStyle(doc)
    qml = doc.toString()
    written = None
    path = dest.split("|")[0]
    if layer.providerType() == "ogr" and os.path.isfile(path):
        written = os.path.splitext(path)[0] + ".qml"
        with open(written, "w", encoding="utf-8") as fh:
            fh.write(qml)
    if context.willLoadLayerOnCompletion(dest):
        context.layerToLoadOnCompletionDetails(dest).setPostProcessor(StylePostProcessor.create(qml))
    return written


def _geometry_name(geometry_type: int) -> str:
    return {0: "Point", 1: "LineString", 2: "Polygon"}.get(int(geometry_type), "None")

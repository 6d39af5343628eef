# SPDX-License-Identifier: GPL-2.0-or-later
"""Non Maximum Suppression (``dltools:nonmaximumsuppression``), with ArcGIS's rule."""

from __future__ import annotations

from typing import Any

from osgeo import ogr
from qgis.core import (
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from ..core.detection.nms import made_valid, nms_polygons
from .base import DLToolsAlgorithm
from .class_style import StylePostProcessor, carried_style_qml, values_style_qml
from .feature_inputs import SKIP_VALIDITY
from .outputs import AtomicSink, name_result_layer, output_destination, refuse_same_files, result_layer_name
from .running import run_engine

ogr.UseExceptions()

CLASS_FALLBACKS = ("Classvalue", "Value")


def write_style(sink: AtomicSink, qml: str | None, feedback) -> None:  # noqa: ANN001
    """The style beside a file output (renamed with it on success), so QGIS applies it whenever the file is opened."""
    path = sink.side_path(".qml") if qml else None
    if path is None:
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(qml)
    except OSError as exc:
        feedback.reportError(f"Could not write the style next to the output: {exc}", fatalError=False)


def fallback_class_field(names: list[str]) -> str | None:
    """ArcGIS: without a class field, a ``Classvalue`` or ``Value`` field (any case) is used, else one class."""
    lowered = {n.lower(): n for n in names}
    for candidate in CLASS_FALLBACKS:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


class NonMaximumSuppressionAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    CONFIDENCE_FIELD = "CONFIDENCE_FIELD"
    CLASS_FIELD = "CLASS_FIELD"
    MAX_OVERLAP_RATIO = "MAX_OVERLAP_RATIO"
    OUTPUT = "OUTPUT"

    HELP_SECTION = "Non Maximum Suppression"

    def name(self) -> str:
        return "nonmaximumsuppression"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Non Maximum Suppression")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Removes duplicate detections: of two polygons whose intersection over union is more than the maximum "
            "overlap ratio, the one with the lower confidence is removed. With a class field, each class is "
            "reviewed on its own first, then all remaining features are reviewed together across classes (as "
            "ArcGIS's Non Maximum Suppression). Without one, a 'Classvalue' or 'Value' field is used if the layer "
            "has one, else all features are one class. Attributes are kept. A spatial index keeps tens of "
            "thousands of features to seconds. The result carries the input layer's style (or is categorized by "
            "the class field) and is named after the input.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterFeatureSource(self.INPUT, self.tr("Input features"),
                                                           [QgsProcessing.TypeVectorPolygon]),
                       "Polygons with a confidence score, e.g. the output of Detect Objects Using Deep Learning.")
        self.add_param(QgsProcessingParameterField(self.CONFIDENCE_FIELD, self.tr("Confidence score field"),
                                                   defaultValue="Confidence", parentLayerParameterName=self.INPUT,
                                                   optional=True),
                       "The numeric field holding each feature's confidence; the higher one wins. Default: "
                       "'Confidence'.")
        self.add_param(QgsProcessingParameterField(self.CLASS_FIELD, self.tr("Class value field"), optional=True,
                                                   parentLayerParameterName=self.INPUT),
                       "The object class. Empty: a 'Classvalue' or 'Value' field if there is one, else one class.")
        self.add_param(QgsProcessingParameterNumber(self.MAX_OVERLAP_RATIO, self.tr("Max overlap ratio"),
                                                    QgsProcessingParameterNumber.Double, defaultValue=0.0,
                                                    minValue=0.0, maxValue=1.0),
                       "Intersection over union above which two features are duplicates. 0: any overlap of "
                       "positive area.")
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Output features"),
                                                         QgsProcessing.TypeVectorPolygon),
                       "The features kept, with all their attributes.")

    def prepareAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> bool:  # noqa: N802, ANN001
        """In the main thread: the input's style by its attributes, carried to the output (same fields)."""
        self._input_style = carried_style_qml(self.parameterAsVectorLayer(parameters, self.INPUT, context))
        return True

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        refuse_same_files({self.OUTPUT: output_destination(self, parameters, self.OUTPUT, context)},
            {self.INPUT: layer.source() if layer is not None else None})
        if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PolygonGeometry:
            raise QgsProcessingException(f"Layer '{source.sourceName()}' has {QgsWkbTypes.displayString(source.wkbType())} "
                                         "geometries: Non Maximum Suppression needs polygons")
        fields = source.fields()
        names = [f.name() for f in fields]
        conf_name = self.parameterAsString(parameters, self.CONFIDENCE_FIELD, context) or "Confidence"
        conf_idx = fields.lookupField(conf_name)
        if conf_idx < 0:
            raise QgsProcessingException(f"Layer '{source.sourceName()}' has no field '{conf_name}' (its fields: "
                                         f"{', '.join(names) or 'none'}): choose the confidence score field")
        if not fields.at(conf_idx).isNumeric():
            raise QgsProcessingException(f"Field '{conf_name}' is {fields.at(conf_idx).typeName()}, not a number: "
                                         "choose a numeric confidence score field")
        class_name = self.parameterAsString(parameters, self.CLASS_FIELD, context) or fallback_class_field(names)
        class_idx = fields.lookupField(class_name) if class_name else -1
        if class_name and class_idx < 0:
            raise QgsProcessingException(f"Layer '{source.sourceName()}' has no field '{class_name}'")
        feedback.pushInfo(f"Classes from field '{class_name}'" if class_name else "One class (no class field)")

        features, geoms, scores, classes = [], [], [], []
        total = source.featureCount() or 1
        # QGIS's own validity check would stop the loop at an invalid polygon (and in QGIS 3.22 leave the
        # interpreter unusable): it is skipped, and invalid polygons are repaired or left out below, counted
        for n, feat in enumerate(source.getFeatures(QgsFeatureRequest(), SKIP_VALIDITY)):
            if feedback.isCanceled():
                raise QgsProcessingException("The run was cancelled. No output was kept.")
            value = feat.attribute(conf_idx)
            try:
                score = float(value)
            except (TypeError, ValueError):
                raise QgsProcessingException(f"Feature {feat.id()} has no confidence ('{conf_name}' is "
                                             f"{value!r}): fill it or remove the feature") from None
            geom = feat.geometry()
            geoms.append(ogr.CreateGeometryFromWkb(bytes(geom.asWkb())) if not geom.isEmpty()
                         else ogr.Geometry(ogr.wkbPolygon))
            features.append(feat)
            scores.append(score)
            classes.append(feat.attribute(class_idx) if class_idx >= 0 else None)
            feedback.setProgress(40.0 * n / total)
        if not features:
            raise QgsProcessingException(f"Layer '{source.sourceName()}' has no features: nothing to suppress")
        fixed, repaired, skipped = made_valid(geoms)
        if repaired or skipped:
            feedback.reportError(f"{repaired} invalid polygons were made valid to measure their overlaps"
                                 + (f"; {skipped} could not be: they are kept as they are and remove nothing"
                                    if skipped else ""), fatalError=False)
            geoms = [g if g is not None else ogr.Geometry(ogr.wkbPolygon) for g in fixed]
        ratio = self.parameterAsDouble(parameters, self.MAX_OVERLAP_RATIO, context)
        keep = run_engine(nms_polygons, geoms, scores, classes if class_idx >= 0 else None, ratio)
        feedback.setProgress(80.0)
        kept_classes = [c for c, k in zip(classes, keep.tolist()) if k]
        qml = getattr(self, "_input_style", None) or (values_style_qml(class_name, kept_classes, 2) if class_idx >= 0 else None)
        with AtomicSink(self, parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs(),
                        layer_name=result_layer_name(source.sourceName(), "non maximum suppression")) as sink:
            for feat, k in zip(features, keep.tolist()):
                if k and not sink.add(feat, QgsFeatureSink.FastInsert):
                    raise QgsProcessingException(self.writeFeatureError(sink.sink, parameters, self.OUTPUT))
            write_style(sink, qml, feedback)
        dest = sink.dest
        if qml and context.willLoadLayerOnCompletion(dest):
            context.layerToLoadOnCompletionDetails(dest).setPostProcessor(StylePostProcessor.create(qml))
        name_result_layer(self, context, self.OUTPUT, dest, source.sourceName(), "non maximum suppression")
        kept = int(keep.sum())
        feedback.pushInfo(f"{len(features)} features in, {kept} kept, {len(features) - kept} removed "
                          f"(max overlap ratio {ratio:g})")
        return {self.OUTPUT: dest}

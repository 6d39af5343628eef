# SPDX-License-Identifier: GPL-2.0-or-later
"""Compute Accuracy For Object Detection (``dltools:computeaccuracyobjectdetection``)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core.raster.mask import ProcessingMask
from ..core.safe_output import write_texts
from ..core.tools.accuracy.objects import object_detection_accuracy
from ..core.tools.accuracy.report import object_report
from .base import DLToolsAlgorithm
from .non_maximum_suppression import fallback_class_field
from .running import FeedbackProgress, run_engine
from .tables import write_table

#: ArcGIS's table fields, one row per class and a last row for all classes
COLUMNS = [("Class", "text"), ("Precision", "real"), ("Recall", "real"), ("F1_Score", "real"), ("AP", "real"),
           ("True_Positive", "int"), ("False_Positive", "int"), ("False_Negative", "int")]
ALL_CLASSES = "All classes"


class ComputeAccuracyObjectsAlgorithm(DLToolsAlgorithm):
    DETECTED_FEATURES = "DETECTED_FEATURES"
    GROUND_TRUTH_FEATURES = "GROUND_TRUTH_FEATURES"
    DETECTED_CLASS_FIELD = "DETECTED_CLASS_FIELD"
    CONFIDENCE_FIELD = "CONFIDENCE_FIELD"
    GROUND_TRUTH_CLASS_FIELD = "GROUND_TRUTH_CLASS_FIELD"
    MIN_IOU = "MIN_IOU"
    MASK = "MASK"
    OUTPUT = "OUTPUT"
    OUTPUT_HTML = "OUTPUT_HTML"
    MEAN_AP = "MEAN_AP"

    HELP_SECTION = "Compute Accuracy For Object Detection"

    def name(self) -> str:
        return "computeaccuracyobjectdetection"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Compute Accuracy For Object Detection")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Scores detected objects against ground truth: detections are visited by descending confidence and each "
            "takes the free ground-truth feature of its class with the highest IoU (of the bounding rectangles, as "
            "ArcGIS), if that IoU reaches the minimum (default 0.5). A table per class and for all classes: precision, "
            "recall, F1, average precision (area under the precision-recall curve), true and false positives, false "
            "negatives; the mean average precision in the log and an HTML report with each class's curve.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        polygons = [QgsProcessing.TypeVectorPolygon]
        self.add_param(QgsProcessingParameterFeatureSource(self.DETECTED_FEATURES, self.tr("Detected features"),
                                                           polygons),
                       "Polygons with a class and a confidence, e.g. the output of Detect Objects Using Deep Learning.")
        self.add_param(QgsProcessingParameterFeatureSource(self.GROUND_TRUTH_FEATURES, self.tr("Ground truth features"),
                                                           polygons),
                       "Polygons of the real objects, with a class field (any CRS).")
        self.add_param(QgsProcessingParameterField(self.DETECTED_CLASS_FIELD, self.tr("Detected class value field"),
                                                   parentLayerParameterName=self.DETECTED_FEATURES, optional=True),
                       "The detections' class values or names. Empty: a 'Classvalue' or 'Value' field (any case: Detect "
                       "Objects' ClassValue), else every detection is one class. Compared as text; 1, 1.0 and '1' match.")
        self.add_param(QgsProcessingParameterField(self.CONFIDENCE_FIELD, self.tr("Confidence field"),
                                                   defaultValue="Confidence",
                                                   parentLayerParameterName=self.DETECTED_FEATURES, optional=True,
                                                   type=QgsProcessingParameterField.Numeric),
                       "The detections' confidence (default 'Confidence'); only its order matters.")
        self.add_param(QgsProcessingParameterField(self.GROUND_TRUTH_CLASS_FIELD,
                                                   self.tr("Ground truth class value field"),
                                                   parentLayerParameterName=self.GROUND_TRUTH_FEATURES, optional=True),
                       "The ground truth's class values or names. Empty: a 'Classvalue' or 'Value' field, else every "
                       "feature is one class.")
        self.add_param(QgsProcessingParameterNumber(self.MIN_IOU, self.tr("Minimum IoU"),
                                                    QgsProcessingParameterNumber.Double, defaultValue=0.5,
                                                    minValue=0.0, maxValue=1.0),
                       "A detection matches a ground-truth feature when their intersection over union is at least this.")
        self.add_param(QgsProcessingParameterFeatureSource(self.MASK, self.tr("Mask polygons"), polygons, optional=True),
                       "Only features whose bounding-box centre lies inside these polygons count.")
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Accuracy table"), QgsProcessing.TypeVector),
                       "One row per class and one for all classes: Class, Precision, Recall, F1_Score, AP, "
                       "True_Positive, False_Positive, False_Negative.")
        self.add_param(QgsProcessingParameterFileDestination(self.OUTPUT_HTML, self.tr("Accuracy report"),
                                                             "HTML files (*.html)", optional=True),
                       "An HTML page with the table, the mean average precision and a precision-recall curve per class.")
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_AP, self.tr("Mean average precision")))

    def _features(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext, crs,  # noqa: ANN001
                  fields: list[tuple[str, str | None]], feedback) -> list[tuple]:  # noqa: ANN001
        """(id, WKB in ``crs``, values of ``fields``) per feature; a field given as (parameter, None) falls back to
        ArcGIS's Classvalue / Value, else to one class (None)."""
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, name))
        names = [f.name() for f in source.fields()]
        indexes = []
        for param, default in fields:
            field = self.parameterAsString(parameters, param, context) or default or fallback_class_field(names)
            if field is None:
                feedback.pushInfo(f"{name}: no class field (nor Classvalue / Value): every feature is one class")
                indexes.append(-1)
                continue
            index = source.fields().lookupField(field)
            if index < 0:
                raise QgsProcessingException(f"{name} '{source.sourceName()}' has no field '{field}' (its fields: "
                                             f"{', '.join(names) or 'none'}): choose {param}")
            indexes.append(index)
        request = QgsFeatureRequest().setDestinationCrs(crs, context.transformContext())
        return [(f.id(), None if f.geometry().isNull() else bytes(f.geometry().asWkb()),
                 *(f.attribute(i) if i >= 0 else None for i in indexes)) for f in source.getFeatures(request)]

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        detected = self.parameterAsSource(parameters, self.DETECTED_FEATURES, context)
        if detected is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.DETECTED_FEATURES))
        crs = detected.sourceCrs()
        detections = self._features(parameters, self.DETECTED_FEATURES, context, crs,
                                    [(self.DETECTED_CLASS_FIELD, None), (self.CONFIDENCE_FIELD, "Confidence")], feedback)
        truths = self._features(parameters, self.GROUND_TRUTH_FEATURES, context, crs,
                                [(self.GROUND_TRUTH_CLASS_FIELD, None)], feedback)
        mask = None
        if parameters.get(self.MASK) not in (None, ""):
            layer = self.parameterAsSource(parameters, self.MASK, context)
            request = QgsFeatureRequest().setDestinationCrs(crs, context.transformContext())
            wkbs = [bytes(f.geometry().asWkb()) for f in layer.getFeatures(request) if not f.geometry().isNull()]
            # already in the detections' CRS: the mask's union needs no transformation
            mask = run_engine(ProcessingMask(wkbs, "", layer.sourceName()).union_in, "")
        result = run_engine(object_detection_accuracy, detections, truths,
                            self.parameterAsDouble(parameters, self.MIN_IOU, context), mask, FeedbackProgress(feedback))
        for c in result.classes:
            feedback.pushInfo(f"Class {c.class_value}: TP {c.true_positives}, FP {c.false_positives}, FN "
                              f"{c.false_negatives}, precision {c.precision:.4f}, recall {c.recall:.4f}, F1 {c.f1:.4f}, "
                              f"AP {'-' if c.ap is None else f'{c.ap:.4f}'}")
        mean_ap = result.mean_ap
        feedback.pushInfo(f"Mean average precision (mAP) at IoU {result.min_iou:g}: "
                          f"{'none (no ground truth)' if mean_ap is None else f'{mean_ap:.4f}'} "
                          f"({result.detections} detections, {result.truths} ground-truth features)")
        rows = [[str(c.class_value), c.precision, c.recall, c.f1, c.ap, c.true_positives, c.false_positives,
                 c.false_negatives] for c in result.classes]
        tp, fp, fn = (sum(getattr(c, k) for c in result.classes)
                      for k in ("true_positives", "false_positives", "false_negatives"))
        precision, recall = (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
        rows.append([ALL_CLASSES, precision, recall,
                     2 * precision * recall / (precision + recall) if precision + recall else 0.0, mean_ap, tp, fp, fn])
        outputs = {self.OUTPUT: write_table(self, parameters, self.OUTPUT, context, COLUMNS, rows)}
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            run_engine(write_texts, {html: object_report(result)})
            outputs[self.OUTPUT_HTML] = html
        return {**outputs, self.MEAN_AP: mean_ap}

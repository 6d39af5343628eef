# SPDX-License-Identifier: GPL-2.0-or-later
"""Compute Accuracy For Pixel Classification (``dltools:computeaccuracypixelclassification``)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterLayer,
)

from ..core.safe_output import write_texts
from ..core.tools.accuracy.pixels import SAMPLINGS, PixelAccuracy, Reference, parse_class_mapping, pixel_accuracy
from ..core.tools.accuracy.report import pixel_report
from .base import DLToolsAlgorithm
from .non_maximum_suppression import fallback_class_field
from .running import FeedbackProgress, run_engine
from .tables import write_table


def matrix_rows(result: PixelAccuracy) -> tuple[list[tuple[str, str]], list[list]]:
    """ArcGIS's confusion-matrix table: a row per classified class, then Total, P_Accuracy and Kappa; a column per
    reference class (C_<value>), then Total, U_Accuracy and Kappa."""
    names = [f"C_{v}".replace("-", "m") for v in result.classes]
    columns = [("ClassValue", "text")] + [(n, "real") for n in names] + [("Total", "real"), ("U_Accuracy", "real"),
                                                                         ("Kappa", "real")]
    m = result.matrix
    per_class = result.per_class()
    # cells without a meaning hold 0, as in ArcGIS's tables
    rows = [[names[k]] + [float(v) for v in m[k]] + [float(m[k].sum()), per_class[k]["precision"], 0.0]
            for k in range(len(names))]
    rows.append(["Total"] + [float(v) for v in m.sum(axis=0)] + [float(m.sum()), 0.0, 0.0])
    rows.append(["P_Accuracy"] + [r["recall"] for r in per_class] + [0.0, result.overall_accuracy(), 0.0])
    rows.append(["Kappa"] + [0.0] * len(names) + [0.0, 0.0, result.kappa()])
    return columns, rows


class ComputeAccuracyPixelsAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    REFERENCE_CLASS_FIELD = "REFERENCE_CLASS_FIELD"
    CLASS_MAPPING = "CLASS_MAPPING"
    SAMPLING = "SAMPLING"
    NUMBER_OF_POINTS = "NUMBER_OF_POINTS"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    OUTPUT_METRICS = "OUTPUT_METRICS"
    OUTPUT_HTML = "OUTPUT_HTML"

    HELP_SECTION = "Compute Accuracy For Pixel Classification"

    def name(self) -> str:
        return "computeaccuracypixelclassification"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Compute Accuracy For Pixel Classification")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Compares a classified raster with reference data (a classified raster, or polygons/points with a class "
            "field) on the classified raster's grid (reference rasters read with nearest neighbour; NoData left "
            "out): a confusion matrix table in ArcGIS's layout, per-class precision, recall, F1 and IoU, overall "
            "accuracy, mean IoU and Cohen's kappa, and an HTML report with the matrix as a heat map. All pixels, or "
            "random / stratified random points.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Classified raster")),
                       "The classification to assess, e.g. the output of Classify Pixels Using Deep Learning.")
        self.add_param(QgsProcessingParameterMapLayer(
            self.REFERENCE, self.tr("Reference data"),
            types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint]),
            "Ground truth: a classified raster (any extent, cell size or CRS), or polygons / points with a class field.")
        self.add_param(QgsProcessingParameterField(self.REFERENCE_CLASS_FIELD, self.tr("Reference class field"),
                                                   parentLayerParameterName=self.REFERENCE, optional=True,
                                                   type=QgsProcessingParameterField.Numeric),
                       "Polygons/points only. Empty: a 'Classvalue' or 'Value' field.")
        self.add_param(QgsProcessingParameterString(self.CLASS_MAPPING, self.tr("Class mapping"), optional=True,
                                                    defaultValue=""),
                       "Reference values onto the classified raster's: 'reference:classified' pairs separated by ';', "
                       "e.g. '0:2;1:0;2:0;3:0;4:1'. Values not named stay as they are.")
        self.add_param(QgsProcessingParameterEnum(self.SAMPLING, self.tr("Sampling"), options=list(SAMPLINGS),
                                                  defaultValue=0),
                       "ALL pixels; RANDOM points; STRATIFIED_RANDOM (per reference class, in proportion to its "
                       "area); EQUALIZED_STRATIFIED_RANDOM (the same number per reference class).")
        self.add_param(QgsProcessingParameterNumber(self.NUMBER_OF_POINTS, self.tr("Number of random points"),
                                                    QgsProcessingParameterNumber.Integer, defaultValue=500, minValue=1),
                       "How many pixels the random samplings draw (at most every valid pixel).")
        self.add_param(QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"),
                                                    QgsProcessingParameterNumber.Integer, defaultValue=1, minValue=0),
                       "The same seed draws the same points.", advanced=True)
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Confusion matrix"),
                                                         QgsProcessing.TypeVector),
                       "Rows: classified classes, Total, P_Accuracy (recall), Kappa; columns: reference classes "
                       "(C_<value>), Total, U_Accuracy (precision), Kappa.")
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT_METRICS, self.tr("Per-class accuracy"),
                                                         QgsProcessing.TypeVector),
                       "One row per class: pixels classified and in the reference, precision, recall, F1, IoU.")
        self.add_param(QgsProcessingParameterFileDestination(self.OUTPUT_HTML, self.tr("Accuracy report"),
                                                             "HTML files (*.html)", optional=True),
                       "An HTML page: overall figures, the confusion matrix as a heat map, the per-class table.")
        for name, label in (("OVERALL_ACCURACY", "Overall accuracy"), ("KAPPA", "Kappa"), ("MEAN_IOU", "Mean IoU")):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        classified = self.gdal_source(raster, "classified")
        reference = self._reference(parameters, context, raster)
        mapping = run_engine(parse_class_mapping, self.parameterAsString(parameters, self.CLASS_MAPPING, context))
        sampling = SAMPLINGS[self.parameterAsEnum(parameters, self.SAMPLING, context)]
        result = run_engine(pixel_accuracy, classified, reference, mapping, sampling,
                            self.parameterAsInt(parameters, self.NUMBER_OF_POINTS, context),
                            self.parameterAsInt(parameters, self.SEED, context), FeedbackProgress(feedback))
        feedback.pushInfo(f"Compared on the classified raster's grid ({raster.width()} x {raster.height()} pixels; "
                          "reference rasters read with nearest neighbour)")
        feedback.pushInfo(f"{result.total} pixels ({sampling}); overall accuracy {result.overall_accuracy():.4f}, "
                          f"kappa {result.kappa():.4f}, mean IoU {result.mean_iou():.4f}")
        columns, rows = matrix_rows(result)
        outputs = {self.OUTPUT: write_table(self, parameters, self.OUTPUT, context, columns, rows)}
        metrics = [[str(r["value"]), r["classified"], r["reference"], r["precision"], r["recall"], r["f1"], r["iou"]]
                   for r in result.per_class()]
        outputs[self.OUTPUT_METRICS] = write_table(
            self, parameters, self.OUTPUT_METRICS, context,
            [("ClassValue", "text"), ("Classified", "int"), ("Reference", "int"), ("Precision", "real"),
             ("Recall", "real"), ("F1", "real"), ("IoU", "real")], metrics)
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            run_engine(write_texts, {html: pixel_report(result, f"{raster.name()} against {reference.name}")})
            outputs[self.OUTPUT_HTML] = html
        return {**outputs, "OVERALL_ACCURACY": result.overall_accuracy(), "KAPPA": result.kappa(),
                "MEAN_IOU": result.mean_iou()}

    def _reference(self, parameters: dict[str, Any], context: QgsProcessingContext, raster: QgsRasterLayer) -> Reference:
        layer = self.parameterAsLayer(parameters, self.REFERENCE, context)
        if isinstance(layer, QgsRasterLayer):
            return Reference(raster=self.gdal_source(layer, "reference"), name=f"REFERENCE '{layer.name()}'")
        source = self.parameterAsSource(parameters, self.REFERENCE, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.REFERENCE))
        names = [f.name() for f in source.fields()]
        field = self.parameterAsString(parameters, self.REFERENCE_CLASS_FIELD, context) or fallback_class_field(names)
        index = source.fields().lookupField(field) if field else -1
        if index < 0:
            raise QgsProcessingException(f"REFERENCE '{source.sourceName()}' has no class field "
                                         f"'{field or 'Classvalue'}' (its fields: {', '.join(names) or 'none'}): "
                                         "choose REFERENCE_CLASS_FIELD")
        request = QgsFeatureRequest().setDestinationCrs(raster.crs(), context.transformContext())
        items = [(f.id(), None if f.geometry().isNull() else bytes(f.geometry().asWkb()), f.attribute(index))
                 for f in source.getFeatures(request)]
        return Reference(features=items, name=f"REFERENCE '{source.sourceName()}'")

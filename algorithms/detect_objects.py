# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects Using Deep Learning (``dltools:detectobjects``)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.detection.nms import check_max_overlap
from ..core.raster.gdal_io import mosaic_items
from ..core.raster.styling import categorized_qml
from .base import DLToolsAlgorithm
from .class_style import StylePostProcessor
from .isolation import run_tool
from .outputs import AtomicSink, name_result_layer, refuse_reserved_field, result_layer_name
from .running import FeedbackProgress, run_engine

ARGUMENTS_HELP = (
    "Model arguments as 'name value' pairs separated by ';', e.g. 'padding 64;threshold 0.5;batch_size 4'. Known: "
    "padding (context pixels around each tile), threshold (minimum confidence 0-1), nms_overlap (maximum IoU of two "
    "objects of one class in a tile), batch_size, exclude_pad_detections (keep objects centred in the tile's centre "
    "only), test_time_augmentation, tile_size (models that accept any size), threads.")


class DetectObjectsAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    RUN_NMS = "RUN_NMS"
    CONFIDENCE_FIELD = "CONFIDENCE_FIELD"
    CLASS_FIELD = "CLASS_FIELD"
    MAX_OVERLAP_RATIO = "MAX_OVERLAP_RATIO"
    OUTPUT = "OUTPUT"

    ARGUMENT_TOOL = "detect_objects"

    HELP_SECTION = "Detect Objects Using Deep Learning"

    def name(self) -> str:
        return "detectobjects"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Detect Objects Using Deep Learning")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Runs a trained object detector (YOLO, Mask R-CNN, Faster R-CNN, RetinaNet, SSD, ...) over a raster and "
            "writes one polygon per object, in the raster's CRS, with its class name (Class), class value "
            "(ClassValue) and confidence (0-100). The raster is read in tiles with 'padding' pixels of context; "
            "objects are kept by the tile whose centre holds them, and the pieces of objects cut by tile seams are "
            "merged, so each object comes out once. Instance masks give the object's outline at pixel precision. "
            "Optionally Non Maximum Suppression then removes overlapping objects. The layer is styled by class "
            "with the model's colours.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")),
                       "The image to search. Its bands are picked by the model's ExtractBands.")
        self.add_model_parameters(ARGUMENTS_HELP)
        self.add_param(QgsProcessingParameterBoolean(self.RUN_NMS, self.tr("Non maximum suppression"),
                                                     defaultValue=False),
                       "Also remove overlapping objects with the Non Maximum Suppression rule (lower confidence "
                       "removed; per class first, then across classes).")
        self.add_param(QgsProcessingParameterString(self.CONFIDENCE_FIELD, self.tr("Confidence score field"),
                                                    defaultValue="Confidence"),
                       "Name of the output field holding the confidence (0-100).", advanced=True)
        self.add_param(QgsProcessingParameterString(self.CLASS_FIELD, self.tr("Class value field"),
                                                    defaultValue="Class"),
                       "Name of the output field holding the class name (the class value goes to ClassValue).",
                       advanced=True)
        self.add_param(QgsProcessingParameterNumber(self.MAX_OVERLAP_RATIO, self.tr("Max overlap ratio"),
                                                    QgsProcessingParameterNumber.Double, defaultValue=0.0,
                                                    minValue=0.0, maxValue=1.0),
                       "With non maximum suppression: intersection over union above which two objects are "
                       "duplicates (0: any overlap).")
        self.add_raster_run_parameters(
            "Only this area is searched (any CRS). Default: all of the raster.",
            "Cell size the model sees, in the raster's units (resampled on the fly). Default: native.",
            "For a VRT mosaic: search it as one image (default), or each raster it is made of separately (objects "
            "of all items go to the one output). A plain raster is always one image.")
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Detected objects"),
                                                         QgsProcessing.TypeVectorPolygon),
                       "One polygon per object with Class, ClassValue and Confidence (0-100).")

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        if self.parameterAsBool(parameters, self.RUN_NMS, context):  # refused before anything is read
            run_engine(check_max_overlap, self.parameterAsDouble(parameters, self.MAX_OVERLAP_RATIO, context))
        raster = self.raster_input(parameters, self.INPUT, context, "input")
        progress = FeedbackProgress(feedback)
        md = self.model_definition(parameters, context, progress)
        arguments = self.parameterAsString(parameters, self.ARGUMENTS, context)
        path, request = self.engine_input(raster, md, self.input_request(parameters, context, raster), progress)
        device = self.device_request(parameters, context)
        allow = self.custom_code_allowed(parameters, context)
        run_nms = self.parameterAsBool(parameters, self.RUN_NMS, context)
        ratio = self.parameterAsDouble(parameters, self.MAX_OVERLAP_RATIO, context)
        conf_field = self.parameterAsString(parameters, self.CONFIDENCE_FIELD, context) or "Confidence"
        class_field = self.parameterAsString(parameters, self.CLASS_FIELD, context) or "Class"
        refuse_reserved_field(self.CONFIDENCE_FIELD, conf_field)
        refuse_reserved_field(self.CLASS_FIELD, class_field)
        if len({conf_field.lower(), class_field.lower(), "classvalue"}) < 3:
            raise QgsProcessingException("The confidence and class fields need two different names, neither "
                                         "'ClassValue' (that field holds the class value)")
        items = mosaic_items(path) if self.parameterAsEnum(parameters, self.PROCESSING_MODE, context) == 1 else [path]
        results = []
        for i, item in enumerate(items):
            if len(items) > 1:
                progress.info(f"Item {i + 1}/{len(items)}: {item}")
            results.append(run_tool("detect_objects", progress, item, md, arguments, request, device, progress,
                                    run_nms, ratio, allow_custom_code=allow, **self.cluster_options(parameters, context)))

        fields = QgsFields()
        fields.append(QgsField(class_field, QVariant.String))
        fields.append(QgsField("ClassValue", QVariant.Int))
        fields.append(QgsField(conf_field, QVariant.Double))
        extra = results[0].extra_fields if results else []  # a custom function's own fields (getFields)
        kinds = {"string": QVariant.String, "double": QVariant.Double, "integer": QVariant.LongLong}
        for name, kind in extra:
            if fields.lookupField(name) < 0:
                fields.append(QgsField(name, kinds[kind]))
        masks = any(r.geometry_type == "MultiPolygon" for r in results)
        crs = raster.crs if raster.online is None or not results else \
            QgsCoordinateReferenceSystem.fromWkt(results[0].crs_wkt)  # an online layer's: the grid's
        classes = results[0].classes if results else md.classes
        with AtomicSink(self, parameters, self.OUTPUT, context, fields,
                        QgsWkbTypes.MultiPolygon if masks else QgsWkbTypes.Polygon, crs,
                        layer_name=result_layer_name(raster.name, "detected objects")) as sink:
            try:
                self._write_objects(sink, results, fields, crs, masks, context, parameters)
            finally:  # a model run's objects wait in a temporary file (core's ObjectStore)
                for result in results:
                    getattr(result.objects, "discard", lambda: None)()
            sink.close()
            qml = categorized_qml(classes, sink.written_name(class_field))  # a shapefile's 10-character name
            style = sink.side_path(".qml")  # the style follows the layer: renamed with it on success
            if style is not None:
                try:
                    with open(style, "w", encoding="utf-8") as fh:
                        fh.write(qml)
                except OSError as exc:
                    progress.warning(f"Could not write the style next to the output: {exc}")
        dest = sink.dest
        name_result_layer(self, context, self.OUTPUT, dest, raster.name, "detected objects")
        if context.willLoadLayerOnCompletion(dest):
            context.layerToLoadOnCompletionDetails(dest).setPostProcessor(StylePostProcessor.create(qml))
        return {self.OUTPUT: dest}

    def _write_objects(self, sink: AtomicSink, results: list, fields: QgsFields, crs, masks: bool,  # noqa: ANN001
                       context: QgsProcessingContext, parameters: dict[str, Any]) -> None:
        for result in results:
            xform = None
            item_crs = QgsCoordinateReferenceSystem.fromWkt(result.crs_wkt)
            if item_crs.isValid() and item_crs != crs:
                xform = QgsCoordinateTransform(item_crs, crs, context.transformContext())
            for obj in result.objects:
                feat = QgsFeature(fields)
                geom = QgsGeometry()
                geom.fromWkb(obj.wkb)
                if xform is not None:
                    geom.transform(xform)
                if masks:
                    geom.convertToMultiType()
                feat.setGeometry(geom)
                feat.setAttributes([obj.class_name, obj.class_value, obj.confidence, *obj.extra][:fields.count()])
                if not sink.add(feat, QgsFeatureSink.FastInsert):
                    raise QgsProcessingException(self.writeFeatureError(sink.sink, parameters, self.OUTPUT))

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects Using Deep Learning (``dltools:classifyobjects``)."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..core.raster.gdal_io import build_mosaic, mosaic_items, release_mosaic
from ..core.raster.online import looks_like_online_uri
from ..core.tools.classify_objects.function import open_object_classifier
from ..core.tools.classify_objects.images import list_images
from ..core.tools.classify_objects.pipeline import (
    FeaturesOnRaster,
    FeaturesPerItem,
    ImagesAsObjects,
    ObjectRow,
    check_label_field,
)
from .base import DLToolsAlgorithm, check_with_stand_in
from .class_style import style_classified_objects
from .feature_inputs import LayerFeatures, crs_of, qgs_fields
from .outputs import (
    AtomicSink,
    name_result_layer,
    output_destination,
    refuse_reserved_field,
    refuse_same_files,
)
from .running import FeedbackProgress, engine_results, run_engine

ARGUMENTS_HELP = (
    "Model arguments as 'name value' pairs separated by ';', e.g. 'batch_size 16;test_time_augmentation True'. "
    "Known: batch_size (chips per model call; not a perfect square -> the largest square below), "
    "test_time_augmentation (average over flips and rotations of each chip), score_threshold (multi-label models: "
    "every class at or above it is reported), padding (pixels added around each feature's bounding box when the "
    "model crops to the feature, CropSizeFixed 0), save_chips (a folder: every chip is saved there as a PNG to check "
    "what the model sees), threads (CPU threads, 0 = all).")
IMAGE_FIELD = "Image"



class ClassifyObjectsAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    FEATURES = "FEATURES"
    CLASS_LABEL_FIELD = "CLASS_LABEL_FIELD"
    IMAGE_FOLDER = "IMAGE_FOLDER"
    OUTPUT = "OUTPUT"

    ARGUMENT_TOOL = "classify_objects"

    HELP_SECTION = "Classify Objects Using Deep Learning"

    def name(self) -> str:
        return "classifyobjects"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Classify Objects Using Deep Learning")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Gives every feature (or every image) one label from a trained image classifier, e.g. building footprints "
            "over post-fire imagery -> Damaged / Undamaged. The output holds every input feature with all its "
            "attributes and geometry, plus the label (ClassLabel, or the name you choose), ClassValue (the class's "
            "Value in the model definition) and Confidence (the probability, 0-100). If the input already has a field "
            "of one of these names (compared ignoring case), the new field gets the first free suffix _1, _2, ...; the "
            "log says so.\n\n"
            "Chips are cut from the raster at its own cell size, around each feature transformed to the raster's CRS:\n"
            "- CropSizeFixed 1 (or absent): a chip of exactly the model's ImageWidth x ImageHeight pixels centred on "
            "the centre of the feature's bounding box (the chip's centre is within half a pixel of it; ties go right/"
            "down). Pixels are not resampled.\n"
            "- CropSizeFixed 0: the smallest block of whole pixels around the feature's bounding box, plus 'padding' "
            "pixels, widened on its shorter side (with real raster context) to the model's aspect ratio, then resized "
            "to ImageWidth x ImageHeight: area averaging when shrinking, bilinear when enlarging.\n"
            "- BlackenAroundFeature 1: pixels whose centre lies outside the polygon are set to 0. Points and lines have "
            "no inside, so their chips are not masked.\n"
            "Pixels outside the raster and NoData pixels are 0. Features entirely outside the raster, on NoData only, "
            "with no geometry or with a geometry that cannot be transformed stay in the output with an empty (NULL) "
            "label, and the log says why. Invalid geometries are repaired (make valid) for cutting the chip; the "
            "output keeps the original geometry.\n\n"
            "Without input features every image is one object: the input raster, or each image in the image folder. "
            "Georeferenced images get their extent as a polygon; otherwise the output is a table with the image "
            "path.\n\n"
            "Model scores: values in [0, 1] whose rows sum to 1 are taken as probabilities, otherwise a softmax is "
            "applied (a sigmoid for multi-label models). Multi-label models report every class at or above "
            "score_threshold, joined with ';'.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        # INPUT is required, as the dialog shows it (no "[optional]", a raster layer preselected); IMAGE_FOLDER is the
        # alternative right under it, and checkParameterValues lets INPUT be empty when a folder is given
        self.add_param(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")),
                       "The image the chips are cut from; its bands are picked by the model's ExtractBands. A VRT "
                       "mosaic can be processed item by item (Processing mode). Not read when an image folder is "
                       "given.")
        self.add_param(QgsProcessingParameterFile(self.IMAGE_FOLDER,
                                                  self.tr("…or an image folder, used instead of the input raster"),
                                                  behavior=QgsProcessingParameterFile.Folder, optional=True),
                       "Instead of the input raster: a folder of images (.tif, .png, .jpg, ...; not its sub-folders). "
                       "When a folder is given, the input raster is not read (the log says so). Without input "
                       "features each image is classified as one object.")
        self.add_param(QgsProcessingParameterFeatureSource(
            self.FEATURES, self.tr("Input features (empty: each image is one object)"),
            [QgsProcessing.TypeVectorAnyGeometry], optional=True),
            "Points, lines or polygons, in any CRS: one chip and one label per feature. Without features "
            "every image is one object.")
        self.add_model_parameters(ARGUMENTS_HELP)
        self.add_param(QgsProcessingParameterString(self.CLASS_LABEL_FIELD, self.tr("Class label field"),
                                                    defaultValue="ClassLabel"),
                       "Name of the output field holding the label (the class Name).")
        self.add_processing_mode_parameter(
            "Matters for a VRT mosaic or an image folder with input features. 'Mosaicked': the images form one "
            "raster (the folder's images must share CRS and bands) and every feature gets one label. 'Items "
            "separately': every feature is classified on each image it touches, one output row per feature and "
            "image, with the image in an 'Image' field. A single raster is always one image.")
        self.add_param(QgsProcessingParameterNumber(self.CELL_SIZE, self.tr("Cell size (online layers)"),
                                                    QgsProcessingParameterNumber.Double, optional=True, minValue=0.0),
                       "For an online input (XYZ, WMS, WMTS, ArcGIS MapServer): the cell size to read it at, in the "
                       "layer's CRS units. Default: the model's own (MinCellSize, Deepness resolution). A file is "
                       "always read at its own cell size.", advanced=True)
        self.add_device_parameters()
        self.add_cluster_parameters()
        self.add_custom_code_parameter()
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Classified objects"),
                                                         QgsProcessing.TypeVectorAnyGeometry),
                       "The input features (or one row per image) with the label, class value and confidence.")

    # ------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        self._classes: list = []
        result = self._classify(parameters, context, feedback)
        name_result_layer(self, context, self.OUTPUT, result[self.OUTPUT], self._input_name(parameters, context),
                          "classified objects")
        style_classified_objects(result[self.OUTPUT], self._classes, context)  # categorized by class, + .qml
        return result

    def checkParameterValues(self, parameters: dict[str, Any], context) -> tuple[bool, str]:  # noqa: N802, ANN001
        """INPUT may be empty: the imagery can be an image folder instead (processAlgorithm says clearly when there
        is neither), so the required-parameter check alone would refuse a valid run."""
        return check_with_stand_in(self, self.INPUT, parameters, context, super().checkParameterValues)

    def _input_name(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        """What the result is named after: the features, else the image folder, else the raster."""
        if parameters.get(self.FEATURES) not in (None, ""):
            layer = self.parameterAsVectorLayer(parameters, self.FEATURES, context)
            return layer.name() if layer is not None else ""
        folder = (self.parameterAsFile(parameters, self.IMAGE_FOLDER, context) or "").strip()
        if folder:
            return os.path.basename(os.path.normpath(folder))
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context) if parameters.get(self.INPUT) else None
        return layer.name() if layer is not None else ""

    def _classify(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: ANN001
        progress = FeedbackProgress(feedback)
        label_field = run_engine(check_label_field, self.parameterAsString(parameters, self.CLASS_LABEL_FIELD, context))
        refuse_reserved_field(self.CLASS_LABEL_FIELD, label_field)
        folder = (self.parameterAsFile(parameters, self.IMAGE_FOLDER, context) or "").strip()
        online = self._online_input(parameters, context) if not folder else None
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context) \
            if parameters.get(self.INPUT) and online is None else None
        if layer is not None and folder:  # the dialog always has a raster (INPUT is required): the folder wins
            progress.info(f"Image folder given: the input raster '{layer.name()}' is not read")
            layer = None
        if layer is None and not folder and online is None:
            if parameters.get(self.INPUT):
                raise QgsProcessingException(self.tr(f"The input raster '{parameters.get(self.INPUT)}' cannot be loaded"))
            raise QgsProcessingException(self.tr("No imagery: give an input raster or an image folder"))
        raster_path = self.gdal_source(layer, "input") if layer is not None else None
        images = run_engine(list_images, folder) if folder else None
        separately = self.parameterAsEnum(parameters, self.PROCESSING_MODE, context) == 1

        self._refuse_output_over_inputs(parameters, context, raster_path)

        md = self.model_definition(parameters, context, progress)
        self._classes = list(md.classes)
        raster_crs = crs_of(layer) if layer is not None else None
        if online is not None:
            raster_path, raster_crs = self._online_raster(parameters, context, online, md, progress)
        arguments = self.parameterAsString(parameters, self.ARGUMENTS, context)
        device = self.device_request(parameters, context)
        classifier = run_engine(open_object_classifier, md, arguments, device, progress,
                                self.custom_code_allowed(parameters, context), **self.cluster_options(parameters, context))
        try:
            if parameters.get(self.FEATURES) not in (None, ""):
                source = self.parameterAsSource(parameters, self.FEATURES, context)
                if source is None:
                    raise QgsProcessingException(self.invalidSourceError(parameters, self.FEATURES))
                features = LayerFeatures(source, feedback, context)
                if separately:
                    items = images if images is not None else mosaic_items(raster_path)
                    if len(items) > 1:
                        run = run_engine(FeaturesPerItem, classifier, features, items, label_field, progress)
                        fields = qgs_fields(source.fields(), run.fields, run.input_names)
                        return {self.OUTPUT: self._write(parameters, context, run, fields, source.wkbType(),
                                                         source.sourceCrs())}
                    progress.info("The imagery is a single raster: it is processed as one image")
                if images is not None:
                    mosaic = run_engine(build_mosaic, images)
                    try:
                        run = run_engine(FeaturesOnRaster, classifier, features, mosaic, label_field, progress)
                        dest = self._write(parameters, context, run, qgs_fields(source.fields(), run.fields),
                                           source.wkbType(), source.sourceCrs())
                    finally:
                        release_mosaic(mosaic)
                    return {self.OUTPUT: dest}
                run = run_engine(FeaturesOnRaster, classifier, features, raster_path, label_field, progress,
                                 raster_crs)
                return {self.OUTPUT: self._write(parameters, context, run, qgs_fields(source.fields(), run.fields),
                                                 source.wkbType(), source.sourceCrs())}
            if images is None:
                images = mosaic_items(raster_path) if separately else [raster_path]
            single = layer is not None and len(images) == 1 and layer.crs().isValid()
            run = run_engine(ImagesAsObjects, classifier, images, label_field, progress,
                             crs_of(layer)[0] if single else None)
            if run.crs_from_layer:
                out_crs = layer.crs()
            else:
                out_crs = QgsCoordinateReferenceSystem.fromWkt(run.crs_wkt) if run.crs_wkt else \
                    QgsCoordinateReferenceSystem()
            wkb_type = QgsWkbTypes.Polygon if run.has_geometry else QgsWkbTypes.NoGeometry
            return {self.OUTPUT: self._write(parameters, context, run, qgs_fields(QgsFields(), run.fields), wkb_type,
                                             out_crs)}
        finally:
            classifier.close()

    def _write(self, parameters: dict[str, Any], context: QgsProcessingContext, run, fields: QgsFields,  # noqa: ANN001
               wkb_type, crs) -> str:  # noqa: ANN001
        """The engine's rows into the OUTPUT sink: each feature with its own geometry and attributes, plus the values."""
        with AtomicSink(self, parameters, self.OUTPUT, context, fields, wkb_type, crs) as sink:
            for row in engine_results(run.rows()):
                self._add(sink, self._feature(row, fields), parameters)
        return sink.dest

    @staticmethod
    def _feature(row: ObjectRow, fields: QgsFields) -> QgsFeature:
        out = QgsFeature(fields)
        if row.payload is not None:
            out.setGeometry(row.payload.geometry())
            out.setAttributes(list(row.payload.attributes()) + row.values)
            return out
        if row.geometry_wkb:
            geom = QgsGeometry()
            geom.fromWkb(row.geometry_wkb)
            out.setGeometry(geom)
        out.setAttributes(row.values)
        return out

    def _online_input(self, parameters: dict[str, Any], context: QgsProcessingContext):  # noqa: ANN202
        """INPUT as an online layer (a layer of the wms / arcgismapserver provider or its source string), else None."""
        from .online_inputs import ONLINE_PROVIDERS, RasterInput

        value = parameters.get(self.INPUT)
        if value in (None, ""):
            return None
        if not (isinstance(value, str) and looks_like_online_uri(value)):
            layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
            if layer is None or layer.providerType() not in ONLINE_PROVIDERS:
                return None
        raster: RasterInput = self.raster_input(parameters, self.INPUT, context, "input")
        return raster

    def _online_raster(self, parameters: dict[str, Any], context: QgsProcessingContext, raster, md,  # noqa: ANN001
                       progress) -> tuple[str, tuple[str, str]]:  # noqa: ANN001
        """An online INPUT as a GDAL description read at CELL_SIZE (or the model's), over the features' extent."""
        from ..core.raster.request import RasterRequest

        if parameters.get(self.FEATURES) in (None, ""):
            raise QgsProcessingException(self.tr("An online layer needs input features: the chips are cut around "
                                                 "them (the layer itself has no edge to take as one image)"))
        source = self.parameterAsSource(parameters, self.FEATURES, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.FEATURES))
        box = source.sourceExtent()
        crs = source.sourceCrs()
        cell = parameters.get(self.CELL_SIZE)
        request = RasterRequest(extent=(box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
                                extent_crs_wkt=crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED),
                                cell_size=self.parameterAsDouble(parameters, self.CELL_SIZE, context)
                                if cell not in (None, "") else None)
        description, planned = self.engine_input(raster, md, request, progress)
        grid_crs = QgsCoordinateReferenceSystem.fromWkt(planned.extent_crs_wkt)
        return description, (planned.extent_crs_wkt, grid_crs.authid() or grid_crs.description())

    def _refuse_output_over_inputs(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: ANN001
                                   raster_path: str | None) -> None:
        """OUTPUT must not be the FEATURES file (writing it would wipe the input layer) nor the raster or model."""
        output = output_destination(self, parameters, self.OUTPUT, context)
        inputs: dict[str, Any] = {self.INPUT: raster_path}
        if parameters.get(self.FEATURES) not in (None, ""):
            layer = self.parameterAsVectorLayer(parameters, self.FEATURES, context)
            inputs[self.FEATURES] = layer.source() if layer is not None else None
        model = parameters.get(self.MODEL)
        if isinstance(model, str) and not model.strip().startswith("{"):
            inputs[self.MODEL] = model
        refuse_same_files({self.OUTPUT: output}, inputs)

    def _add(self, sink: AtomicSink, feature: QgsFeature, parameters: dict[str, Any]) -> None:
        if not sink.add(feature, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(self.writeFeatureError(sink.sink, parameters, self.OUTPUT))

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects Using Deep Learning (``dltools:classifyobjects``)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.tools.classify_objects.pipeline import check_label_field
from ..core.tools.classify_objects.separate import ClassifierOpening, ObjectRunPlan
from .base import DLToolsAlgorithm, check_with_stand_in
from .class_style import style_classified_objects
from .feature_inputs import LayerFeatures, crs_of
from .object_inputs import input_name, object_imagery, read_online, refuse_output_over_inputs
from .object_runs import run_objects
from .object_sink import write_objects
from .outputs import name_result_layer, refuse_reserved_field, result_layer_name
from .running import FeedbackProgress, run_engine

ARGUMENTS_HELP = (
    "Model arguments as 'name value' pairs separated by ';', e.g. 'batch_size 16;test_time_augmentation True'. "
    "Known: batch_size (chips per model call; not a perfect square -> the largest square below), "
    "test_time_augmentation (average over flips and rotations of each chip), score_threshold (multi-label models: "
    "every class at or above it is reported), padding (pixels added around each feature's bounding box when the "
    "model crops to the feature, CropSizeFixed 0), save_chips (a folder: every chip is saved there as a PNG to check "
    "what the model sees), threads (CPU threads, 0 = all).")


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
            "score_threshold, joined with ';'.\n\n"
            "The result is categorized by the class label in the model's colours (a file output gets the style as "
            "a .qml beside it) and named after the features, e.g. 'buildings — classified objects'.")

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
        progress = FeedbackProgress(feedback)
        label_field = run_engine(check_label_field, self.parameterAsString(parameters, self.CLASS_LABEL_FIELD, context))
        refuse_reserved_field(self.CLASS_LABEL_FIELD, label_field)
        imagery = object_imagery(self, parameters, context, progress)
        separately = self.parameterAsEnum(parameters, self.PROCESSING_MODE, context) == 1
        refuse_output_over_inputs(self, parameters, context, imagery.raster)
        md = self.model_definition(parameters, context, progress)
        if imagery.online is not None:
            read_online(self, parameters, context, imagery, md, progress)
        source = None
        if parameters.get(self.FEATURES) not in (None, ""):
            source = self.parameterAsSource(parameters, self.FEATURES, context)
            if source is None:
                raise QgsProcessingException(self.invalidSourceError(parameters, self.FEATURES))
        plan = ObjectRunPlan(label_field=label_field, separately=separately, raster=imagery.raster,
                             raster_crs=imagery.raster_crs, images=imagery.images,
                             layer_crs_wkt=crs_of(imagery.layer)[0] if imagery.layer is not None else None)
        opening = ClassifierOpening(md=md, arguments=self.parameterAsString(parameters, self.ARGUMENTS, context),
                                    device=self.device_request(parameters, context),
                                    allow_custom_code=self.custom_code_allowed(parameters, context),
                                    **self.cluster_options(parameters, context))
        features = LayerFeatures(source, feedback, context) if source is not None else None
        inputs = input_name(self, parameters, context)
        dest = run_objects(plan, opening, features, progress,
                           lambda run: write_objects(self, parameters, context, run, source, imagery.layer,
                                                     result_layer_name(inputs, "classified objects")))
        name_result_layer(self, context, self.OUTPUT, dest, inputs, "classified objects")
        style_classified_objects(dest, list(md.classes), context)  # categorized by class, + .qml
        return {self.OUTPUT: dest}

    def checkParameterValues(self, parameters: dict[str, Any], context) -> tuple[bool, str]:  # noqa: N802, ANN001
        """INPUT may be empty: the imagery can be an image folder instead (processAlgorithm says clearly when there
        is neither), so the required-parameter check alone would refuse a valid run."""
        return check_with_stand_in(self, self.INPUT, parameters, context, super().checkParameterValues)

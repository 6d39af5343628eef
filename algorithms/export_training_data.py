# SPDX-License-Identifier: GPL-2.0-or-later
"""Export Training Data For Deep Learning (``dltools:exporttrainingdata``)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
    QgsWkbTypes,
)

from ..core.raster.gdal_io import mosaic_items
from ..core.tools.training_data.export import ClassData, export_training_data
from ..core.tools.training_data.settings import BOUNDING_BOX, FIXED_SIZE, FORMATS, MAP_SPACE, PIXEL_SPACE, ExportSettings
from .base import DLToolsAlgorithm
from .non_maximum_suppression import fallback_class_field
from .running import FeedbackProgress, run_engine

CHIP_FORMAT_OPTIONS = ["TIFF", "PNG", "JPEG"]
REFERENCE_OPTIONS = [MAP_SPACE, PIXEL_SPACE]
CROP_OPTIONS = [FIXED_SIZE, BOUNDING_BOX]


class ExportTrainingDataAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    CLASS_DATA = "CLASS_DATA"
    CLASS_VALUE_FIELD = "CLASS_VALUE_FIELD"
    METADATA_FORMAT = "METADATA_FORMAT"
    IMAGE_CHIP_FORMAT = "IMAGE_CHIP_FORMAT"
    BANDS = "BANDS"
    CHIPS = "CHIPS"
    TILE_SIZE_X, TILE_SIZE_Y, STRIDE_X, STRIDE_Y = "TILE_SIZE_X", "TILE_SIZE_Y", "STRIDE_X", "STRIDE_Y"
    OUTPUT_NOFEATURE_TILES, ROTATION_ANGLE, BUFFER_RADIUS = "OUTPUT_NOFEATURE_TILES", "ROTATION_ANGLE", "BUFFER_RADIUS"
    MASK, REFERENCE_SYSTEM, MIN_POLYGON_OVERLAP_RATIO = "MASK", "REFERENCE_SYSTEM", "MIN_POLYGON_OVERLAP_RATIO"
    START_INDEX, CROP_MODE, BLACKEN_AROUND_FEATURE = "START_INDEX", "CROP_MODE", "BLACKEN_AROUND_FEATURE"

    HELP_SECTION = "Export Training Data For Deep Learning"

    def name(self) -> str:
        return "exporttrainingdata"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Export Training Data For Deep Learning")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Cuts a raster into image chips with labels from polygons, points (with a buffer) or a classified raster, "
            "in ArcGIS's layouts (Classified_Tiles, PASCAL_VOC_rectangles, KITTI_rectangles, RCNN_Masks, "
            "Labeled_Tiles) or for other frameworks (YOLO with data.yaml, COCO labels.json). Chips keep the raster's "
            "raw values. The folder holds images/, labels/, map.txt, stats.txt, esri_model_definition.emd and "
            "esri_accumulated_stats.json as ArcGIS writes them, so arcgis.learn and the training tool read it. The "
            "output folder must be new or empty; it appears only when the export has finished.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")),
                       "The imagery to cut into chips (any GDAL raster).")
        self.add_param(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")),
                       "A new (or empty) folder for the chips, labels and metadata.")
        self.add_param(QgsProcessingParameterMapLayer(
            self.CLASS_DATA, self.tr("Input feature class or classified raster"),
            types=[QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint, QgsProcessing.TypeRaster]),
            "Training samples: polygons or points with a class value field, or a classified raster (Classified_Tiles "
            "only; 0 and NoData are background).")
        self.add_param(QgsProcessingParameterField(self.CLASS_VALUE_FIELD, self.tr("Class value field"),
                                                   parentLayerParameterName=self.CLASS_DATA, optional=True,
                                                   type=QgsProcessingParameterField.Numeric),
                       "Whole class values from 1. Empty: a 'Classvalue' or 'Value' field, else every feature is class 1.")
        self.add_param(QgsProcessingParameterEnum(self.METADATA_FORMAT, self.tr("Metadata format"), options=list(FORMATS),
                                                  defaultValue=1),
                       "The label layout (README 'Export Training Data For Deep Learning' has each one's files).")
        self.add_param(QgsProcessingParameterEnum(self.IMAGE_CHIP_FORMAT, self.tr("Image format"),
                                                  options=CHIP_FORMAT_OPTIONS, defaultValue=0),
                       "TIFF keeps any pixel type and band count; PNG 8/16-bit, up to 4 bands; JPEG 8-bit, 1 or 3 bands.")
        self._add_numbers()
        self.add_param(QgsProcessingParameterFeatureSource(self.MASK, self.tr("Mask polygons"),
                                                           [QgsProcessing.TypeVectorPolygon], optional=True),
                       "Only chips lying completely inside these polygons are written.")
        self.add_param(QgsProcessingParameterEnum(self.REFERENCE_SYSTEM, self.tr("Reference system"),
                                                  options=REFERENCE_OPTIONS, defaultValue=0),
                       "MAP_SPACE: chips georeferenced on the map. PIXEL_SPACE: in the input's pixels (x = column, "
                       "y = -row, no CRS).", advanced=True)
        self.add_param(QgsProcessingParameterEnum(self.CROP_MODE, self.tr("Crop mode (Labeled_Tiles)"),
                                                  options=CROP_OPTIONS, defaultValue=0),
                       "FIXED_SIZE: tile-sized chips centred on each feature. BOUNDING_BOX: each feature's bounding "
                       "box, at the raster's resolution.", advanced=True)
        self.add_param(QgsProcessingParameterBoolean(self.BLACKEN_AROUND_FEATURE,
                                                     self.tr("Blacken around feature (Labeled_Tiles)"), defaultValue=False),
                       "Pixels outside the feature's polygon are set to 0.", advanced=True)
        self.add_param(QgsProcessingParameterBand(self.BANDS, self.tr("Bands"), parentLayerParameterName=self.INPUT,
                                                  optional=True, allowMultiple=True),
                       "The bands written into the chips, in this order. Empty: every band.", advanced=True)
        self.add_processing_mode_parameter(
            "For a VRT mosaic: export it as one image (default), or export each raster it is made of separately "
            "(chips of every item in the one folder, numbered on; items must share pixel type and bands).")
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, self.tr("Chips written")))

    def _add_numbers(self) -> None:
        integer, double = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
        for name, label, default, text in (
                (self.TILE_SIZE_X, "Tile size X", 256, "Chip width in pixels."),
                (self.TILE_SIZE_Y, "Tile size Y", 256, "Chip height in pixels."),
                (self.STRIDE_X, "Stride X", 128, "Pixels from one chip to the next across."),
                (self.STRIDE_Y, "Stride Y", 128, "Pixels from one chip to the next down.")):
            self.add_param(QgsProcessingParameterNumber(name, self.tr(label), integer, defaultValue=default, minValue=1),
                           text)
        self.add_param(QgsProcessingParameterBoolean(self.OUTPUT_NOFEATURE_TILES, self.tr("Output no feature tiles"),
                                                     defaultValue=False),
                       "Also write chips without any labelled feature (ArcGIS's ALL_TILES).")
        self.add_param(QgsProcessingParameterNumber(self.ROTATION_ANGLE, self.tr("Rotation angle"), double,
                                                    defaultValue=0.0, minValue=0.0, maxValue=360.0),
                       "Extra copies of every chip turned counter-clockwise about its centre by this angle and its "
                       "multiples below 360 (90: three copies). Quarter turns are exact; other angles take the input "
                       "pixel under each pixel's centre. 0: none.")
        self.add_param(QgsProcessingParameterNumber(self.BUFFER_RADIUS, self.tr("Buffer radius"), double,
                                                    defaultValue=0.0, minValue=0.0),
                       "Map units around point samples: each point becomes a circle of this radius.")
        self.add_param(QgsProcessingParameterNumber(self.MIN_POLYGON_OVERLAP_RATIO,
                                                    self.tr("Minimum polygon overlap ratio"), double, defaultValue=0.0,
                                                    minValue=0.0, maxValue=1.0),
                       "A feature cut by a chip's edge is labelled in that chip only when at least this share of its "
                       "area is inside.", advanced=True)
        self.add_param(QgsProcessingParameterNumber(self.START_INDEX, self.tr("Start index"), integer, defaultValue=0,
                                                    minValue=0),
                       "The number of the first chip (000000000.tif); to merge exports later.", advanced=True)

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        raster_path = self.gdal_source(raster, "input")
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context) or folder
        settings = self._settings(parameters, context)
        class_data = self._class_data(parameters, context, raster.crs())
        mask = self._mask(parameters, context, raster.crs())
        items = mosaic_items(raster_path) if self.parameterAsEnum(parameters, self.PROCESSING_MODE, context) == 1 \
            else raster_path
        summary = run_engine(export_training_data, items, folder, class_data, settings, mask, FeedbackProgress(feedback))
        return {self.OUTPUT_FOLDER: folder, self.CHIPS: summary.chips}

    def _settings(self, parameters: dict[str, Any], context: QgsProcessingContext) -> ExportSettings:
        def number(name: str) -> float:
            return self.parameterAsDouble(parameters, name, context)

        return ExportSettings(
            metadata_format=FORMATS[self.parameterAsEnum(parameters, self.METADATA_FORMAT, context)],
            image_format=CHIP_FORMAT_OPTIONS[self.parameterAsEnum(parameters, self.IMAGE_CHIP_FORMAT, context)],
            tile_x=int(number(self.TILE_SIZE_X)), tile_y=int(number(self.TILE_SIZE_Y)),
            stride_x=int(number(self.STRIDE_X)), stride_y=int(number(self.STRIDE_Y)),
            output_nofeature_tiles=self.parameterAsBool(parameters, self.OUTPUT_NOFEATURE_TILES, context),
            rotation_angle=number(self.ROTATION_ANGLE), buffer_radius=number(self.BUFFER_RADIUS),
            reference_system=REFERENCE_OPTIONS[self.parameterAsEnum(parameters, self.REFERENCE_SYSTEM, context)],
            min_polygon_overlap_ratio=number(self.MIN_POLYGON_OVERLAP_RATIO),
            start_index=int(number(self.START_INDEX)),
            crop_mode=CROP_OPTIONS[self.parameterAsEnum(parameters, self.CROP_MODE, context)],
            blacken_around_feature=self.parameterAsBool(parameters, self.BLACKEN_AROUND_FEATURE, context),
            bands=tuple(b - 1 for b in self.parameterAsInts(parameters, self.BANDS, context)))

    def _class_data(self, parameters: dict[str, Any], context: QgsProcessingContext,
                    crs: QgsCoordinateReferenceSystem) -> ClassData:
        layer = self.parameterAsLayer(parameters, self.CLASS_DATA, context)
        if isinstance(layer, QgsRasterLayer):
            return ClassData(raster=self.gdal_source(layer, "class data"), name=f"CLASS_DATA '{layer.name()}'")
        source = self.parameterAsSource(parameters, self.CLASS_DATA, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.CLASS_DATA))
        kind = QgsWkbTypes.geometryType(source.wkbType())
        if kind not in (QgsWkbTypes.PolygonGeometry, QgsWkbTypes.PointGeometry):
            raise QgsProcessingException(f"CLASS_DATA '{source.sourceName()}' has "
                                         f"{QgsWkbTypes.displayString(source.wkbType())} geometries: give polygons, "
                                         "points or a classified raster")
        names = [f.name() for f in source.fields()]
        field = self.parameterAsString(parameters, self.CLASS_VALUE_FIELD, context) or fallback_class_field(names)
        index = source.fields().lookupField(field) if field else -1
        if field and index < 0:
            raise QgsProcessingException(f"CLASS_DATA '{source.sourceName()}' has no field '{field}' "
                                         f"(its fields: {', '.join(names) or 'none'})")
        request = QgsFeatureRequest().setDestinationCrs(crs, context.transformContext())
        items = [(f.id(), None if f.geometry().isNull() else bytes(f.geometry().asWkb()),
                  f.attribute(index) if index >= 0 else 1) for f in source.getFeatures(request)]
        return ClassData(features=items, name=f"CLASS_DATA '{source.sourceName()}'")

    def _mask(self, parameters: dict[str, Any], context: QgsProcessingContext,
              crs: QgsCoordinateReferenceSystem) -> list[bytes]:
        if parameters.get(self.MASK) in (None, ""):
            return []
        source = self.parameterAsSource(parameters, self.MASK, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.MASK))
        request = QgsFeatureRequest().setDestinationCrs(crs, context.transformContext())
        return [bytes(f.geometry().asWkb()) for f in source.getFeatures(request) if not f.geometry().isNull()]

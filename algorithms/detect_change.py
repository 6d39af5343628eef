# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Change Using Deep Learning (``dltools:detectchange``)."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import DLToolsAlgorithm
from .class_style import style_on_load
from .isolation import run_tool
from .outputs import name_result_layer, refuse_same_files
from .running import FeedbackProgress, run_engine

ARGUMENTS_HELP = (
    "Model arguments as 'name value' pairs separated by ';', e.g. 'padding 32;batch_size 4'. Known: padding (context "
    "pixels cut from each tile side), batch_size (tiles per model call; not a perfect square -> the largest square "
    "below), tile_size (models that accept any size), threads.")


class DetectChangeAlgorithm(DLToolsAlgorithm):
    FROM_RASTER = "FROM_RASTER"
    TO_RASTER = "TO_RASTER"
    OUTPUT = "OUTPUT"

    ARGUMENT_TOOL = "detect_change"

    HELP_SECTION = "Detect Change Using Deep Learning"

    def name(self) -> str:
        return "detectchange"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Detect Change Using Deep Learning")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Compares an earlier and a later image with a trained change detection model and writes a classified "
            "change raster: 0 where nothing changed, otherwise the model's class values, styled with its class names "
            "and colours. Both images are read on the earlier image's grid (the later one is resampled or reprojected "
            "on the fly if needed) and only where they overlap. The model receives the earlier image's bands followed "
            "by the later image's (ExtractBands indexes that stack), or one image per input for two-input models.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterRasterLayer(self.FROM_RASTER, self.tr("From raster (earlier)")),
                       "The earlier image. Its grid (cell size, alignment, CRS) is the output's grid.")
        self.add_param(QgsProcessingParameterRasterLayer(self.TO_RASTER, self.tr("To raster (later)")),
                       "The later image. It may have another grid or CRS: it is resampled (bilinear) onto the earlier "
                       "image's grid while reading.")
        self.add_model_parameters(ARGUMENTS_HELP)
        self.add_raster_run_parameters(
            "Only this area is compared (any CRS). Default: the overlap of the two images.",
            "Output cell size in the earlier image's units; both images are resampled on the fly. Default: the "
            "earlier image's cell size.")
        self.add_param(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Change raster")),
                       "The classified change GeoTIFF: 0 = no change, otherwise the model's class values; NoData "
                       "where either image has none.")

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        from_raster = self.raster_input(parameters, self.FROM_RASTER, context, "from")
        to_raster = self.raster_input(parameters, self.TO_RASTER, context, "to")
        progress = FeedbackProgress(feedback)
        md = self.model_definition(parameters, context, progress)
        from_path, request = self.engine_input(from_raster, md, self.input_request(parameters, context, from_raster),
                                               progress)
        # the to-raster is read on the from-raster's grid: an online one over that grid's extent, at its cell size
        to_request = request
        if to_raster.online is not None and from_raster.online is None:
            from ..core.raster.online import request_on_grid_of

            to_request = run_engine(request_on_grid_of, from_path, request)
        to_path, _ = self.engine_input(to_raster, md, to_request, progress)
        output = self.geotiff_output(parameters, self.OUTPUT, context)
        refuse_same_files({self.OUTPUT: output}, {self.FROM_RASTER: from_path, self.TO_RASTER: to_path})
        run_tool("detect_change", progress, from_path, to_path, md, output,
                 self.parameterAsString(parameters, self.ARGUMENTS, context),
                 request,
                 self.device_request(parameters, context), progress, self.custom_code_allowed(parameters, context),
                 **self.cluster_options(parameters, context))
        style_on_load(output, os.path.splitext(output)[0] + ".qml", context)
        name_result_layer(self, context, self.OUTPUT, output, f"{from_raster.name} → {to_raster.name}", "change")
        return {self.OUTPUT: output}

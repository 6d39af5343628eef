# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Pixels Using Deep Learning (``dltools:classifypixels``)."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.errors import DLToolsError
from ..core.raster.gdal_io import mosaic_items
from ..core.safe_output import OutputSet, item_outputs
from .base import DLToolsAlgorithm
from .class_style import style_on_load
from .isolation import run_tool
from .outputs import name_result_layer, refuse_same_files
from .running import FeedbackProgress

ARGUMENTS_HELP = (
    "Model arguments as 'name value' pairs separated by ';', e.g. 'padding 64;batch_size 4'. Known: padding "
    "(context pixels cut from each tile side), batch_size (tiles per model call; not a perfect square -> the largest "
    "square below), threshold (one-channel models), predict_background, test_time_augmentation, merge_policy "
    "(mean/max/min), blend (smooth tile blending), tile_size (models that accept any size), threads. Run Describe "
    "Model to see each one's default for your model.")


class ClassifyPixelsAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    OUTPUT_PROBABILITIES = "OUTPUT_PROBABILITIES"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"

    ARGUMENT_TOOL = "classify_pixels"

    HELP_SECTION = "Classify Pixels Using Deep Learning"

    def name(self) -> str:
        return "classifypixels"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Classify Pixels Using Deep Learning")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Runs a trained pixel classification (segmentation) model over a raster and writes a classified raster: "
            "one class value per pixel, with the model's class names and colours (colour table, attribute table and "
            "a QGIS style). The raster is read in tiles of the model's size with 'padding' pixels of context on each "
            "side; only each tile's centre is kept, so tiles join without seams. NoData pixels stay NoData.\n\n"
            "The model is an Esri model definition (.emd), a deep learning package (.dlpk), a plain ONNX or "
            "TorchScript file, or the .emd JSON text. Check a model first with Describe Model.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")),
                       "The image to classify. Its bands are picked by the model's ExtractBands. A VRT mosaic can be "
                       "processed as one image or item by item (Processing mode).")
        self.add_model_parameters(ARGUMENTS_HELP)
        self.add_raster_run_parameters(
            "Only this area is classified (any CRS; it is reprojected to the raster's). Default: all of it.",
            "Output cell size in the raster's units; the input is resampled on the fly (bilinear). Default: the "
            "raster's own cell size.",
            "For a VRT mosaic: classify it as one image (default), or classify each raster it is made of separately "
            "into the output folder. A plain raster is always one image.")
        self.add_param(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Classified raster")),
                       "The classified GeoTIFF: one band of class values, NoData where the input has none.")
        self.add_param(QgsProcessingParameterRasterDestination(self.OUTPUT_PROBABILITIES,
                                                               self.tr("Class probabilities"), optional=True,
                                                               createByDefault=False),
                       "Optional float32 GeoTIFF with one band per class: the model's probability for that class.")
        self.add_param(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder (items)"),
                                                               optional=True, createByDefault=False),
                       "With 'Process all raster items separately': where each item's classified raster goes.",
                       advanced=True)

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        raster = self.raster_input(parameters, self.INPUT, context, "input")
        progress = FeedbackProgress(feedback)
        md = self.model_definition(parameters, context, progress)
        arguments = self.parameterAsString(parameters, self.ARGUMENTS, context)
        path, request = self.engine_input(raster, md, self.input_request(parameters, context, raster), progress)
        device = self.device_request(parameters, context)
        allow = self.custom_code_allowed(parameters, context)
        cluster = self.cluster_options(parameters, context)
        output = self.geotiff_output(parameters, self.OUTPUT, context)
        probs = None
        if parameters.get(self.OUTPUT_PROBABILITIES):
            probs = self.geotiff_output(parameters, self.OUTPUT_PROBABILITIES, context) or None
        mode = self.parameterAsEnum(parameters, self.PROCESSING_MODE, context)
        folder = None
        items = mosaic_items(path) if mode == 1 else [path]
        if mode == 1:
            if len(items) == 1:
                progress.info("The input is a single raster: it is processed as one item")
            else:
                folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
                if not folder:
                    raise QgsProcessingException(self.tr("Processing items separately needs an output folder"))

        refuse_same_files({self.OUTPUT: output, self.OUTPUT_PROBABILITIES: probs}, {self.INPUT: path})
        if folder:
            outs = item_outputs(items, folder)  # unique per item, never an item itself
            refuse_same_files({self.OUTPUT: output, self.OUTPUT_PROBABILITIES: probs},
                              {f"{self.INPUT} item {i + 1}": item for i, item in enumerate(items)})
            for out in outs:
                refuse_same_files({self.OUTPUT_FOLDER: out}, {self.OUTPUT: output, self.OUTPUT_PROBABILITIES: probs})
            os.makedirs(folder, exist_ok=True)
            # every item's raster and OUTPUT are written under temporary names and kept only when all succeeded
            try:
                with OutputSet() as pending:
                    for i, (item, out) in enumerate(zip(items, outs)):
                        progress.info(f"Item {i + 1}/{len(items)}: {item} -> {os.path.basename(out)}")
                        if i == 0:  # the first item also fills OUTPUT (and its probabilities), so models chaining
                            # this tool always get a raster: run once, written under both names
                            run_tool("classify_pixels", progress, item, md, pending.path_for(output), arguments,
                                     pending.path_for(probs) if probs else None, request, device, progress, allow,
                                     **cluster)
                            pending.copy_of(output, out)
                            continue
                        run_tool("classify_pixels", progress, item, md, pending.path_for(out), arguments, None,
                                 request, device, progress, allow, **cluster)
            except DLToolsError as exc:
                raise QgsProcessingException(str(exc)) from exc
        else:
            run_tool("classify_pixels", progress, path, md, output, arguments, probs, request, device, progress,
                     allow, **cluster)

        style_on_load(output, os.path.splitext(output)[0] + ".qml", context)
        name_result_layer(self, context, self.OUTPUT, output, raster.name, "classified pixels")
        name_result_layer(self, context, self.OUTPUT_PROBABILITIES, probs, raster.name, "class probabilities")
        return {self.OUTPUT: output, self.OUTPUT_PROBABILITIES: probs, self.OUTPUT_FOLDER: folder}

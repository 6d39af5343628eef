# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects' imagery as plain inputs: the input raster (a file or an online layer read over the features'
extent) or the image folder that stands in for it, and the checks that keep its output off its inputs.

The rules a user meets in the dialog: the raster is required there (QGIS preselects a layer), the image folder
right under it is the alternative, and a folder given wins over the raster (the log says so)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingContext, QgsProcessingException, QgsRasterLayer

from ..core.progress import Progress
from ..core.raster.online import looks_like_online_uri
from ..core.tools.classify_objects.images import list_images
from .feature_inputs import crs_of
from .online_inputs import ONLINE_PROVIDERS, RasterInput
from .outputs import output_destination, refuse_same_files
from .running import run_engine


@dataclass
class ObjectImagery:
    """What the chips are cut from: a raster file (``raster``, with its CRS), an image folder's files (``images``),
    or an online layer still to be read (``online``, over the features' extent once the model is known)."""

    layer: QgsRasterLayer | None = None
    raster: str | None = None
    raster_crs: tuple[str, str] | None = None
    images: list[str] | None = None
    online: RasterInput | None = None


def object_imagery(alg: Any, parameters: dict[str, Any], context: QgsProcessingContext,
                   progress: Progress) -> ObjectImagery:
    """INPUT or IMAGE_FOLDER as plain inputs, or a clear refusal when there is neither."""
    folder = (alg.parameterAsFile(parameters, alg.IMAGE_FOLDER, context) or "").strip()
    online = _online_input(alg, parameters, context) if not folder else None
    layer = alg.parameterAsRasterLayer(parameters, alg.INPUT, context) \
        if parameters.get(alg.INPUT) and online is None else None
    if layer is not None and folder:  # the dialog always has a raster (INPUT is required): the folder wins
        progress.info(f"Image folder given: the input raster '{layer.name()}' is not read")
        layer = None
    if layer is None and not folder and online is None:
        if parameters.get(alg.INPUT):
            raise QgsProcessingException(alg.tr(f"The input raster '{parameters.get(alg.INPUT)}' cannot be loaded"))
        raise QgsProcessingException(alg.tr("No imagery: give an input raster or an image folder"))
    if layer is not None:
        return ObjectImagery(layer=layer, raster=alg.gdal_source(layer, "input"), raster_crs=crs_of(layer))
    if folder:
        return ObjectImagery(images=run_engine(list_images, folder))
    return ObjectImagery(online=online)


def _online_input(alg: Any, parameters: dict[str, Any], context: QgsProcessingContext) -> RasterInput | None:
    """INPUT as an online layer (a layer of the wms / arcgismapserver provider or its source string), else None."""
    value = parameters.get(alg.INPUT)
    if value in (None, ""):
        return None
    if not (isinstance(value, str) and looks_like_online_uri(value)):
        layer = alg.parameterAsRasterLayer(parameters, alg.INPUT, context)
        if layer is None or layer.providerType() not in ONLINE_PROVIDERS:
            return None
    return alg.raster_input(parameters, alg.INPUT, context, "input")


def read_online(alg: Any, parameters: dict[str, Any], context: QgsProcessingContext, imagery: ObjectImagery,
                md: Any, progress: Progress) -> None:
    """An online INPUT as a GDAL description read at CELL_SIZE (or the model's), over the features' extent."""
    from ..core.raster.request import RasterRequest

    if parameters.get(alg.FEATURES) in (None, ""):
        raise QgsProcessingException(alg.tr("An online layer needs input features: the chips are cut around "
                                            "them (the layer itself has no edge to take as one image)"))
    source = alg.parameterAsSource(parameters, alg.FEATURES, context)
    if source is None:
        raise QgsProcessingException(alg.invalidSourceError(parameters, alg.FEATURES))
    box = source.sourceExtent()
    cell = parameters.get(alg.CELL_SIZE)
    request = RasterRequest(extent=(box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
                            extent_crs_wkt=source.sourceCrs().toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED),
                            cell_size=alg.parameterAsDouble(parameters, alg.CELL_SIZE, context)
                            if cell not in (None, "") else None)
    description, planned = alg.engine_input(imagery.online, md, request, progress)
    grid_crs = QgsCoordinateReferenceSystem.fromWkt(planned.extent_crs_wkt)
    imagery.raster = description
    imagery.raster_crs = (planned.extent_crs_wkt, grid_crs.authid() or grid_crs.description())


def input_name(alg: Any, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
    """What the result is named after: the features, else the image folder, else the raster."""
    if parameters.get(alg.FEATURES) not in (None, ""):
        layer = alg.parameterAsVectorLayer(parameters, alg.FEATURES, context)
        return layer.name() if layer is not None else ""
    folder = (alg.parameterAsFile(parameters, alg.IMAGE_FOLDER, context) or "").strip()
    if folder:
        return os.path.basename(os.path.normpath(folder))
    layer = alg.parameterAsRasterLayer(parameters, alg.INPUT, context) if parameters.get(alg.INPUT) else None
    return layer.name() if layer is not None else ""


def refuse_output_over_inputs(alg: Any, parameters: dict[str, Any], context: QgsProcessingContext,
                              raster_path: str | None) -> None:
    """OUTPUT must not be the FEATURES file (writing it would wipe the input layer) nor the raster or model."""
    output = output_destination(alg, parameters, alg.OUTPUT, context)
    inputs: dict[str, Any] = {alg.INPUT: raster_path}
    if parameters.get(alg.FEATURES) not in (None, ""):
        layer = alg.parameterAsVectorLayer(parameters, alg.FEATURES, context)
        inputs[alg.FEATURES] = layer.source() if layer is not None else None
    model = parameters.get(alg.MODEL)
    if isinstance(model, str) and not model.strip().startswith("{"):
        inputs[alg.MODEL] = model
    refuse_same_files({alg.OUTPUT: output}, inputs)

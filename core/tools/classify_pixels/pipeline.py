# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Pixels Using Deep Learning: raster in, styled class raster out."""

from __future__ import annotations

import os

from ...arguments.specs import resolve_arguments
from ...backends import DeviceRequest
from ...engine.normalize import build_normaliser
from ...engine.pixel_outputs import write_outputs
from ...engine.pixels import PixelRunResult, run_pixel_model
from ...engine.tile_reader import open_model_source
from ...errors import InputDataError, OutputError
from ...model.definition import ModelDefinition
from ...prf.choice import model_to_run
from ...progress import NullProgress, Progress
from ...raster.request import BandSource, RasterRequest, processing_grid


def classify_pixels(raster: str, md: ModelDefinition, output: str, arguments: str | dict | None = None,
                    probabilities_output: str | None = None, request: RasterRequest | None = None,
                    device: DeviceRequest | None = None, progress: Progress | None = None,
                    allow_custom_code: bool = False, scheduler: str = "", retries: int = 2) -> PixelRunResult:
    """Classify every pixel of ``raster`` with ``md``; write ``output`` (GeoTIFF, styled) and optionally probabilities.

    A model run by its own Python function (``md.custom_function``) runs only with ``allow_custom_code``.
    ``scheduler`` (empty: in-process; ``local``, ``local:N`` or ``tcp://host:port``: a Dask cluster) and
    ``retries`` (times a failed block is retried there): see :mod:`core.engine.cluster`.  The outputs are written under
    temporary names and moved into place only when the run succeeds (:class:`~core.safe_output.OutputSet`).
    """
    progress = progress or NullProgress()
    if md.model_type not in ("ImageClassification", "Regression"):
        raise InputDataError(f"ModelType '{md.model_type}' is not a pixel classification model: use the tool for "
                             f"{md.model_type} models")
    if os.path.splitext(output)[1].lower() not in (".tif", ".tiff"):
        raise OutputError(f"Output '{output}' must be a GeoTIFF (.tif)")
    md = model_to_run(md, allow_custom_code, progress)
    if md.custom_function:
        from ...prf.raster_blocks import custom_classify_pixels

        if probabilities_output:
            raise InputDataError("A model run by its own Python function writes no class probabilities: leave that "
                                 "output empty")
        _, grid = processing_grid(raster, request)
        return custom_classify_pixels(raster, md, output, arguments, grid, device or DeviceRequest(), progress,
                                      allow_custom_code, scheduler, retries,
                                      request.grid_mask(grid) if request is not None else None)
    args = resolve_arguments(md, "classify_pixels", arguments, progress)
    device = (device or DeviceRequest()).take_arguments(args)
    request = request or RasterRequest()
    native, grid = processing_grid(raster, request)
    if grid is not native:
        progress.info(f"Processing grid: {grid.width} x {grid.height} cells of {grid.cell_size[0]:g} x "
                      f"{grid.cell_size[1]:g}")
    source = open_model_source(raster, md, grid)
    try:
        normaliser = build_normaliser(md, source.bands, source.dtype, source.band_range)
        if source.warped:
            progress.info("The raster is resampled on the fly (bilinear) to the requested grid")
        band_source = BandSource(source, request.grid_mask(grid))
        return write_outputs(
            lambda out, probs: run_pixel_model(band_source, md, args, out, probs, device, progress, normaliser,
                                               scheduler=scheduler, retries=retries),
            output, probabilities_output, md, grid, progress)
    finally:
        source.close()





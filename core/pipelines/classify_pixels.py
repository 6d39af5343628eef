# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Pixels Using Deep Learning: raster in, styled class raster out."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..arguments import resolve_arguments
from ..backends import DeviceRequest
from ..definition import ModelDefinition
from ..errors import InputDataError, OutputError
from ..normalize import build_normaliser, resolve_bands
from ..progress import NullProgress, Progress
from ..raster_io import RasterGrid, RasterSource, dataset_grid, grid_for_request, open_raster
from ..safe_output import OutputSet
from ..styling import class_entries, style_class_raster
from .pixel_engine import PixelRunResult, run_pixel_model


@dataclass
class RasterRequest:
    """Which part of the raster, on which grid: the input grid unless an extent or cell size is given."""

    extent: tuple[float, float, float, float] | None = None  # (xmin, ymin, xmax, ymax) in extent_crs_wkt
    extent_crs_wkt: str | None = None
    cell_size: float | None = None


class BandSource:
    """A :class:`RasterSource` seen by the engine (one raster, the model's bands)."""

    def __init__(self, source: RasterSource) -> None:
        self.source = source
        self.grid = source.grid
        self.dtype = source.dtype
        self.band_count = len(source.bands)
        self.has_mask = source.has_mask

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.read(x, y, w, h)


def processing_grid(path: str, request: RasterRequest | None) -> tuple[RasterGrid, RasterGrid]:
    """(native grid, processing grid) for a raster and a request; checks the CRS."""
    ds = open_raster(path)
    native = dataset_grid(ds)
    ds = None
    name = os.path.basename(path)
    if not native.crs_wkt:
        raise InputDataError(f"Raster '{name}' has no coordinate reference system: assign one "
                             "(Raster > Projections > Assign Projection) so the output can be placed on the map")
    request = request or RasterRequest()
    grid = grid_for_request(native, request.extent, request.cell_size, request.extent_crs_wkt)
    return native, grid


def open_model_source(path: str, md: ModelDefinition, grid: RasterGrid, model_channels: int | None = None) -> RasterSource:
    """Open ``path`` reading the model's bands (ExtractBands) on ``grid``."""
    probe = RasterSource(path, [0])
    try:
        bands = resolve_bands(md, probe.ds.RasterCount, probe.band_names(), probe.name, model_channels)
    finally:
        probe.close()
    return RasterSource(path, bands, grid)


def summary_lines(result: PixelRunResult, md: ModelDefinition, grid: RasterGrid) -> list[str]:
    """The end-of-run log: speed and the area of each class."""
    cx, cy = grid.cell_size
    lines = [
        f"Done: {result.tiles} tiles, batch size {result.batch_size}, {result.device}",
        f"Time: {result.seconds:.1f} s ({result.model_seconds:.1f} s in the model), "
        f"{result.pixels / max(result.seconds, 1e-9) / 1e6:.2f} megapixels per second",
    ]
    if result.pixel_counts:
        names = {c.value: c.name for c in class_entries(md.classes, result.output_values)}
        unit = "ha" if "metre" in grid.crs_wkt.lower() or "meter" in grid.crs_wkt.lower() else "map units²"
        lines.append("Area per class:")
        for value in sorted(result.pixel_counts):
            n = result.pixel_counts[value]
            area = n * cx * cy / (10000.0 if unit == "ha" else 1.0)
            lines.append(f"  {value} {names.get(value, '')}: {n} pixels, {area:.2f} {unit}")
    return lines


def classify_pixels(raster: str, md: ModelDefinition, output: str, arguments: str | dict | None = None,
                    probabilities_output: str | None = None, request: RasterRequest | None = None,
                    device: DeviceRequest | None = None, progress: Progress | None = None,
                    allow_custom_code: bool = False, scheduler: str = "", retries: int = 2) -> PixelRunResult:
    """Classify every pixel of ``raster`` with ``md``; write ``output`` (GeoTIFF, styled) and optionally probabilities.

    A model run by its own Python function (``md.custom_function``) runs only with ``allow_custom_code``.
    ``scheduler`` (empty: in-process; ``local``, ``local:N`` or ``tcp://host:port``: a Dask cluster) and
    ``retries`` (times a failed block is retried there): see :mod:`core.cluster`.  The outputs are written under
    temporary names and moved into place only when the run succeeds (:class:`~core.safe_output.OutputSet`).
    """
    progress = progress or NullProgress()
    if md.model_type not in ("ImageClassification", "Regression"):
        raise InputDataError(f"ModelType '{md.model_type}' is not a pixel classification model: use the tool for "
                             f"{md.model_type} models")
    if os.path.splitext(output)[1].lower() not in (".tif", ".tiff"):
        raise OutputError(f"Output '{output}' must be a GeoTIFF (.tif)")
    if md.custom_function:
        from .custom_raster import custom_classify_pixels

        if probabilities_output:
            raise InputDataError("A model run by its own Python function writes no class probabilities: leave that "
                                 "output empty")
        _, grid = processing_grid(raster, request)
        return custom_classify_pixels(raster, md, output, arguments, grid, device or DeviceRequest(), progress,
                                      allow_custom_code, scheduler, retries)
    args = resolve_arguments(md, "classify_pixels", arguments, progress)
    device = device or DeviceRequest()
    device.threads = int(args.get("threads") or device.threads or 0)
    native, grid = processing_grid(raster, request)
    if grid is not native:
        progress.info(f"Processing grid: {grid.width} x {grid.height} cells of {grid.cell_size[0]:g} x "
                      f"{grid.cell_size[1]:g}")
    source = open_model_source(raster, md, grid)
    try:
        normaliser = build_normaliser(md, source.bands, source.dtype, source.band_range)
        if source.warped:
            progress.info("The raster is resampled on the fly (bilinear) to the requested grid")
        return write_outputs(
            lambda out, probs: run_pixel_model(BandSource(source), md, args, out, probs, device, progress, normaliser,
                                               scheduler=scheduler, retries=retries),
            output, probabilities_output, md, grid, progress)
    finally:
        source.close()


def write_outputs(run, output: str, probabilities_output: str | None, md: ModelDefinition, grid: RasterGrid,
                  progress: Progress) -> PixelRunResult:
    """``run(temporary output, temporary probabilities)``, style the class raster (colour table, RAT, .qml), then
    move both into place; a failure or cancel leaves whatever was at ``output`` before, untouched."""
    with OutputSet() as outputs:
        tmp = outputs.path_for(output)
        tmp_probs = outputs.path_for(probabilities_output) if probabilities_output else None
        result = run(tmp, tmp_probs)
        if result.nodata is not None:
            style_class_raster(tmp, md.classes, result.output_values)
    result.output, result.probabilities = output, probabilities_output
    for line in summary_lines(result, md, grid):
        progress.info(line)
    for line in rejected_pixel_warnings(result):
        progress.warning(line)
    return result


def rejected_pixel_warnings(result: PixelRunResult) -> list[str]:
    """Pixels written as NoData because the model's answer there could not be trusted, said out loud."""
    lines = []
    if getattr(result, "nonfinite", 0):
        lines.append(f"{result.nonfinite} pixels had NaN or infinite scores from the model: they are NoData")
    unknown = getattr(result, "unknown_values", None) or {}
    if unknown:
        total = sum(unknown.values())
        shown = ", ".join(f"{v} ({n} pixels)" for v, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
        more = f" and {len(unknown) - 5} more values" if len(unknown) > 5 else ""
        lines.append(f"{total} pixels had class values that are not in the model definition's Classes "
                     f"({shown}{more}): they are NoData")
    return lines

# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Change Using Deep Learning: two dates in, a styled change raster out.

Both rasters are read on one grid: the from-raster's (or the requested extent
and cell size), cut to where the two overlap.  The to-raster is resampled or
reprojected on the fly when its grid differs.  The model sees the from-bands
then the to-bands stacked (arcgis.learn ``change_detection``; ``ExtractBands``
indexes that stack), or, for a model with two inputs, one image per input.
The output follows the Classify Pixels class rules; 0 is "no change".  Definitions written by
arcgis.learn's ChangeDetector (``ModelConfiguration`` ``change_detection``) get its own input scaling and
binary output (every change class written as the first non-zero ``Value``), as ArcGIS does.
"""

from __future__ import annotations

import os

import numpy as np
from osgeo import osr

from ...arguments.specs import resolve_arguments
from ...backends import DeviceRequest
from ...engine.normalize import Normaliser, build_normaliser
from ...engine.pixel_outputs import write_outputs
from ...engine.pixels import PixelRunResult, run_pixel_model
from ...errors import InputDataError, OutputError
from ...model.definition import ModelDefinition
from ...prf.choice import model_to_run
from ...prf.host import PythonRasterFunction
from ...progress import NullProgress, Progress
from ...raster.gdal_io import (
    RasterGrid,
    RasterSource,
    data_band_count,
    dataset_grid,
    grid_for_request,
    open_raster,
    same_crs,
)
from ...raster.mask import GridMask
from ...raster.request import RasterRequest, processing_grid


class StackedSource:
    """Several rasters on one grid, read as one stack of bands; a pixel is valid where all are."""

    def __init__(self, sources: list[RasterSource], picks: list[int], mask: GridMask | None = None) -> None:
        self.sources = sources
        self.mask = mask
        self.grid = sources[0].grid
        dtypes = {s.dtype for s in sources}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
        self.picks = picks
        self.band_count = len(picks)
        self.has_mask = any(s.has_mask for s in sources)

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        datas, valid = [], None
        for s in self.sources:
            d, v = s.read(x, y, w, h, self.dtype)
            datas.append(d)
            valid = v if valid is None else (valid & v)
        stack = np.concatenate(datas, axis=0)
        assert valid is not None
        return stack[self.picks], valid

    def band_range(self, band: int) -> tuple[float, float]:
        for s in self.sources:
            if band < len(s.bands):
                return s.band_range(s.bands[band])
            band -= len(s.bands)
        raise IndexError(band)


def arcgis_change_normaliser(md: ModelDefinition, picks: list[int], stacked: StackedSource) -> Normaliser:
    """arcgis.learn ``change_detection`` (esri-compat.md 4.4): min-max scale each band to 0-1 (NormalizationStats
    band_min/band_max when the definition has them, else 0-255 for 8-bit data and each band's min..max otherwise),
    then normalise with mean = std = 0.5."""
    stats = md.normalization_stats
    scale = np.empty(len(picks))
    offset = np.empty(len(picks))
    for i, b in enumerate(picks):
        if stats is not None and b < len(stats.band_min_values) and b < len(stats.band_max_values):
            lo, hi = stats.band_min_values[b], stats.band_max_values[b]
        elif stacked.dtype == "uint8":
            lo, hi = 0.0, 255.0
        else:
            lo, hi = stacked.band_range(b)
        span = hi - lo if hi > lo else 1.0
        scale[i] = 2.0 / span
        offset[i] = -2.0 * lo / span - 1.0
    return Normaliser(scale.astype(np.float32), offset.astype(np.float32),
                      "arcgis.learn change detection: min-max to 0-1, then (x - 0.5) / 0.5")


def _bounds_in(grid: RasterGrid, target_wkt: str) -> tuple[float, float, float, float]:
    """The grid's bounds in another CRS (edges densified, so curved edges are covered)."""
    if same_crs(grid.crs_wkt, target_wkt):
        return grid.bounds
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromWkt(grid.crs_wkt)
    dst.ImportFromWkt(target_wkt)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)
    xmin, ymin, xmax, ymax = grid.bounds
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate([xmin + (xmax - xmin) * t, np.full(21, xmax), xmin + (xmax - xmin) * t, np.full(21, xmin)])
    ys = np.concatenate([np.full(21, ymin), ymin + (ymax - ymin) * t, np.full(21, ymax), ymin + (ymax - ymin) * t])
    pts = tr.TransformPoints(list(zip(xs.tolist(), ys.tolist())))
    px = [p[0] for p in pts]
    py = [p[1] for p in pts]
    return min(px), min(py), max(px), max(py)


def detect_change(from_raster: str, to_raster: str, md: ModelDefinition, output: str,
                  arguments: str | dict | None = None, request: RasterRequest | None = None,
                  device: DeviceRequest | None = None, progress: Progress | None = None,
                  allow_custom_code: bool = False, scheduler: str = "", retries: int = 2) -> PixelRunResult:
    """Compare two dates with a change model and write ``output`` (GeoTIFF, styled).

    A model run by its own Python function (``md.custom_function``) runs only with ``allow_custom_code``.
    ``scheduler`` and ``retries``: as for :func:`~core.tools.classify_pixels.pipeline.classify_pixels`.
    """
    progress = progress or NullProgress()
    if md.model_type not in ("ImageClassification", "Regression"):
        raise InputDataError(f"ModelType '{md.model_type}' is not a pixel model: a change model is an "
                             "ImageClassification model (arcgis.learn change_detection)")
    if os.path.splitext(output)[1].lower() not in (".tif", ".tiff"):
        raise OutputError(f"Output '{output}' must be a GeoTIFF (.tif)")
    md = model_to_run(md, allow_custom_code, progress)
    if md.custom_function:
        PythonRasterFunction.refuse_unless(md, allow_custom_code)
        args: dict = {}
    else:
        args = resolve_arguments(md, "detect_change", arguments, progress)
    device = (device or DeviceRequest()).take_arguments(args)

    native_from, grid = processing_grid(from_raster, request)
    ds_to = open_raster(to_raster)
    native_to = dataset_grid(ds_to)
    n_to = data_band_count(ds_to, to_raster)
    ds_to = None
    if not native_to.crs_wkt:
        raise InputDataError(f"Raster '{os.path.basename(to_raster)}' has no coordinate reference system: assign one")
    # Only the overlap of the two dates is processed.
    to_bounds = _bounds_in(native_to, grid.crs_wkt)
    gx0, gy0, gx1, gy1 = grid.bounds
    ox0, oy0, ox1, oy1 = max(gx0, to_bounds[0]), max(gy0, to_bounds[1]), min(gx1, to_bounds[2]), min(gy1, to_bounds[3])
    if ox0 >= ox1 or oy0 >= oy1:
        raise InputDataError(f"Rasters '{os.path.basename(from_raster)}' and '{os.path.basename(to_raster)}' do not "
                             "overlap: there is nothing to compare")
    if (ox0, oy0, ox1, oy1) != (gx0, gy0, gx1, gy1):
        cell = None if grid.cell_size == native_from.cell_size and same_crs(grid.crs_wkt, native_from.crs_wkt) \
            else grid.cell_size[0]
        overlap = grid_for_request(native_from, (ox0, oy0, ox1, oy1), cell, grid.crs_wkt)
        if not overlap.same_as(grid):  # snapped outwards, the overlap may still be the whole grid
            grid = overlap
            progress.info(f"Only the overlap of the two rasters is processed: {grid.width} x {grid.height} cells")

    ds_from = open_raster(from_raster)
    n_from = data_band_count(ds_from, from_raster)
    ds_from = None
    src_from = RasterSource(from_raster, list(range(n_from)), grid)
    src_to = RasterSource(to_raster, list(range(n_to)), grid)
    try:
        if src_to.warped:
            how = "reprojected" if not same_crs(native_to.crs_wkt, grid.crs_wkt) else "resampled"
            progress.info(f"The to-raster's grid differs from the processing grid: it is {how} on the fly (bilinear)")
        if md.custom_function:
            from ...prf.raster_blocks import custom_detect_change

            return custom_detect_change([src_from, src_to], StackedSource, md, output, arguments, device, progress,
                                        allow_custom_code, scheduler, retries,
                                        request.grid_mask(grid) if request is not None else None)
        total = n_from + n_to
        if md.extract_band_names:
            raise InputDataError("ExtractBands by band name is not supported for change detection: use indexes "
                                 "into the from-bands followed by the to-bands")
        picks = list(md.extract_bands) if md.extract_bands else list(range(total))
        if max(picks) >= total:
            raise InputDataError(
                f"The model needs band {max(picks) + 1} of the stacked dates (ExtractBands {picks}) but the from-raster "
                f"has {n_from} and the to-raster {n_to} bands")
        if n_from != n_to:
            progress.warning(f"The from-raster has {n_from} bands and the to-raster {n_to}: check ExtractBands {picks}")
        stacked = StackedSource([src_from, src_to], picks, request.grid_mask(grid) if request else None)
        arcgis_change = md.is_arcgis_learn and (md.model_configuration or "").lower() == "change_detection"
        if arcgis_change:
            normaliser = arcgis_change_normaliser(md, picks, stacked)
            progress.info("arcgis.learn change detection model: each date is scaled to 0-1, then (x - 0.5) / 0.5; "
                          "every change class is written as the first class whose Value is not 0")
        else:
            normaliser = build_normaliser(md, picks, stacked.dtype, stacked.band_range)
        return write_outputs(
            lambda out, _probs: run_pixel_model(stacked, md, args, out, None, device, progress, normaliser,
                                                binary_change=arcgis_change, scheduler=scheduler, retries=retries),
            output, None, md, grid, progress)
    finally:
        src_from.close()
        src_to.close()

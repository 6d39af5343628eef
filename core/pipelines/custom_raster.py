# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Pixels and Detect Change with the model's own Python raster function.

The tool keeps the reading, tiling, writing and styling; the function sees one
block at a time, exactly as ArcGIS hands it over: ``raster_pixels`` of shape
``(bands, ty + 2*padding, tx + 2*padding)`` in the raster's pixel type (float32 once
``dataRange`` rescales it), ``raster_mask`` (uint8, same shape) when it asked for
``inputMask``, and it writes ``output_pixels`` of shape ``(bands, ty, tx)`` in the
pixel type ``updateRasterInfo`` chose (and optionally ``output_mask``).  Blocks are
always full size; the part past the raster's edge is 0 and masked, and is cut off
the output.  Blocks are processed a row at a time, so memory follows the raster's
width and the tile height, never its height.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..custom_function import (
    INHERIT_NODATA,
    NUMPY_PIXEL_TYPES,
    PIXEL_TYPES,
    CustomFunctionError,
    PythonRasterFunction,
    classes_from_rat,
    without_normalisation,
)
from ..definition import ModelDefinition
from ..errors import CancelledError
from ..normalize import build_normaliser
from ..progress import NullProgress, Progress
from ..raster_io import StripWriter, bounded_gdal_cache
from ..safe_output import OutputSet
from ..styling import style_class_raster


@dataclass
class CustomRunResult:
    output: str
    tiles: int
    tile_size: tuple[int, int]
    padding: int
    seconds: float
    function_seconds: float
    output_values: list[int]
    nodata: float | None
    pixel_counts: dict[int, int] = field(default_factory=dict)
    sha256: str = ""


def _nodata_for(dtype: np.dtype, given: Any) -> float:
    if given is not None:
        try:
            return float(np.asarray(given).ravel()[0])
        except (TypeError, ValueError, IndexError):
            pass
    if dtype.kind == "f":
        return float("nan")
    return float(np.iinfo(dtype).max)


def _check_block(prf: PythonRasterFunction, key: str, value: Any, shape: tuple[int, int, int],
                 dtype: np.dtype | None) -> np.ndarray:
    """``value`` as an array of ``shape`` (a 2-D array for one band is accepted), or a clear error."""
    if not isinstance(value, np.ndarray):
        raise CustomFunctionError(f"updatePixels() of '{prf.shown}' set pixelBlocks['{key}'] to a "
                                  f"{type(value).__name__} on {prf.where}; it must be a numpy array of shape {shape}")
    arr = value[None] if value.ndim == 2 and shape[0] == 1 else value
    if arr.shape != shape:
        raise CustomFunctionError(
            f"updatePixels() of '{prf.shown}' returned pixelBlocks['{key}'] of shape {tuple(value.shape)} on "
            f"{prf.where}; expected {shape} (bands from updateRasterInfo, ty, tx from getConfiguration)")
    if arr.dtype.kind not in "biuf":
        raise CustomFunctionError(f"updatePixels() of '{prf.shown}' returned pixelBlocks['{key}'] of dtype "
                                  f"{arr.dtype} on {prf.where}; it must hold numbers")
    if dtype is not None and arr.dtype != dtype:
        if not np.can_cast(arr.dtype, dtype, "same_kind"):
            raise CustomFunctionError(
                f"updatePixels() of '{prf.shown}' returned pixelBlocks['{key}'] of dtype {arr.dtype} on {prf.where}, "
                f"but the output pixel type is '{NUMPY_PIXEL_TYPES.get(dtype.name, dtype.name)}' ({dtype}): cast "
                "it with .astype(props['pixelType'])")
        if dtype.kind in "iu" and arr.size:
            info = np.iinfo(dtype)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise CustomFunctionError(
                    f"updatePixels() of '{prf.shown}' returned pixelBlocks['{key}'] values {lo}..{hi} on "
                    f"{prf.where}, which do not fit the output pixel type {dtype} ({info.min}..{info.max})")
    return arr


def run_custom_raster(open_source: Callable[[list[int] | None], Any], md: ModelDefinition,
                      prf: PythonRasterFunction, arguments: str | dict | None, output: str,
                      progress: Progress | None = None) -> CustomRunResult:
    """:func:`_write_custom_raster` under a temporary name, moved onto ``output`` (with its .qml) only on success:
    a cancelled or failed run leaves an existing output as it was."""
    with OutputSet() as outputs:
        result = _write_custom_raster(open_source, md, prf, arguments, outputs.path_for(output), progress)
    result.output = output
    return result


def _write_custom_raster(open_source: Callable[[list[int] | None], Any], md: ModelDefinition,
                         prf: PythonRasterFunction, arguments: str | dict | None, output: str,
                         progress: Progress | None = None) -> CustomRunResult:
    """Drive ``prf`` over the raster ``open_source(bands)`` returns and write ``output`` (GeoTIFF, styled).

    ``open_source`` gets the 0-based bands from ``extractBands`` (None: the model definition's
    ExtractBands or all bands) and returns a reader with ``grid``, ``dtype``, ``band_count``,
    ``read(x, y, w, h)``, ``band_range(i)`` and ``close()``.
    """
    progress = progress or NullProgress()
    started = time.perf_counter()
    args = prf.resolve_arguments(arguments)
    if args:
        progress.info("Function arguments: " + ";".join(f"{k} {v}" for k, v in args.items()))
    conf = prf.configuration(args)
    source = open_source(conf.bands)
    writer = None
    try:
        grid = source.grid
        cx, cy = grid.cell_size
        gt = grid.geotransform
        src_type = NUMPY_PIXEL_TYPES.get(np.dtype(source.dtype).name, "f4")
        info = prf.raster_info({
            "bandCount": source.band_count, "pixelType": src_type, "noData": None, "cellSize": (cx, cy),
            "extent": grid.bounds, "nativeExtent": grid.bounds, "width": grid.width, "height": grid.height,
            "spatialReference": grid.crs_wkt, "format": "GTiff"}, conf.inherit)
        out_dtype = np.dtype(PIXEL_TYPES[info["pixelType"]])
        out_bands = int(info["bandCount"])
        nodata = _nodata_for(out_dtype, info.get("noData"))
        p, tx, ty = conf.padding, conf.tx, conf.ty
        normaliser = None
        if conf.data_range is not None:
            bands = list(range(source.band_count))
            normaliser = build_normaliser(without_normalisation(md, conf.data_range), bands, source.dtype,
                                          source.band_range)
            progress.info(f"dataRange: {normaliser.description}")
        cols, rows = math.ceil(grid.width / tx), math.ceil(grid.height / ty)
        total = cols * rows
        progress.info(f"Blocks: {total} ({cols} x {rows}) of {tx}x{ty} pixels with padding {p} "
                      f"({tx + 2 * p}x{ty + 2 * p} read per block), {source.band_count} band(s) in, {out_bands} "
                      f"band(s) of '{info['pixelType']}' out" + (f", batch_size {conf.batch_size} (the function "
                                                                  "batches itself)" if conf.batch_size else ""))
        writer = StripWriter(output, grid, out_bands, out_dtype.name, nodata)
        counts: dict[int, int] = {}
        fn_seconds = 0.0
        done = 0
        for r in range(rows):
            y0 = r * ty
            h = min(ty, grid.height - y0)
            row_out = np.full((out_bands, h, grid.width), nodata, out_dtype)
            row_ok = np.zeros((h, grid.width), bool)
            for c in range(cols):
                if progress.is_canceled():
                    raise CancelledError("The run was cancelled.")
                x0 = c * tx
                w = min(tx, grid.width - x0)
                data, valid = source.read(x0 - p, y0 - p, tx + 2 * p, ty + 2 * p)
                if normaliser is not None:
                    data = normaliser.apply(data.astype(np.float32))
                blocks: dict[str, Any] = {"raster_pixels": data}
                if conf.input_mask:
                    blocks["raster_mask"] = np.repeat(valid[None].astype(np.uint8), data.shape[0], axis=0)
                xmin, ymax = gt[0] + x0 * cx, gt[3] - y0 * cy
                props = {"pixelType": info["pixelType"], "noData": None if math.isnan(nodata) else nodata,
                         "width": tx, "height": ty, "cellSize": (cx, cy),
                         "extent": (xmin, ymax - ty * cy, xmin + tx * cx, ymax), "spatialReference": grid.crs_wkt}
                prf.where = f"the block at column {x0}, row {y0} (block {c + 1} of {cols} in row {r + 1} of {rows})"
                t0 = time.perf_counter()
                got = prf.update_pixels((xmin, ymax), (out_bands, ty, tx), props, blocks)
                fn_seconds += time.perf_counter() - t0
                if "output_pixels" not in got:
                    raise CustomFunctionError(f"updatePixels() of '{prf.shown}' did not set "
                                              f"pixelBlocks['output_pixels'] on {prf.where}")
                out = _check_block(prf, "output_pixels", got["output_pixels"], (out_bands, ty, tx), out_dtype)
                keep = np.ones((ty, tx), bool)
                if conf.inherit & INHERIT_NODATA:
                    keep &= valid[p:p + ty, p:p + tx]
                if got.get("output_mask") is not None:
                    mask = _check_block(prf, "output_mask", got["output_mask"], (out_bands, ty, tx), None)
                    keep &= (mask != 0).all(axis=0)
                row_out[:, :, x0:x0 + w] = out[:, :h, :w]
                row_ok[:, x0:x0 + w] = keep[:h, :w]
                done += 1
                progress.set_progress(100.0 * done / total)
            row_out[:, ~row_ok] = nodata
            if out_bands == 1 and out_dtype.kind in "iu":
                uniq, cnt = np.unique(row_out[0][row_ok], return_counts=True)
                for u, k in zip(uniq.tolist(), cnt.tolist()):
                    counts[int(u)] = counts.get(int(u), 0) + k
            with bounded_gdal_cache():
                writer.write_rows(row_out)
        writer.close()
        writer = None
    finally:
        source.close()
        if writer is not None:
            writer.abort()
    classes = list(md.classes) or classes_from_rat(info.get("rasterAttributeTable"))
    values = sorted(counts)
    if out_bands == 1 and out_dtype.kind in "iu":
        style_class_raster(output, classes, values)
    seconds = time.perf_counter() - started
    progress.info(f"Done: {total} blocks in {seconds:.1f} s ({fn_seconds:.1f} s in the function)")
    return CustomRunResult(output=output, tiles=total, tile_size=(tx, ty), padding=p, seconds=seconds,
                           function_seconds=fn_seconds, output_values=values,
                           nodata=None if math.isnan(nodata) else nodata, pixel_counts=counts, sha256=prf.sha256)


class _Bands:
    """A reader seen by the driver: positions 0..n-1 of the bands it reads."""

    def __init__(self, source: Any, picks: list[int], closers: list[Any]) -> None:
        self.source = source
        self.picks = picks
        self.grid = source.grid
        self.dtype = source.dtype
        self.band_count = len(picks)
        self._closers = closers

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.read(x, y, w, h)

    def band_range(self, i: int) -> tuple[float, float]:
        return self.source.band_range(self.picks[i])

    def close(self) -> None:
        for c in self._closers:
            c.close()


def custom_classify_pixels(raster: str, md: ModelDefinition, output: str, arguments: str | dict | None,
                           grid: Any, device: Any, progress: Progress, allowed: bool) -> CustomRunResult:
    """Classify Pixels with the model's function on ``grid`` (the processing grid of ``raster``)."""
    from ..normalize import resolve_bands
    from ..raster_io import RasterSource

    prf = PythonRasterFunction(md, allowed, device, progress)

    def open_source(bands: list[int] | None) -> _Bands:
        probe = RasterSource(raster, [0])
        try:
            count = probe.ds.RasterCount
            if bands is None:
                bands = resolve_bands(md, count, probe.band_names(), probe.name)
            elif bands and max(bands) >= count:
                raise CustomFunctionError(f"getConfiguration() of '{prf.shown}' asks for band {max(bands) + 1} "
                                          f"(extractBands {bands}) but raster '{probe.name}' has {count} band(s)")
        finally:
            probe.close()
        src = RasterSource(raster, bands, grid)
        return _Bands(src, list(bands), [src])

    return run_custom_raster(open_source, md, prf, arguments, output, progress)


def custom_detect_change(sources: list[Any], stack: Callable[[list[Any], list[int]], Any], md: ModelDefinition,
                         output: str, arguments: str | dict | None, device: Any, progress: Progress,
                         allowed: bool) -> CustomRunResult:
    """Detect Change with the model's function: ``raster_pixels`` is the from-bands then the to-bands.

    ``stack(sources, picks)`` reads the dates as one stack of bands (the tool's own StackedSource).
    """
    prf = PythonRasterFunction(md, allowed, device, progress)
    total = sum(len(s.bands) for s in sources)

    def open_source(bands: list[int] | None) -> _Bands:
        picks = list(bands) if bands is not None else (list(md.extract_bands) if md.extract_bands
                                                       else list(range(total)))
        if picks and max(picks) >= total:
            raise CustomFunctionError(f"The function asks for band {max(picks) + 1} of the two dates stacked "
                                      f"(extractBands {picks}) but they have {total} bands together")
        return _Bands(stack(sources, picks), picks, [])

    return run_custom_raster(open_source, md, prf, arguments, output, progress)

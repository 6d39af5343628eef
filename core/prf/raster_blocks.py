# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Pixels and Detect Change with the model's own Python raster function, on the block engine.

The tool keeps the reading, tiling, writing and styling: a custom function runs as a
:class:`~core.engine.blocks.BlockTask` like any model, on the shared chip grid (:class:`~core.raster.grid.TileGrid`: chips
of ``tx x ty`` with ``padding`` around them), read by the shared :class:`~core.engine.tile_reader.TileReader` (window and
halo, NoData zeroed, the function's ``dataRange`` applied), written by :class:`~core.raster.gdal_io.BlockWriter`
through :class:`~core.safe_output.OutputSet`; its blocks are the engine's :class:`~core.engine.pixels.PixelBlock`
written by its :class:`~core.engine.pixels.PixelSink`, and a run reports a
:class:`~core.engine.pixels.PixelRunResult`, as for a model file.  The function sees one chip at a time, as
ArcGIS hands it over: ``<name>_pixels`` for each raster parameter (:mod:`.sources`) of shape
``(bands, ty + 2*padding, tx + 2*padding)`` in the raster's pixel type (float32 once ``dataRange`` rescales it),
``<name>_mask`` (uint8, same shape, 0 at NoData and past the raster) when it asked for ``inputMask``, and it
writes ``output_pixels`` of the ``shape`` it is told (``(ty, tx)`` for one band, ``(bands, ty, tx)`` otherwise)
in the pixel type ``updateRasterInfo`` chose (:mod:`.raster_info`), and optionally ``output_mask``.

Chips are always full size.  Their edges follow the engine's ``edge_fill`` (a tool argument, as for any
model; the function's own arguments are the rest): ``mirror`` (the default) moves the last chip of a row or
column inward and fills the padding past the raster by mirroring it, so an edge pixel sees real pixels;
``zero`` is ArcGIS's layout (chips at the plain stride, zeros past the raster, masked).  ``block_size``
(output pixels per block side) is honoured too.  Memory is bounded by the block size, never by the raster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..arguments.specs import parse_arguments_text
from ..engine.blocks import BlockJob, block_jobs, chips_per_block
from ..engine.cluster import run_jobs
from ..engine.normalize import Normaliser, build_normaliser
from ..engine.pixel_outputs import write_outputs
from ..engine.pixels import PixelBlock, PixelRunResult, PixelSink
from ..engine.tile_reader import TileReader, log_mask
from ..errors import ArgumentError
from ..model.definition import ModelDefinition
from ..progress import NullProgress, Progress
from ..raster.gdal_io import BlockWriter, bounded_gdal_cache
from ..raster.grid import EDGE_FILLS, TileGrid
from .configuration import INHERIT_NODATA, Configuration
from .errors import CustomFunctionError
from .function_model import FunctionModel, function_model_ref
from .host import PythonRasterFunction, without_normalisation
from .raster_info import NUMPY_PIXEL_TYPES, PIXEL_TYPES, classes_from_rat, input_info, key_metadata
from .sources import FunctionSource, InputPart, raster_bands, stacked_dates, with_extra_rasters

#: Arguments the tool itself takes beside the function's own (unless the function declares one of that name).
TOOL_ARGUMENTS = ("edge_fill", "block_size")


def _check_block(prf: PythonRasterFunction, key: str, value: Any, shape: tuple[int, int, int],
                 dtype: np.dtype | None) -> np.ndarray:
    """``value`` as an array of ``shape`` (bands, rows, columns), or a clear error; one band may come as Esri's
    (rows, columns) or with its band axis."""
    shown = shape[1:] if shape[0] == 1 else shape  # what updatePixels was told (Esri: 2-D for one band)
    if not isinstance(value, np.ndarray):
        raise CustomFunctionError(f"updatePixels() of '{prf.shown}' set pixelBlocks['{key}'] to a "
                                  f"{type(value).__name__} on {prf.where}; it must be a numpy array of shape {shown}")
    arr = value[None] if value.ndim == 2 and shape[0] == 1 else value
    if arr.shape != shape:
        raise CustomFunctionError(
            f"updatePixels() of '{prf.shown}' returned pixelBlocks['{key}'] of shape {tuple(value.shape)} on "
            f"{prf.where}; expected {shown} (bands from updateRasterInfo, ty, tx from getConfiguration)")
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


def split_arguments(prf: PythonRasterFunction, given: str | dict | None) -> tuple[dict[str, str], dict[str, Any]]:
    """(the function's arguments, the tool's: ``edge_fill`` and ``block_size``, checked and typed)."""
    own = {str(p["name"]).lower() for p in prf.arguments()}
    parsed = parse_arguments_text(given)
    tool: dict[str, Any] = {"edge_fill": "mirror", "block_size": 0}
    rest: dict[str, str] = {}
    for name, value in parsed.items():
        key = name.lower()
        if key not in TOOL_ARGUMENTS or key in own:
            rest[name] = value
        elif key == "edge_fill":
            if value.strip().lower() not in EDGE_FILLS:
                raise ArgumentError(f"Argument 'edge_fill' must be one of {', '.join(EDGE_FILLS)}, not '{value}'")
            tool[key] = value.strip().lower()
        else:
            try:
                tool[key] = int(value)
            except ValueError:
                raise ArgumentError(f"Argument 'block_size' must be a whole number, not '{value}'") from None
            if tool[key] < 0:
                raise ArgumentError(f"Argument 'block_size' must be at least 0, not {tool[key]}")
    return rest, tool


@dataclass
class FunctionOutput:
    """What ``updateRasterInfo`` made of the output: its info, the input info it was given (replayed on Dask
    workers), the numpy type, band count and NoData, and whether class values are counted (one integer band)."""

    info: dict[str, Any]
    raster_info: tuple  # the arguments of PythonRasterFunction.raster_info, replayed on Dask workers
    dtype: np.dtype
    bands: int
    nodata: float
    counted: bool


@dataclass
class FunctionRun:
    """What every custom-function tool on the block engine sets up the same way: arguments, configuration,
    the bands read, the ``dataRange`` normaliser and the chip grid."""

    prf: PythonRasterFunction
    conf: Configuration
    source: FunctionSource
    normaliser: Normaliser | None
    chips: TileGrid
    block_size: int
    edge_fill: str
    arguments: dict[str, Any] = field(default_factory=dict)  # the function's, resolved (replayed on workers)

    @classmethod
    def open(cls, prf: PythonRasterFunction, md: ModelDefinition, arguments: str | dict | None,
             open_source: Callable[[list[int] | None], Any], progress: Progress) -> FunctionRun:
        """``open_source(bands)`` gets the 0-based bands from ``extractBands`` (None: the model definition's
        ExtractBands or all bands) and returns a reader with ``grid``, ``dtype``, ``band_count``, ``has_mask``,
        ``read(x, y, w, h)``, ``band_range(i)`` and ``close()``."""
        function_args, tool = split_arguments(prf, arguments)
        args = prf.resolve_arguments(function_args)
        if any(v is not None for v in args.values()):
            progress.info("Function arguments: " + ";".join(f"{k} {v}" for k, v in args.items() if v is not None))
        # further raster parameters take a raster path; getConfiguration and updateRasterInfo get the scalars only
        paths = {str(q["name"]): (q, args.pop(str(q["name"]), None)) for q in prf.rasters()[prf.tool_inputs:]}
        extra = [(q, str(path)) for q, path in paths.values() if path not in (None, "")]
        conf = prf.configuration(args)
        p, tx, ty = conf.padding, conf.tx, conf.ty
        source = open_source(conf.bands)
        if extra:
            try:
                source = with_extra_rasters(source, extra)
            except BaseException:
                source.close()
                raise
            progress.info("Further raster parameters: " + "; ".join(f"{q['name']} = '{path}'" for q, path in extra))
        try:
            if not conf.resampling and _resampled(source):
                raise CustomFunctionError(
                    f"getConfiguration() of '{prf.shown}' says resampling False, but the input is resampled to the "
                    "processing grid (a processing extent or cell size, or a second date on another grid): run it "
                    "on the raster's own grid")
            chips = TileGrid(source.grid.width, source.grid.height, ty + 2 * p, tx + 2 * p, p, tool["edge_fill"])
            normaliser = None
            if conf.data_range is not None:
                normaliser = build_normaliser(without_normalisation(md, conf.data_range),
                                              list(range(source.band_count)), source.dtype, source.band_range)
                progress.info(f"dataRange: {normaliser.description}")
        except BaseException:
            source.close()
            raise
        return cls(prf, conf, source, normaliser, chips, int(tool["block_size"]), tool["edge_fill"], args)

    def output_info(self) -> FunctionOutput:
        """``updateRasterInfo`` on the source read: the output's bands, pixel type and NoData."""
        inputs: dict[str, Any] = {}
        metadata: dict[str, dict[str, Any]] = {}
        for part in self.source.parts:
            view = _PartView(self.source, part.bands)
            info = input_info(view, list(part.nodata), part.statistics)
            inputs[part.name] = (info,) if part.is_list else info
            found = key_metadata(part.metadata, self.conf.key_metadata)
            metadata[part.name] = (found,) if part.is_list else found
        raster_info = (dict(self.arguments), inputs, metadata, self.conf.inherit)
        info = self.prf.raster_info(*raster_info)
        dtype = np.dtype(PIXEL_TYPES[info["pixelType"]])
        bands = int(info["bandCount"])
        return FunctionOutput(info=info, raster_info=raster_info, dtype=dtype, bands=bands, nodata=info["noData"],
                              counted=bands == 1 and dtype.kind in "iu")

    def reader(self) -> TileReader:
        dtype = "float32" if self.normaliser is not None else str(np.dtype(self.source.dtype))
        return TileReader(self.source, self.chips, self.normaliser, 1, self.source.band_count, dtype)

    def jobs(self, bytes_per_pixel: float) -> list[BlockJob]:
        return block_jobs(self.chips, chips_per_block(self.chips, bytes_per_pixel, self.block_size, 1))

    def describe(self, jobs: list[BlockJob]) -> str:
        c, p = self.chips, self.conf.padding
        return (f"Blocks: {c.count} ({c.cols} x {c.rows}) of {self.conf.tx}x{self.conf.ty} pixels with padding {p} "
                f"({c.tile_w}x{c.tile_h} read per block), {self.source.band_count} band(s) in; edges "
                f"{'mirrored' if c.mirrored else 'zero-filled'}; {len(jobs)} engine block(s)")


@dataclass
class FunctionBlockTask:
    """The stages every custom function shares on the block engine: the reader (the shared
    :class:`TileReader`, one chip per batch, each with its validity mask), the function's ``pixelBlocks`` and
    the chip named in its messages.  :class:`FunctionPixelTask` and the Detect Objects task add ``infer`` and
    the result.  Picklable: the source reopens by path; the function itself is the "model"."""

    reader: TileReader
    input_mask: bool
    parts: list[InputPart]

    def units(self, job: BlockJob) -> int:
        """The chips the function is called on (with a mask: those that touch it)."""
        if self.reader.mask is None:
            return job.chip_count
        return len(self.reader.needed(range(*job.rows), range(*job.cols)))

    def load(self, job: BlockJob):
        rows, cols = range(*job.rows), range(*job.cols)
        data, valid, wx0, wy0 = self.reader.read(rows, cols)

        def batches():
            for arr, metas in self.reader.batches(data, valid, rows, cols, wx0, wy0):
                masks = [self.reader.chip_valid(valid, r, c, wx0, wy0) for r, c in metas]
                yield (arr, masks, metas), metas

        return None, batches()

    def pixel_blocks(self, chip: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
        """Esri's ``pixelBlocks``: ``<name>_pixels`` (and ``<name>_mask`` with ``inputMask``) for each raster
        parameter the tool fills, a tuple of arrays for a ``rasters`` parameter; always (bands, rows, columns),
        a single band too, as Esri's own single-band functions index them (BasicChuckClose, LandsatC2QA,
        CompoundTopographicIndex_64bitScipy) and as raster-deep-learning documents ``raster_pixels``."""
        blocks: dict[str, Any] = {}
        start = 0
        for part in self.parts:
            pixels = chip[start:start + part.bands]
            start += part.bands
            mask = np.repeat(valid[None].astype(np.uint8), part.bands, axis=0) if self.input_mask else None
            blocks[f"{part.name}_pixels"] = (pixels,) if part.is_list else pixels
            if mask is not None:
                blocks[f"{part.name}_mask"] = (mask,) if part.is_list else mask
        return blocks

    def locate(self, prf: PythonRasterFunction, r: int, c: int) -> tuple[int, int]:
        """The grid pixel of chip (r, c)'s top-left without padding, named in the function's errors."""
        chips = self.reader.chips
        x0, y0 = chips.core_origin(r, c)
        prf.where = (f"the block at column {x0}, row {y0} (block {c + 1} of {chips.cols} in row {r + 1} of "
                     f"{chips.rows})")
        return x0, y0

    def kept(self, r: int, c: int) -> tuple[int, int, int, int]:
        """The output pixels (x, y, w, h) chip (r, c) answers for (a moved last chip: only its new part)."""
        return self.reader.chips.core_window(r, c)


@dataclass
class FunctionPixelTask(FunctionBlockTask):
    """``updatePixels`` per chip; a block's result is its output pixels (see :class:`FunctionBlockTask`)."""

    out_bands: int
    out_dtype: str
    nodata: float
    pixel_type: str
    inherit_nodata: bool
    geotransform: tuple[float, ...]
    crs_wkt: str
    count_values: bool

    def infer(self, model: FunctionModel, batch: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        arrs, masks, metas = batch
        prf, p = model.prf, self.reader.chips.pad
        tx, ty = self.reader.chips.core_w, self.reader.chips.core_h
        gt = self.geotransform
        cx, cy = abs(gt[1]), abs(gt[5])
        dtype = np.dtype(self.out_dtype)
        shape = (self.out_bands, ty, tx)
        results = []
        for chip, valid, (r, c) in zip(arrs, masks, metas):
            x0, y0 = self.locate(prf, r, c)
            xmin, ymax = gt[0] + x0 * cx, gt[3] - y0 * cy
            props = {"pixelType": self.pixel_type, "noData": None if math.isnan(self.nodata) else self.nodata,
                     "width": tx, "height": ty, "cellSize": (cx, cy),
                     "extent": (xmin, ymax - ty * cy, xmin + tx * cx, ymax), "spatialReference": self.crs_wkt}
            told = shape[1:] if self.out_bands == 1 else shape  # Esri: (rows, columns) for a single-band output
            got = model.call(prf.update_pixels, (xmin, ymax), told, props, self.pixel_blocks(chip, valid))
            if "output_pixels" not in got:
                raise CustomFunctionError(f"updatePixels() of '{prf.shown}' did not set "
                                          f"pixelBlocks['output_pixels'] on {prf.where}")
            out = _check_block(prf, "output_pixels", got["output_pixels"], shape, dtype)
            keep = valid[p:p + ty, p:p + tx].copy() if self.inherit_nodata else np.ones((ty, tx), bool)
            if got.get("output_mask") is not None:
                mask = _check_block(prf, "output_mask", got["output_mask"], shape, None)
                keep &= (mask != 0).all(axis=0)
            results.append((out, keep))
        return results

    def start(self, job: BlockJob, context: Any) -> tuple[BlockJob, np.ndarray, np.ndarray]:
        _, _, w, h = job.window
        return job, np.full((self.out_bands, h, w), self.nodata, self.out_dtype), np.zeros((h, w), bool)

    def fold(self, acc: tuple[BlockJob, np.ndarray, np.ndarray], metas: list,
             output: list[tuple[np.ndarray, np.ndarray]]) -> None:
        job, pixels, ok = acc
        jx, jy = job.window[:2]
        for (r, c), (out, keep) in zip(metas, output):
            ox, oy = self.reader.chips.core_origin(r, c)
            x, y, w, h = self.kept(r, c)
            sx, sy = x - ox, y - oy
            pixels[:, y - jy:y - jy + h, x - jx:x - jx + w] = out[:, sy:sy + h, sx:sx + w]
            ok[y - jy:y - jy + h, x - jx:x - jx + w] = keep[sy:sy + h, sx:sx + w]

    def finish(self, acc: tuple[BlockJob, np.ndarray, np.ndarray]) -> PixelBlock:
        job, pixels, ok = acc
        if self.reader.mask is not None:  # NoData outside the polygons (the skipped chips are NoData already)
            ok &= self.reader.mask.pixels(*job.window)
        pixels[:, ~ok] = self.nodata
        counts: dict[int, int] = {}
        if self.count_values:
            uniq, cnt = np.unique(pixels[0][ok], return_counts=True)
            counts = {int(u): int(k) for u, k in zip(uniq.tolist(), cnt.tolist())}
        return PixelBlock(pixels, None, counts)


def run_function_raster(open_source: Callable[[list[int] | None], Any], md: ModelDefinition,
                        prf: PythonRasterFunction, arguments: str | dict | None, output: str,
                        progress: Progress | None = None, scheduler: str = "", retries: int = 2,
                        device: Any = None, mask: Any = None) -> PixelRunResult:
    """Drive ``prf`` over the raster ``open_source(bands)`` returns (see :meth:`FunctionRun.open`) on the block
    engine, as any pixel model: its blocks go to the engine's :class:`PixelSink`, the output is written under a
    temporary name, styled (the definition's Classes, else the attribute table ``updateRasterInfo`` gave) and moved
    onto ``output`` only on success (:func:`core.engine.pixel_outputs.write_outputs`).  With a ``mask``
    (core.raster.mask.GridMask on the source's grid) only the chips touching it are read and given to the
    function, and output pixels outside its polygons are NoData."""
    progress = progress or NullProgress()
    started = time.perf_counter()
    run = FunctionRun.open(prf, md, arguments, open_source, progress)
    run.source.mask = mask
    try:
        out = run.output_info()
        classes = list(md.classes) or classes_from_rat(out.info.get("rasterAttributeTable"))
        given = run.source.parts[0].metadata

        def write(tmp: str, _probabilities: str | None) -> PixelRunResult:
            result = _write(run, out, md, tmp, progress, scheduler, retries, device, started)
            write_key_metadata(run.prf, tmp, out.bands, given)
            return result

        return write_outputs(write, output, None, replace(md, classes=classes), run.source.grid, progress)
    finally:
        run.source.close()


def _write(run: FunctionRun, out: FunctionOutput, md: ModelDefinition, output: str, progress: Progress,
           scheduler: str, retries: int, device: Any, started: float) -> PixelRunResult:
    source, conf, grid = run.source, run.conf, run.source.grid
    task = FunctionPixelTask(reader=run.reader(), input_mask=conf.input_mask, parts=source.parts, out_bands=out.bands,
                             out_dtype=out.dtype.name, nodata=out.nodata, pixel_type=out.info["pixelType"],
                             inherit_nodata=bool(conf.inherit & INHERIT_NODATA),
                             geotransform=tuple(grid.geotransform), crs_wkt=grid.crs_wkt, count_values=out.counted)
    log_mask(task.reader, progress)
    in_bytes = np.dtype(task.reader.dtype).itemsize * source.band_count
    jobs = run.jobs(in_bytes + out.bands * out.dtype.itemsize + 1.0)
    progress.info(run.describe(jobs) + f", {out.bands} band(s) of '{out.info['pixelType']}' out"
                  + (f", batch_size {conf.batch_size} (the function batches itself)" if conf.batch_size else ""))
    model = FunctionModel(run.prf)
    with bounded_gdal_cache():
        sink = PixelSink(BlockWriter(output, grid, out.bands, out.dtype.name, out.nodata), None)
        stats = run_jobs(task, model, jobs, sink, progress, scheduler, retries,
                         lambda: function_model_ref(run.prf, md, run.arguments, device, progress, scheduler,
                                                    out.raster_info))
    return PixelRunResult(
        output=output, probabilities=None, tiles=run.chips.count, batch_size=int(conf.batch_size or 1),
        tile_size=(conf.tx, conf.ty), padding=conf.padding, device=f"the model's Python function '{run.prf.shown}'",
        seconds=time.perf_counter() - started, model_seconds=model.model_seconds + stats.model_seconds,
        pixels=grid.width * grid.height, output_values=sorted(sink.counts),
        nodata=None if math.isnan(out.nodata) or not out.counted else out.nodata, pixel_counts=sink.counts,
        blocks=len(jobs), edge_fill=run.edge_fill, workers=stats.workers)


def _resampled(source: FunctionSource) -> bool:
    """Whether any raster the source reads is resampled (warped) to the processing grid."""
    inner = source.source
    return any(bool(getattr(s, "warped", False)) for s in [inner, *getattr(inner, "sources", [])])


def write_key_metadata(prf: PythonRasterFunction, path: str, bands: int, given: dict[str, Any]) -> None:
    """``updateKeyMetadata`` (optional) for the dataset (band index -1, starting from the first input's key metadata
    ``given``) and each band, written as the output GeoTIFF's metadata."""
    from osgeo import gdal

    if not callable(getattr(prf.obj, "updateKeyMetadata", None)):
        return
    ds = gdal.Open(path, gdal.GA_Update)
    try:
        for index in range(-1, bands):
            meta = prf.key_metadata(index, dict(given) if index == -1 else {})
            target = ds if index == -1 else ds.GetRasterBand(index + 1)
            target.SetMetadata({str(k): str(v) for k, v in meta.items() if v is not None})
    finally:
        ds = None


class _PartView:
    """A source's grid and type with one part's band count: what ``<name>_info`` describes."""

    def __init__(self, source: FunctionSource, bands: int) -> None:
        self.grid, self.dtype, self.band_count = source.grid, source.dtype, bands


def custom_classify_pixels(raster: str, md: ModelDefinition, output: str, arguments: str | dict | None,
                           grid: Any, device: Any, progress: Progress, allowed: bool, scheduler: str = "",
                           retries: int = 2, mask: Any = None) -> PixelRunResult:
    """Classify Pixels with the model's function on ``grid`` (the processing grid of ``raster``), inside ``mask``
    (a GridMask on ``grid``) when given."""
    prf = PythonRasterFunction(md, allowed, device, progress)
    return run_function_raster(raster_bands(raster, md, prf.shown, prf.rasters()[0], grid), md, prf, arguments,
                               output, progress, scheduler, retries, device, mask)


def custom_detect_change(sources: list[Any], stack: Callable[[list[Any], list[int]], Any], md: ModelDefinition,
                         output: str, arguments: str | dict | None, device: Any, progress: Progress,
                         allowed: bool, scheduler: str = "", retries: int = 2, mask: Any = None) -> PixelRunResult:
    """Detect Change with the model's function: the two dates fill its first two raster parameters, or its one
    raster parameter holds the from-bands then the to-bands (:func:`.sources.stacked_dates`).

    ``stack(sources, picks)`` reads the dates as one stack of bands (the tool's own StackedSource).
    """
    prf = PythonRasterFunction(md, allowed, device, progress)
    rasters = prf.rasters()
    prf.tool_inputs = min(2, len(rasters))
    return run_function_raster(stacked_dates(sources, stack, md, prf.shown, rasters), md, prf, arguments, output,
                               progress, scheduler, retries, device, mask)

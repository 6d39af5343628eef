# SPDX-License-Identifier: GPL-2.0-or-later
"""The pixel engine behind Classify Pixels and Detect Change, on the block engine (:mod:`core.engine.blocks`).

The output is cut into blocks of a few chips on a side (:func:`core.engine.blocks.chips_per_block`); a block job reads
its window with the padding halo (mirrored past the raster's edge, :mod:`core.raster.grid`), zeroes NoData pixels,
normalises, runs the model on its chips in batches and returns a class block (and a probability block).
:class:`PixelTask` is that job, picklable, so the same blocks run in-process (a reader thread, the model, a
writer thread: :func:`core.engine.blocks.run_in_process`) or on a Dask cluster (:mod:`core.engine.cluster`).  Blocks are
written wherever they belong, in any order, by :class:`PixelSink`.

Memory is bounded by the block size, the bands and the blocks in flight, never by the raster's width or height.
Cancelling, or any error, stops the run and aborts the writers; the caller's
:class:`~core.safe_output.OutputSet` then leaves what was there before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..backends import Backend, DeviceRequest, open_backend
from ..backends.base import Deferred
from ..errors import InputDataError
from ..model.definition import ModelDefinition
from ..progress import NullProgress, Progress
from ..raster.gdal_io import BlockWriter, bounded_gdal_cache, smallest_type
from ..raster.grid import TileGrid
from . import augment
from .blocks import BlockJob, block_jobs, chips_per_block, run_in_process
from .contract import ModelContract, decide_contract
from .normalize import Normaliser
from .pixel_decoder import PixelDecoder
from .tile_reader import PixelSource, TileReader, log_mask

#: Bytes of class indices that may wait between the model and the writer (see PixelTask.output_queue_depth).
OUTPUT_QUEUE_BYTES = 8 * 1024 * 1024


@dataclass
class PixelRunResult:
    output: str
    probabilities: str | None
    tiles: int
    batch_size: int
    tile_size: tuple[int, int]
    padding: int
    device: str
    seconds: float
    model_seconds: float
    pixels: int
    output_values: list[int]
    nodata: float | None
    pixel_counts: dict[int, int] = field(default_factory=dict)
    blocks: int = 0
    edge_fill: str = "mirror"
    workers: int = 0  # cluster workers that ran blocks (0: in-process)
    #: valid pixels written as NoData because the model's scores there were NaN or infinite
    nonfinite: int = 0
    #: class values the model returned that are not in Classes (written as NoData), with their pixel counts
    unknown_values: dict[int, int] = field(default_factory=dict)


def call_model(backend: Backend, arr: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Feed [B, C, H, W] chips to the model as its contract says (NHWC, two inputs); its first output as
    [B, C, h, w]."""
    return contract.output_nchw(backend.run(contract.feeds(arr))[0])


def hann_window(h: int, w: int) -> np.ndarray:
    """A 2-D Hann-shaped weight that is never zero (sampled at pixel centres)."""
    wy = np.sin(np.pi * (np.arange(h) + 0.5) / h) ** 2
    wx = np.sin(np.pi * (np.arange(w) + 0.5) / w) ** 2
    return (wy[:, None] * wx[None, :]).astype(np.float32)




@dataclass
class PixelBlock:
    """A finished block: class (or regression) values, probabilities, and the count of each class value."""

    classes: np.ndarray  # [bands, h, w] in the output type, NoData where invalid
    probabilities: np.ndarray | None  # [bands, h, w] float32, NaN where invalid
    counts: dict[int, int]
    nonfinite: int = 0  # valid pixels whose scores were NaN/Inf: written as NoData
    unknown: dict[int, int] = field(default_factory=dict)  # class values not in Classes: written as NoData


def nonfinite_pixels(raw: np.ndarray) -> np.ndarray | None:
    """[B, h, w] True where any channel of a float model output [B, C, h, w] (or [B, h, w]) is NaN or infinite;
    None when every value is finite (the common case costs one check)."""
    if raw.dtype.kind != "f":
        return None
    if np.isfinite(raw.sum(dtype=raw.dtype)):  # no NaN or infinity anywhere (one pass, no [B, C, h, w] mask)
        return None
    finite = np.isfinite(raw)  # a NaN or infinity, or finite scores whose sum overflowed: look pixel by pixel
    if finite.all():
        return None
    return ~(finite.all(axis=1) if raw.ndim == 4 else finite)


class _Acc:
    __slots__ = ("job", "valid", "idx", "probs", "acc", "wsum", "bad")

    def __init__(self, job: BlockJob, valid: np.ndarray) -> None:
        self.job = job
        self.valid = valid
        self.idx = self.probs = self.acc = self.wsum = None
        self.bad: np.ndarray | None = None  # pixels whose raw scores were not finite


@dataclass(frozen=True)
class PixelPlan:
    """What a pixel run makes of the model's output, decided once per run from its probe output and the
    arguments (the model's own side is the :class:`~core.engine.contract.ModelContract`)."""

    need_probs: bool  # probabilities are needed (TTA, blend, a probability raster, a regression)
    split: bool  # classes from the raw scores, probabilities beside them (only written)
    blend: bool  # tiles blended with a Hann window instead of cut
    tta: bool  # the contract's transforms are applied (the model returns scores)
    crop: int  # pixels cut off each side of the model's output tile
    out_h: int
    out_w: int
    out_channels: int
    out_dtype: str
    nodata: float
    write_probabilities: bool
    #: the model's runtime returns class indices (an arg-max appended to an ONNX graph), not scores to decode
    indices_in_model: bool = False
    #: rows and columns the graph cut off each side of the tile before its arg-max (the output's padding)
    index_offset: int = 0


@dataclass(frozen=True)
class ClassIndices:
    """One batch's class indices ``[B, h, w]`` as the model's runtime computed them (see
    :attr:`PixelPlan.indices_in_model`), as opposed to raw scores, which the writer stage decodes."""

    indices: np.ndarray


@dataclass
class PixelTask:
    """One pixel-model block job (see :class:`core.engine.blocks.BlockTask`): picklable settings, no open handles."""

    source: Any
    chips: TileGrid
    normaliser: Normaliser | None
    decoder: PixelDecoder
    contract: ModelContract
    plan: PixelPlan

    # ------------------------------------------------------------------ the model call
    def model_call(self, backend: Backend, arr: np.ndarray) -> np.ndarray:
        return call_model(backend, arr, self.contract)

    @property
    def transforms(self) -> tuple[int, ...]:
        return self.contract.transforms if self.plan.tta else (0,)

    def infer_deferred(self, backend: Backend, arr: np.ndarray) -> Deferred:
        """:meth:`infer` for the engine's model thread: raw scores may still be on their way from the GPU when this
        returns (the writer waits for them); merged probabilities need them at once and are computed here."""
        if self.plan.indices_in_model:
            return Deferred.done(self.infer(backend, arr))
        if not self.plan.need_probs or self.plan.split:
            return backend.run_deferred(self.contract.feeds(arr)).then(
                lambda outs: self.contract.output_nchw(outs[0]))
        return Deferred.done(self.infer(backend, arr))

    def infer(self, backend: Backend, arr: np.ndarray) -> np.ndarray:
        """Raw scores (decoded by the writer stage, off the model's critical path), merged probabilities, or the
        class indices the model's runtime computed (raw scores for a batch with a NaN or infinite score)."""
        if self.plan.indices_in_model:
            indices = backend.run_class_indices(self.contract.feeds(arr))
            return ClassIndices(indices) if indices is not None else self.model_call(backend, arr)
        if not self.plan.need_probs or self.plan.split:
            return self.model_call(backend, arr)
        stack = []
        for k in self.transforms:
            raw = self.model_call(backend, augment.forward(arr, k) if k else arr)
            probs = self.decoder.probabilities(raw)
            bad = nonfinite_pixels(raw)
            if bad is not None:  # NaN through the merge and the blend, so the pixel ends as NoData
                probs = np.array(probs, np.float32, copy=True)
                np.moveaxis(probs, 1, 0)[:, bad] = np.nan
            stack.append(augment.inverse(probs, k) if k else probs)
        return stack[0] if len(stack) == 1 else augment.merge(stack, self.contract.merge_policy)

    # ------------------------------------------------------------------ which chips a block needs
    def _span(self, lo: int, hi: int, n: int, origin, core: int, out: int) -> range:
        """Chip indices along one axis whose output (blend) reaches output pixels [lo, hi)."""
        first = max(0, lo // core - self.plan.crop // core - 3)
        last = min(n, (hi - 1) // core + self.plan.crop // core + 4)
        keep = [i for i in range(first, last) if origin(i) - self.plan.crop < hi and origin(i) - self.plan.crop + out > lo]
        return range(keep[0], keep[-1] + 1)

    def _row_origin(self, r: int) -> int:
        return self.chips.core_origin(r, 0)[1]

    def _col_origin(self, c: int) -> int:
        return self.chips.core_origin(0, c)[0]

    def chip_ranges(self, job: BlockJob) -> tuple[range, range]:
        if not self.plan.blend:
            return range(*job.rows), range(*job.cols)
        x, y, w, h = job.window
        return (self._span(y, y + h, self.chips.rows, self._row_origin, self.chips.core_h, self.plan.out_h),
                self._span(x, x + w, self.chips.cols, self._col_origin, self.chips.core_w, self.plan.out_w))

    def units(self, job: BlockJob) -> int:
        rows, cols = self.chip_ranges(job)
        return len(self.reader.needed(rows, cols)) if self.reader.mask is not None else len(rows) * len(cols)

    @property
    def output_queue_depth(self) -> int:
        """Model outputs that may wait for the writer (:func:`core.engine.blocks.run_in_process`): class indices
        (one byte per pixel) take :data:`OUTPUT_QUEUE_BYTES` together, at most 64 batches, so the model goes on
        while the writer finishes and writes a block (two batches of a cheap model did not cover that: make bench
        io-8192, the model thread waited 1.6 s for room); scores keep the engine's two."""
        if not self.plan.indices_in_model:
            return 0
        per_batch = self.contract.batch_size * self.plan.out_h * self.plan.out_w * np.dtype(self.index_dtype).itemsize
        return min(64, OUTPUT_QUEUE_BYTES // max(per_batch, 1))

    # ------------------------------------------------------------------ reader stage
    @property
    def reader(self) -> TileReader:
        return TileReader(self.source, self.chips, self.normaliser, self.contract.batch_size, self.contract.channels)

    def load(self, job: BlockJob):
        rows, cols = self.chip_ranges(job)
        data, valid, wx0, wy0 = self.reader.read(rows, cols)
        jx, jy, jw, jh = job.window
        context = valid[jy - wy0:jy - wy0 + jh, jx - wx0:jx - wx0 + jw].copy()
        if self.reader.mask is not None:  # NoData outside the polygons; the tiles' context is read as without it
            context &= self.reader.mask.pixels(jx, jy, jw, jh)
        return context, self.reader.batches(data, valid, rows, cols, wx0, wy0)

    # ------------------------------------------------------------------ writer stage
    @property
    def index_dtype(self):
        lut = getattr(self.decoder, "lut", None)
        if self.decoder.mode == "values":
            return np.int64
        return np.uint8 if lut is not None and len(lut) <= 256 else np.int32

    def start(self, job: BlockJob, valid: np.ndarray) -> _Acc:
        acc = _Acc(job, valid)
        _, _, w, h = job.window
        if self.plan.blend:
            acc.acc = np.zeros((self.plan.out_channels, h, w), np.float32)
            acc.wsum = np.zeros((h, w), np.float32)
        else:
            if self.plan.split or not self.plan.need_probs:
                acc.idx = np.zeros((h, w), self.index_dtype)
            if self.plan.need_probs:
                acc.probs = np.zeros((self.plan.out_channels, h, w), np.float32)
        return acc

    def fold(self, acc: _Acc, metas: list, output: np.ndarray) -> None:
        decoder, crop = self.decoder, self.plan.crop
        bad, shift = None, 0
        if isinstance(output, ClassIndices):  # decoded by the model's runtime, every score finite
            result, shift = output.indices, self.plan.index_offset
        elif not self.plan.need_probs:
            result = decoder.indices_from_raw(output)
            bad = nonfinite_pixels(output)
        elif self.plan.split:
            result = (decoder.indices_from_raw(output), decoder.probabilities(output))
            bad = nonfinite_pixels(output)
        else:
            result = output
        if bad is not None and acc.bad is None:
            acc.bad = np.zeros(acc.valid.shape, bool)
        jx, jy, jw, jh = acc.job.window
        for b, (r, c) in enumerate(metas):
            ox, oy = self.chips.core_origin(r, c)
            if self.plan.blend:
                # chip output pixel (0, 0) is grid pixel (ox - crop, oy - crop); add the part inside the block
                gx0, gy0 = ox - crop, oy - crop
                x0, x1 = max(gx0, jx), min(gx0 + self.plan.out_w, jx + jw)
                y0, y1 = max(gy0, jy), min(gy0 + self.plan.out_h, jy + jh)
                if x0 >= x1 or y0 >= y1:
                    continue
                sy, sx = slice(y0 - gy0, y1 - gy0), slice(x0 - gx0, x1 - gx0)
                window = self._window()[sy, sx]
                acc.acc[:, y0 - jy:y1 - jy, x0 - jx:x1 - jx] += result[b][:, sy, sx] * window
                acc.wsum[y0 - jy:y1 - jy, x0 - jx:x1 - jx] += window
                continue
            x, y, w, h = self.chips.core_window(r, c)
            sy, sx = y - oy + crop, x - ox + crop
            dy, dx = y - jy, x - jx
            if bad is not None:
                acc.bad[dy:dy + h, dx:dx + w] = bad[b][sy:sy + h, sx:sx + w]
            if self.plan.need_probs:
                probs_b = result[1][b] if self.plan.split else result[b]
                acc.probs[:, dy:dy + h, dx:dx + w] = probs_b[:, sy:sy + h, sx:sx + w]
                if self.plan.split:
                    acc.idx[dy:dy + h, dx:dx + w] = result[0][b][sy:sy + h, sx:sx + w]
            else:
                acc.idx[dy:dy + h, dx:dx + w] = result[b][sy - shift:sy - shift + h, sx - shift:sx - shift + w]

    def _window(self) -> np.ndarray:
        w = getattr(self, "_hann", None)
        if w is None:
            w = self._hann = hann_window(self.plan.out_h, self.plan.out_w)
        return w

    def _allowed_values(self, values: np.ndarray) -> np.ndarray:
        """Class values a "values" model may write: those in Classes; without Classes, what the output type holds."""
        lut = getattr(self.decoder, "lut", None)
        if lut is not None and len(lut):
            return np.isin(values, lut)
        info = np.iinfo(np.dtype(self.plan.out_dtype))
        return (values >= info.min) & (values <= info.max) & (values != int(self.plan.nodata))

    def finish(self, acc: _Acc) -> PixelBlock:
        decoder = self.decoder
        counts: dict[int, int] = {}
        if self.plan.blend:
            # a pixel no tile reached (a masked run skips tiles) has no weight: 0, and it is NoData
            probs = np.divide(acc.acc, acc.wsum, out=np.zeros_like(acc.acc), where=acc.wsum > 0)
            indices = None
        else:
            probs, indices = acc.probs, acc.idx
            if self.plan.need_probs and not self.plan.split:
                indices = None
        bad = acc.bad
        if probs is not None and (indices is None or decoder.mode == "regression"):
            lost = ~np.isfinite(probs).all(axis=0)  # NaN/Inf scores reached the probabilities (merged or blended)
            bad = lost if bad is None else (bad | lost)
        nonfinite = int((bad & acc.valid).sum()) if bad is not None else 0
        valid = acc.valid & ~bad if bad is not None and nonfinite else acc.valid
        if decoder.mode == "regression":
            vals = probs.copy()
            vals[:, ~valid] = np.nan
            return PixelBlock(vals, None, counts, nonfinite)
        if indices is None:
            indices = decoder.indices_from_probabilities(probs[None])[0]
        lut = getattr(decoder, "lut", None)
        unknown: dict[int, int] = {}
        if decoder.mode == "values":
            values = indices.astype(np.int64)
            allowed = self._allowed_values(values)
            if not allowed[valid].all():  # never wrapped into the output type: NoData, and counted
                wrong = valid & ~allowed
                uniq, cnt = np.unique(values[wrong], return_counts=True)
                unknown = {int(u): int(k) for u, k in zip(uniq.tolist(), cnt.tolist())}
                valid = valid & allowed
            uniq, cnt = np.unique(values[valid], return_counts=True)
            counts = {int(u): int(k) for u, k in zip(uniq.tolist(), cnt.tolist())}
            out = np.where(valid, values, 0).astype(self.plan.out_dtype)
        else:
            everywhere = bool(valid.all())  # the common case: no mask to apply, no copy of the indices
            binc = np.bincount((indices if everywhere else indices[valid]).ravel(), minlength=len(lut))
            for i, k in enumerate(binc.tolist()):
                if k:
                    counts[int(lut[i])] = counts.get(int(lut[i]), 0) + k
            out = lut.astype(self.plan.out_dtype)[indices]
        if not valid.all():
            out[~valid] = self.plan.nodata
        prob_block = None
        if self.plan.write_probabilities:
            prob_block = decoder.probability_bands(probs[None])[0].astype(np.float32)
            prob_block[:, ~valid] = np.nan
        return PixelBlock(out[None], prob_block, counts, nonfinite, unknown)


class PixelSink:
    """Writes finished :class:`PixelBlock` s into the class (and probability) GeoTIFF, in any order."""

    def __init__(self, classes: BlockWriter, probabilities: BlockWriter | None) -> None:
        self.classes = classes
        self.probabilities = probabilities
        self.counts: dict[int, int] = {}
        self.nonfinite = 0
        self.unknown: dict[int, int] = {}
        self.blocks = 0

    def write(self, job: BlockJob, block: PixelBlock) -> None:
        x, y, _, _ = job.window
        self.classes.write_block(x, y, block.classes)
        if self.probabilities is not None and block.probabilities is not None:
            self.probabilities.write_block(x, y, block.probabilities)
        for k, v in block.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.nonfinite += block.nonfinite
        for k, v in block.unknown.items():
            self.unknown[k] = self.unknown.get(k, 0) + v
        self.blocks += 1

    def close(self) -> None:
        self.classes.close()
        if self.probabilities is not None:
            self.probabilities.close()

    def abort(self) -> None:
        self.classes.abort()
        if self.probabilities is not None:
            self.probabilities.abort()


def run_pixel_model(source: PixelSource, md: ModelDefinition, args: dict, output: str,
                    probabilities_output: str | None = None, device: DeviceRequest | None = None,
                    progress: Progress | None = None, normaliser: Normaliser | None = None,
                    backend: Backend | None = None, binary_change: bool = False, scheduler: str = "",
                    retries: int = 2) -> PixelRunResult:
    """Run a pixel model over ``source`` and write the class (and probability) rasters.

    ``scheduler``: empty = in-process; ``local`` / ``local:N`` / ``tcp://host:port`` = a Dask cluster
    (:mod:`core.engine.cluster`), each failed block retried ``retries`` times.
    """
    progress = progress or NullProgress()
    device = device or DeviceRequest()
    started = time.perf_counter()
    own_backend = backend is None
    model_file = md.require_model_file()
    if backend is None:
        backend = open_backend(model_file, md.model_format_kind or "onnx", device, progress, definition=md.raw,
                               trust=md.code_trust)
    try:
        with bounded_gdal_cache():
            return _run(source, md, args, output, probabilities_output, progress, normaliser, backend, started,
                        binary_change, scheduler, retries, device, model_file)
    finally:
        if own_backend:
            backend.close()


def _run(source: PixelSource, md: ModelDefinition, args: dict, output: str, probabilities_output: str | None,
         progress: Progress, normaliser: Normaliser | None, backend: Backend, started: float,
         binary_change: bool, scheduler: str, retries: int, device: DeviceRequest, model_file) -> PixelRunResult:
    grid = source.grid
    contract = decide_contract(md, args, "detect_change" if binary_change else "classify_pixels",
                               inputs=backend.inputs, outputs=backend.outputs, channels=source.band_count)
    if contract.batch.why:
        progress.info(contract.batch.log_line())
    early = None if scheduler else _class_indices_before_probing(backend, md, args, contract, probabilities_output)
    probe, model_pad = _probe(backend, contract, md)
    pad = max(int(args.get("padding", 0)), model_pad)
    chips = TileGrid(grid.width, grid.height, contract.tile_height, contract.tile_width, pad,
                     str(args.get("edge_fill") or "mirror"))
    decoder = PixelDecoder(md, args, probe.shape[1] if probe.ndim == 4 else 1, probe.dtype.kind in "iub")
    if binary_change:
        decoder.collapse_to_binary()
    call_seconds = 0.0
    if decoder.mode not in ("regression", "values"):
        # Logits or probabilities is the model's property: judged once, on the contract's probe inputs
        before = backend.model_seconds
        decoder.calibrate([probe] + [call_model(backend, x, contract) for x in contract.probe_inputs()[1:]])
        call_seconds = backend.model_seconds - before
    plan = _plan(args, contract, decoder, probe, pad - model_pad, probabilities_output, progress)
    threads, per_pixel = _threads_for_a_cheap_model(backend, contract, call_seconds, device)
    offset = None if scheduler else _indices_in_model(backend, contract, decoder, plan, probe, threads, early)
    if offset is not None:
        plan = replace(plan, indices_in_model=True, index_offset=offset)
        if threads:
            progress.info(f"The model costs about as much as reading and writing its tiles ({1e9 * per_pixel:.0f} ns "
                          "per pixel), so ONNX Runtime runs it on one thread and the other cores read and write "
                          "('threads' sets it)")
    task = PixelTask(source=source, chips=chips, normaliser=normaliser, decoder=decoder, contract=contract,
                     plan=plan)
    jobs, per_block = _jobs(task, args)
    _log_setup(task, jobs, per_block, pad, backend, progress)
    sink = _sink(task, output, probabilities_output, grid)
    workers, cluster_model_seconds = 0, 0.0
    if scheduler:
        from .cluster import ModelRef, run_on_cluster

        ref = ModelRef.for_file(model_file, md.model_format_kind or "onnx", device, definition=md.raw,
                                trust=md.code_trust)
        stats = run_on_cluster(task, ref, jobs, sink, progress, scheduler, retries)
        workers, cluster_model_seconds = stats.workers, stats.model_seconds
    else:
        run_in_process(task, backend, jobs, sink, progress)
    return PixelRunResult(
        output=output, probabilities=probabilities_output, tiles=chips.count, batch_size=contract.batch_size,
        tile_size=(contract.tile_width, contract.tile_height), padding=pad, device=backend.describe(),
        seconds=time.perf_counter() - started, model_seconds=backend.model_seconds + cluster_model_seconds,
        pixels=grid.width * grid.height, output_values=decoder.output_values,
        nodata=None if decoder.mode == "regression" else plan.nodata, pixel_counts=sink.counts, blocks=len(jobs),
        edge_fill=chips.edge_fill, workers=workers, nonfinite=sink.nonfinite, unknown_values=sink.unknown)


def _probe(backend: Backend, contract: ModelContract, md: ModelDefinition) -> tuple[np.ndarray, int]:
    """The model's output on the contract's zero probe, and the padding it cuts off itself (ModelPadding)."""
    probe = call_model(backend, contract.probe_inputs()[0], contract)
    if probe.ndim == 4:
        out_h, out_w = probe.shape[2:]
    elif probe.ndim == 3:
        out_h, out_w = probe.shape[1:]
    else:
        raise InputDataError(f"The model returns an output of shape {list(probe.shape)}; a pixel model must return "
                             "[batch, channels, height, width] or [batch, height, width]")
    tile_h, tile_w = contract.tile_height, contract.tile_width
    if (out_h, out_w) == (tile_h, tile_w):
        model_pad = 0
    elif tile_h - out_h == tile_w - out_w and (tile_h - out_h) % 2 == 0 and 0 < out_h < tile_h:
        model_pad = (tile_h - out_h) // 2
    else:
        raise InputDataError(
            f"The model returns {out_w}x{out_h} tiles from {tile_w}x{tile_h} input: only the same size or a centred "
            "crop (ModelPadding) can be stitched")
    if md.model_padding and md.model_padding != model_pad:
        raise InputDataError(f"ModelPadding is {md.model_padding} but the model returns {out_w}x{out_h} from "
                             f"{tile_w}x{tile_h} (a padding of {model_pad}): fix ModelPadding")
    return probe, model_pad


def _plan(args: dict, contract: ModelContract, decoder: PixelDecoder, probe: np.ndarray, crop: int,
          probabilities_output: str | None, progress: Progress) -> PixelPlan:
    """What the run makes of the model's scores: TTA, blending, probabilities, the output type."""
    out_channels = probe.shape[1] if probe.ndim == 4 else 1
    out_h, out_w = probe.shape[-2:]
    tta = contract.test_time_augmentation and decoder.writes_probabilities  # the contract's transforms, on scores
    blend = bool(args.get("blend")) and decoder.writes_probabilities
    if args.get("blend") and not decoder.writes_probabilities:
        progress.warning("blend needs probabilities; this model returns class values, so tiles are cut, not blended")
    need_probs = tta or blend or probabilities_output is not None or decoder.mode == "regression"
    # Probabilities only to be written: the classes still come from the raw scores, as without them (a float32
    # softmax can round close scores to a tie, and asking for probabilities must not change a class).
    split = need_probs and not (tta or blend) and decoder.mode != "regression"
    if decoder.mode == "regression":
        out_dtype, nodata = "float32", float("nan")
    else:
        out_dtype, nodata = smallest_type(decoder.output_values or [0])
    if probabilities_output is not None and decoder.mode == "values":
        raise InputDataError("This model returns class values, not scores: there are no probabilities to write")
    return PixelPlan(need_probs=need_probs, split=split, blend=blend, tta=tta, crop=crop, out_h=int(out_h),
                     out_w=int(out_w), out_channels=int(out_channels), out_dtype=out_dtype, nodata=nodata,
                     write_probabilities=probabilities_output is not None and decoder.mode != "regression")


#: Seconds per tile pixel of one model call below which the model costs no more than reading, decoding and
#: writing that pixel (make bench io-8192 on two cores: about 8 ns to read, 5 to hand on and 9 to compress per
#: pixel; the bench's 1 x 1 convolution 5 ns and its arg-max 6; the small U-Net about 500): ONNX Runtime then
#: runs it on one thread, as a second one would take the core the reader and writer need and cost a wake-up
#: per call (one thread: 0.70 ms of CPU per tile against 0.80 with two, and less wall time, on the loaded machine).
CHEAP_SECONDS_PER_PIXEL = 25e-9
#: ... and per call, for the engine's own handling of each batch (queues, copies, the calls themselves: about 0.1 ms)
CHEAP_SECONDS_PER_CALL = 1e-4


def _probe_pixels(contract: ModelContract) -> int:
    return contract.probe_batch * contract.tile_height * contract.tile_width


def _threads_for_a_cheap_model(backend: Backend, contract: ModelContract, call_seconds: float,
                               device: DeviceRequest) -> tuple[int, float]:
    """(1 where the model is as cheap as the I/O around it, else 0: as opened; its seconds per pixel).  Judged
    on the calibration call and, where that was under 10 times the limit (:data:`CHEAP_SECONDS_PER_PIXEL` per pixel
    and :data:`CHEAP_SECONDS_PER_CALL`), the best of two more (a busy machine only makes a call slower: a costly
    model never looks cheap).  0 where the user set ``threads`` or the model runs on a GPU."""
    pixels = _probe_pixels(contract)
    if device.threads or call_seconds <= 0 or not backend.device.startswith("cpu"):
        return 0, call_seconds / pixels
    limit = CHEAP_SECONDS_PER_PIXEL * pixels + CHEAP_SECONDS_PER_CALL
    for _ in range(2):
        if not limit <= call_seconds < 10 * limit:
            break
        before = backend.model_seconds  # another look at a cheap model the machine may have slowed
        call_model(backend, contract.probe_inputs()[1], contract)
        call_seconds = min(call_seconds, backend.model_seconds - before)
    return (1 if call_seconds < limit else 0), call_seconds / pixels


def _indices_in_model(backend: Backend, contract: ModelContract, decoder: PixelDecoder, plan: PixelPlan,
                      probe: np.ndarray, threads: int = 0, early: tuple | None = None) -> int | None:
    """Whether the model's runtime computes the class map's arg-max (:meth:`Backend.use_class_indices`): only for
    a class map alone from float32 class scores (no probabilities, TTA or blending, which need the scores, and not
    for a sigmoid's threshold); in-process only (a cluster's workers open the model as it is).  ``early``: what
    :func:`_class_indices_before_probing` asked for, used as it is when the probe agrees and no thread count
    changes (making the session again after calls had filled its memory cost the small U-Net 24 MB of peak).
    Returns the rows and columns cut off each side of a tile before the arg-max (:func:`_keep`), or None: not."""
    if plan.need_probs or decoder.mode not in ("softmax", "background") or probe.ndim != 4 \
            or probe.dtype != np.float32:
        return None
    keep = _keep(plan.crop, plan.out_h, plan.out_w)
    wanted = (int(probe.shape[1]), tuple(decoder.suppressed), keep)
    if early == wanted and not threads:
        return plan.crop if keep else 0
    if backend.use_class_indices(0, 3 if contract.nhwc else 1, 4, wanted[0], decoder.suppressed, threads, keep):
        return plan.crop if keep else 0
    return None


def _keep(crop: int, out_h: int, out_w: int) -> tuple[int, int, int, int] | None:
    """The part of a tile's output that is written (its centre, ``crop`` pixels in from each side): the arg-max
    and the NaN check skip the rest (the bench's 256-pixel tiles with padding 32: 44 % of the pixels)."""
    if crop <= 0 or out_h <= 2 * crop or out_w <= 2 * crop:
        return None
    return crop, out_h - crop, crop, out_w - crop


def _class_indices_before_probing(backend: Backend, md: ModelDefinition, args: dict, contract: ModelContract,
                                  probabilities_output: str | None) -> tuple | None:
    """The graph's arg-max asked for before the first model call, from what the model declares (float32 scores
    with a fixed channel count) and the arguments (a class map alone): the session is then made again while it
    holds no working memory yet.  (channels, suppressed classes, kept part) asked for, or None; the probe confirms it
    (:func:`_indices_in_model`), and a model whose probe disagrees simply has unused nodes."""
    out = backend.outputs[0] if backend.outputs else None
    if out is None or out.dtype != "float32" or len(out.shape) != 4 or probabilities_output is not None \
            or args.get("blend") or contract.test_time_augmentation:
        return None
    channels = out.shape[3 if contract.nhwc else 1]
    if not channels:
        return None
    try:
        decoder = PixelDecoder(md, args, channels, integer_output=False)
    except InputDataError:  # the probe says it again, with the shape the model really returns
        return None
    if decoder.mode not in ("softmax", "background"):
        return None
    # the crop as it will be where the model returns tiles of the input's size (no ModelPadding; the probe says)
    keep = _keep(int(args.get("padding", 0)), contract.tile_height, contract.tile_width)
    if not backend.use_class_indices(0, 3 if contract.nhwc else 1, 4, channels, decoder.suppressed, keep=keep):
        return None
    return channels, tuple(decoder.suppressed), keep


def _probability_bands(task: PixelTask) -> int:
    if not task.plan.write_probabilities:
        return 0
    return task.decoder.probability_bands(np.zeros((1, task.plan.out_channels, 1, 1), np.float32)).shape[1]


def _jobs(task: PixelTask, args: dict) -> tuple[list[BlockJob], tuple[int, int]]:
    """The run's blocks, sized by what a block holds per output pixel: the window (float32 chips), the
    accumulators and the result."""
    plan, channels = task.plan, task.contract.channels
    prob_bands = _probability_bands(task)
    per_pixel = 4.0 * channels + 8 + (4.0 * plan.out_channels * (2 if plan.blend else 1) + 4 * prob_bands
                                      if plan.need_probs else 0)
    per_block = chips_per_block(task.chips, per_pixel, int(args.get("block_size") or 0), task.contract.batch_size)
    return block_jobs(task.chips, per_block), per_block


def _log_setup(task: PixelTask, jobs: list[BlockJob], per_block: tuple[int, int], pad: int, backend: Backend,
               progress: Progress) -> None:
    chips, contract, grid = task.chips, task.contract, task.source.grid
    progress.info(
        f"Tiles: {chips.count} ({chips.cols} x {chips.rows}) of {contract.tile_width}x{contract.tile_height} pixels "
        f"with padding {pad}, batch size {contract.batch_size}, device {backend.describe()}"
        + (contract.augmentation_text() if task.plan.tta else "") + (", blended" if task.plan.blend else ""))
    if task.plan.indices_in_model:
        progress.info("Classes: the arg-max over the class scores runs inside the model's runtime (the scores stay "
                      "there; a tile with a NaN or infinite score is decoded from its scores)")
    bw, bh = min(per_block[1] * chips.core_w, grid.width), min(per_block[0] * chips.core_h, grid.height)
    progress.info(f"Blocks: {len(jobs)} of up to {bw} x {bh} pixels ({per_block[1]} x {per_block[0]} tiles); "
                  f"edges {'mirrored' if chips.mirrored else 'zero-filled'}")
    if task.normaliser is not None:
        progress.info(f"Normalisation: {task.normaliser.description}")
    log_mask(task.reader, progress)


def _sink(task: PixelTask, output: str, probabilities_output: str | None, grid) -> PixelSink:
    """The class (and probability) writers, under their temporary names."""
    plan, decoder = task.plan, task.decoder
    if decoder.mode == "regression":
        out_bands, out_names = plan.out_channels, decoder.prob_names
    else:
        out_bands, out_names = 1, ["class"]
    class_writer = BlockWriter(output, grid, out_bands, plan.out_dtype, plan.nodata, out_names)
    prob_writer = None
    prob_bands = _probability_bands(task)
    try:
        if prob_bands:
            prob_writer = BlockWriter(probabilities_output, grid, prob_bands, "float32", float("nan"),
                                      decoder.prob_names[:prob_bands])
    except BaseException:
        class_writer.abort()
        raise
    return PixelSink(class_writer, prob_writer)

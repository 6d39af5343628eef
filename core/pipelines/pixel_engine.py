# SPDX-License-Identifier: GPL-2.0-or-later
"""The streaming engine behind Classify Pixels and Detect Change.

Three stages run at once, so reading and writing hide behind the model:

* a **reader** thread reads one full-width strip of chips at a time (the chip
  height plus context), cuts it into chips, zeroes NoData pixels, normalises and
  groups chips into batches;
* the **caller's thread** runs the model on each batch (ONNX Runtime and torch
  release the GIL while they compute);
* a **writer** thread decodes outputs (arg-max, probabilities, test-time
  augmentation, blending), stitches chip centres into row strips and writes them.

At most two batches wait between stages, so memory is bounded by the batch size,
the tile size and the raster's width, never by its height.  Cancelling, or any
error, stops all three and deletes the partial outputs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import augment
from ..arguments import square_batch_size
from ..backends import Backend, DeviceRequest, open_backend
from ..decoders.pixel_classes import PixelDecoder
from ..errors import CancelledError, InputDataError
from ..model_definition import ModelDefinition
from ..normalize import Normaliser
from ..progress import NullProgress, Progress
from ..raster_io import RasterGrid, StripWriter, bounded_gdal_cache, smallest_type
from ..tiling import ChipGrid

_QUEUE_DEPTH = 2
_POLL = 0.1


class PixelSource:
    """What the engine reads: windows of stacked model bands on one grid."""

    grid: RasterGrid
    dtype: str
    band_count: int
    has_mask: bool

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


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

    @property
    def overhead_ratio(self) -> float:
        return self.seconds / self.model_seconds if self.model_seconds else float("inf")


class _Stop(Exception):
    pass


class _Stage(threading.Thread):
    """A worker thread whose exception is handed back to the caller.

    An error also sets ``stop``, so that a stage blocked on a queue this one no
    longer serves (the model thread waiting for room the writer will never make)
    gives up instead of waiting forever.
    """

    def __init__(self, target: Callable[[], None], name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Stop:
            pass
        except BaseException as exc:  # handed to the caller thread
            self.error = exc
            self._stop_event.set()


def _put(q: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


def hann_window(h: int, w: int) -> np.ndarray:
    """A 2-D Hann-shaped weight that is never zero (sampled at pixel centres)."""
    wy = np.sin(np.pi * (np.arange(h) + 0.5) / h) ** 2
    wx = np.sin(np.pi * (np.arange(w) + 0.5) / w) ** 2
    return (wy[:, None] * wx[None, :]).astype(np.float32)


def run_pixel_model(source: PixelSource, md: ModelDefinition, args: dict, output: str,
                    probabilities_output: str | None = None, device: DeviceRequest | None = None,
                    progress: Progress | None = None, normaliser: Normaliser | None = None,
                    backend: Backend | None = None, binary_change: bool = False) -> PixelRunResult:
    """Run a pixel model over ``source`` and write the class (and probability) rasters."""
    progress = progress or NullProgress()
    device = device or DeviceRequest()
    started = time.perf_counter()
    own_backend = backend is None
    if backend is None:
        backend = open_backend(md.require_model_file(), md.model_format_kind or "onnx", device, progress)
    try:
        with bounded_gdal_cache():
            return _run(source, md, args, output, probabilities_output, progress, normaliser, backend, started,
                        binary_change)
    finally:
        if own_backend:
            backend.close()


def _run(source: PixelSource, md: ModelDefinition, args: dict, output: str, probabilities_output: str | None,
         progress: Progress, normaliser: Normaliser | None, backend: Backend, started: float,
         binary_change: bool = False) -> PixelRunResult:
    grid = source.grid
    tile_h = tile_w = int(args["tile_size"]) if args.get("tile_size") else None
    if tile_h is None:
        tile_h, tile_w = md.image_height, md.image_width
    assert tile_w is not None
    channels = source.band_count
    n_inputs = len(backend.inputs)
    if n_inputs > 2:
        raise InputDataError(f"The model has {n_inputs} inputs; only one (bands stacked) or two (one per date) are supported")
    if n_inputs == 2 and channels % 2:
        raise InputDataError(f"The model takes two images but {channels} bands were read, which do not split in two")
    per_input = channels // n_inputs
    nhwc = md.model_format == "NHWC"
    declared = backend.inputs[0].shape
    if len(declared) == 4:
        want = declared[3] if nhwc else declared[1]
        if want is not None and want != per_input:
            raise InputDataError(
                f"The model takes {want} bands per image but {per_input} are read (ExtractBands {md.extract_bands}); "
                "fix ExtractBands in the model definition or choose a raster with the right bands")
        want_h, want_w = (declared[1], declared[2]) if nhwc else (declared[2], declared[3])
        if want_h is not None and want_w is not None and (want_h, want_w) != (tile_h, tile_w):
            if md.supports_variable_tile_size or args.get("tile_size"):
                raise InputDataError(f"The model takes {want_w}x{want_h} tiles only; tile_size {tile_w} is not possible")
            raise InputDataError(f"The model takes {want_w}x{want_h} tiles but ImageWidth/ImageHeight say "
                                 f"{tile_w}x{tile_h}: fix the model definition")

    requested = int(args.get("batch_size", 1))
    batch = square_batch_size(requested)
    fixed = backend.fixed_batch
    out_decl = backend.outputs[0].shape if backend.outputs else ()
    if fixed is None and out_decl and out_decl[0] == 1:
        fixed = 1  # any batch goes in, but the output's batch is baked in at 1 (a reshape in the graph)
    if fixed is not None and fixed != batch:
        progress.info(f"The model's batch dimension is fixed at {fixed}: using batch size {fixed}")
        batch = fixed
    elif batch != requested:
        progress.info(f"batch_size {requested} is not a perfect square: using {batch}")

    def model_call(arr: np.ndarray) -> np.ndarray:
        feed = arr.transpose(0, 2, 3, 1) if nhwc else arr
        feeds = [feed] if n_inputs == 1 else ([feed[..., :per_input]] + [feed[..., per_input:]] if nhwc
                                               else [feed[:, :per_input], feed[:, per_input:]])
        out = backend.run(feeds)[0]
        if nhwc and out.ndim == 4:
            out = out.transpose(0, 3, 1, 2)
        return out

    probe = model_call(np.zeros((fixed or 1, channels, tile_h, tile_w), np.float32))
    if probe.ndim == 4:
        out_channels, out_h, out_w = probe.shape[1:]
    elif probe.ndim == 3:
        out_channels, (out_h, out_w) = 1, probe.shape[1:]
    else:
        raise InputDataError(f"The model returns an output of shape {list(probe.shape)}; a pixel model must return "
                             "[batch, channels, height, width] or [batch, height, width]")
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
    pad = max(int(args.get("padding", 0)), model_pad)
    crop = pad - model_pad
    chips = ChipGrid(grid.width, grid.height, tile_h, tile_w, pad)
    decoder = PixelDecoder(md, args, out_channels, probe.dtype.kind in "iub")
    if binary_change:
        decoder.collapse_to_binary()
    if decoder.mode not in ("regression", "values"):
        # Logits or probabilities is the model's property: judge it once, on zeros and on seeded noise of
        # magnitudes 0.1..100, never per batch (the batch size must not change a pixel).
        rng = np.random.default_rng(0)
        shape = (fixed or 1, channels, tile_h, tile_w)
        noise = rng.standard_normal(shape) * 10.0 ** rng.uniform(-1.0, 2.0, shape)
        decoder.calibrate([probe, model_call(noise.astype(np.float32))])
    tta = bool(args.get("test_time_augmentation")) and decoder.writes_probabilities
    blend = bool(args.get("blend")) and decoder.writes_probabilities
    if args.get("blend") and not decoder.writes_probabilities:
        progress.warning("blend needs probabilities; this model returns class values, so tiles are cut, not blended")
    need_probs = tta or blend or probabilities_output is not None or decoder.mode == "regression"
    # Probabilities only to be written: the classes still come from the raw scores, as without them (a float32
    # softmax can round close scores to a tie, and asking for probabilities must not change a class).
    split = need_probs and not (tta or blend) and decoder.mode != "regression"
    transforms = augment.transform_ids(tile_h == tile_w, md.image_space_used.upper() == "MAP_SPACE") if tta else [0]
    merge_policy = str(args.get("merge_policy", "mean"))

    if decoder.mode == "regression":
        out_dtype, nodata = "float32", float("nan")
        out_bands, out_names = out_channels, decoder.prob_names
    else:
        out_dtype, nodata = smallest_type(decoder.output_values or [0])
        out_bands, out_names = 1, ["class"]
    if probabilities_output is not None and decoder.mode == "values":
        raise InputDataError("This model returns class values, not scores: there are no probabilities to write")
    class_writer = StripWriter(output, grid, out_bands, out_dtype, nodata, out_names)
    prob_writer = None
    try:
        if probabilities_output is not None and decoder.mode != "regression":
            prob_bands = decoder.probability_bands(np.zeros((1, out_channels, 1, 1), np.float32)).shape[1]
            prob_writer = StripWriter(probabilities_output, grid, prob_bands, "float32", float("nan"),
                                      decoder.prob_names[:prob_bands])
    except BaseException:
        class_writer.abort()
        raise
    progress.info(
        f"Tiles: {chips.count} ({chips.cols} x {chips.rows}) of {tile_w}x{tile_h} pixels with padding {pad}, batch size "
        f"{batch}, device {backend.describe()}" + (f", test-time augmentation x{len(transforms)}" if tta else "")
        + (", blended" if blend else ""))
    if normaliser is not None:
        progress.info(f"Normalisation: {normaliser.description}")

    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(_QUEUE_DEPTH)
    q_out: queue.Queue = queue.Queue(_QUEUE_DEPTH)

    def normalised(arr: np.ndarray) -> np.ndarray:
        return normaliser.apply(arr) if normaliser is not None else arr

    def reader() -> None:
        buf = np.empty((batch, channels, tile_h, tile_w), np.float32)
        metas: list[tuple[int, int, np.ndarray]] = []
        strip_w = chips.cols * chips.core_w + 2 * pad
        for r in range(chips.rows):
            x0, y0, _, _ = chips.chip_window(r, 0)
            data, valid = source.read(x0, y0, strip_w, tile_h)
            for c in range(chips.cols):
                if stop.is_set():
                    raise _Stop
                xs = c * chips.core_w
                i = len(metas)
                np.copyto(buf[i], data[:, :, xs:xs + tile_w], casting="unsafe")
                chip_valid = valid[:, xs:xs + tile_w]
                if source.has_mask and not chip_valid.all():
                    buf[i][:, ~chip_valid] = 0.0
                core_valid = chip_valid[pad:pad + chips.core_h, pad:pad + chips.core_w]
                metas.append((r, c, core_valid.copy()))
                if len(metas) == batch:
                    _put(q_in, (normalised(buf), metas), stop)
                    buf = np.empty_like(buf)
                    metas = []
        if metas:
            _put(q_in, (normalised(buf[:len(metas)]), metas), stop)
        _put(q_in, None, stop)

    counts: dict[int, int] = {}
    lut = getattr(decoder, "lut", None)
    out_lut = lut.astype(out_dtype) if lut is not None and decoder.mode != "regression" else None
    # Row buffers hold indices into lut (class values in "values" mode): the narrowest type that fits.
    index_dtype = np.int64 if decoder.mode == "values" else (np.uint8 if lut is not None and len(lut) <= 256
                                                             else np.int32)

    def emit(indices: np.ndarray | None, probs: np.ndarray | None, valid: np.ndarray) -> None:
        """Write finished rows: class indices (or probabilities to decode) and validity."""
        if decoder.mode == "regression":
            assert probs is not None
            vals = probs.copy()
            vals[:, ~valid] = np.nan
            class_writer.write_rows(vals)
            return
        if indices is None:
            assert probs is not None
            indices = decoder.indices_from_probabilities(probs[None])[0]
        if decoder.mode == "values":
            values = indices.astype(np.int64)
            uniq, cnt = np.unique(values[valid], return_counts=True)
            for u, k in zip(uniq.tolist(), cnt.tolist()):
                counts[u] = counts.get(u, 0) + k
            out = values.astype(out_dtype)
        else:
            assert lut is not None
            binc = np.bincount(indices[valid].ravel(), minlength=len(lut))
            for i, k in enumerate(binc.tolist()):
                if k:
                    counts[int(lut[i])] = counts.get(int(lut[i]), 0) + k
            out = out_lut[indices]  # straight to the output type: no int64 copy of a width-long strip
        out[~valid] = nodata
        class_writer.write_rows(out)
        if prob_writer is not None:
            assert probs is not None
            p = decoder.probability_bands(probs[None])[0].astype(np.float32)
            p[:, ~valid] = np.nan
            prob_writer.write_rows(p)

    def writer() -> None:
        width = grid.width
        row_idx = row_probs = None
        row_valid = np.zeros((chips.core_h, width), bool)
        if blend:
            window = hann_window(out_h, out_w)
            acc_w = (chips.cols - 1) * chips.core_w + out_w
            acc = np.zeros((out_channels, out_h, acc_w), np.float32)
            wsum = np.zeros((out_h, acc_w), np.float32)
            shift = pad - model_pad  # output pixel x = acc column - shift
            valid_rows: list[np.ndarray] = []
            emitted = 0
            valid_base = 0  # output row of the first row in valid_rows
        current_row = -1
        while True:
            item = _get(q_out, stop)
            if item is None:
                break
            result, metas = item
            if not need_probs:
                result = decoder.indices_from_raw(result)
            elif split:
                result = (decoder.indices_from_raw(result), decoder.probabilities(result))
            for b, (r, c, core_valid) in enumerate(metas):
                if r != current_row:
                    current_row = r
                    h = chips.row_height(r)
                    if not blend:
                        row_idx = np.zeros((h, width), index_dtype) if split or not need_probs else None
                        row_probs = np.zeros((out_channels, h, width), np.float32) if need_probs else None
                    row_valid = np.zeros((h, width), bool)
                x, _, w, h = chips.core_window(r, c)
                row_valid[:, x:x + w] = core_valid[:h, :w]
                if blend:
                    p = result[b]
                    ax = c * chips.core_w
                    acc[:, :, ax:ax + out_w] += p * window
                    wsum[:, ax:ax + out_w] += window
                elif need_probs:
                    probs_b = result[1][b] if split else result[b]
                    row_probs[:, :, x:x + w] = probs_b[:, crop:crop + h, crop:crop + w]
                    if split:
                        row_idx[:, x:x + w] = result[0][b][crop:crop + h, crop:crop + w]
                else:
                    row_idx[:, x:x + w] = result[b][crop:crop + h, crop:crop + w]
                if c == chips.cols - 1:
                    if blend:
                        valid_rows.append(row_valid)
                        top = r * chips.core_h - shift  # output row of accumulator row 0
                        last = r == chips.rows - 1
                        end = grid.height if last else min(grid.height, top + chips.core_h)
                        if end > emitted:
                            a0 = emitted - top
                            a1 = end - top
                            probs = acc[:, a0:a1, shift:shift + width] / wsum[a0:a1, shift:shift + width]
                            vall = np.concatenate(valid_rows, axis=0)
                            emit(None, probs, vall[emitted - valid_base:end - valid_base])
                            emitted = end
                            valid_rows = [vall[emitted - valid_base:]] if valid_base + vall.shape[0] > emitted else []
                            valid_base = emitted
                        acc[:, :out_h - chips.core_h] = acc[:, chips.core_h:]
                        acc[:, out_h - chips.core_h:] = 0
                        wsum[:out_h - chips.core_h] = wsum[chips.core_h:]
                        wsum[out_h - chips.core_h:] = 0
                    elif need_probs:
                        emit(row_idx if split else None, row_probs, row_valid)
                    else:
                        emit(row_idx, None, row_valid)

    def infer(arr: np.ndarray) -> np.ndarray:
        """Raw scores (decoded by the writer thread, off the model's critical path), or merged probabilities."""
        if not need_probs or split:
            return model_call(arr)
        stack = []
        for k in transforms:
            raw = model_call(augment.forward(arr, k) if k else arr)
            probs = decoder.probabilities(raw)
            stack.append(augment.inverse(probs, k) if k else probs)
        return stack[0] if len(stack) == 1 else augment.merge(stack, merge_policy)

    stages = [_Stage(reader, "dltools-reader", stop), _Stage(writer, "dltools-writer", stop)]
    for s in stages:
        s.start()
    done = 0
    ok = False
    try:
        while True:
            for s in stages:
                if s.error is not None:
                    raise s.error
            if progress.is_canceled():
                raise CancelledError("The run was cancelled.")
            try:
                item = q_in.get(timeout=_POLL)
            except queue.Empty:
                if not stages[0].is_alive() and stages[0].error is None and q_in.empty():
                    raise RuntimeError("reader stopped without finishing") from None
                continue
            if item is None:
                _put(q_out, None, stop)
                break
            arr, metas = item
            _put(q_out, (infer(arr), metas), stop)
            done += len(metas)
            progress.set_progress(100.0 * done / chips.count)
        while stages[1].is_alive():
            stages[1].join(_POLL)
            if progress.is_canceled():
                raise CancelledError("The run was cancelled.")
        for s in stages:
            if s.error is not None:
                raise s.error
        class_writer.close()
        if prob_writer is not None:
            prob_writer.close()
        ok = True
    except _Stop:
        for s in stages:
            if s.error is not None:
                raise s.error from None
        raise
    finally:
        stop.set()
        for s in stages:
            s.join()
        if not ok:
            class_writer.abort()
            if prob_writer is not None:
                prob_writer.abort()
    seconds = time.perf_counter() - started
    return PixelRunResult(
        output=output, probabilities=probabilities_output, tiles=chips.count, batch_size=batch,
        tile_size=(tile_w, tile_h), padding=pad, device=backend.describe(), seconds=seconds,
        model_seconds=backend.model_seconds, pixels=grid.width * grid.height,
        output_values=decoder.output_values, nodata=None if decoder.mode == "regression" else nodata,
        pixel_counts=counts)

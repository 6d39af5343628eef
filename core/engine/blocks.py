# SPDX-License-Identifier: GPL-2.0-or-later
"""The block engine shared by the raster tools: a grid of bounded 2-D jobs and the executors that run them.

A run is cut into **blocks**: rectangles of a few chips on a side (about 2048
output pixels), each a :class:`BlockJob`.  A job reads its window (its chips plus
their padding halo), runs the model on its chips and returns one result; it
depends on no other job, so jobs may run in any order, on any thread or on any
machine, and the sink places each finished result wherever it belongs.

What a job *does* is a :class:`BlockTask`, supplied by the tool (Classify Pixels
and Detect Change: class and probability blocks; Detect Objects: detections in
map coordinates).  A task is split in three stages so the in-process executor can
overlap them, and composed by :func:`run_block` into one pure function for a
cluster worker:

* ``load(job)``: read the window and yield batches of chips (GDAL reads; the reader thread);
* ``infer(model, batch)``: the model call (ONNX Runtime and torch release the GIL; the caller's thread);
* ``start``/``fold``/``finish``: decode each batch into the job's result (the writer thread).

A task must be picklable (paths, grids, normalisation constants, decoder
settings; never an open dataset or a model session) so the same jobs can be
shipped to Dask (:mod:`core.engine.cluster`).  The model is passed in separately: the
caller opens it once per process.

:func:`run_in_process` is the default executor: a reader thread, the model on the
caller's thread and a writer thread, with at most :data:`QUEUE_DEPTH` batches
between stages, so memory is bounded by the block size, never by the raster.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..backends.base import Deferred
from ..errors import CancelledError, OutputError
from ..progress import Progress
from ..raster.grid import TileGrid

QUEUE_DEPTH = 2
#: Blocks whose windows are read ahead, beside the one being cut into batches (see :func:`run_in_process`).
READ_AHEAD = 1
#: Seconds a failed or cancelled run waits for a stage to stop before leaving it behind (cancel within 2 s).
ABANDON_AFTER = 1.0
_POLL = 0.1
#: Output pixels on a block's side when nothing else limits it (the issue's "about 2048 x 2048").
BLOCK_PIXELS = 2048
#: Bytes a block's buffers (window, accumulators, result) may take; the block side shrinks to fit.
BLOCK_BYTES = 48 * 1024 * 1024


@dataclass(frozen=True)
class BlockJob:
    """One independent unit of work: chip rows ``rows[0]..rows[1]-1`` x cols, writing output ``window``."""

    index: int
    block_row: int
    block_col: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    window: tuple[int, int, int, int]  # output pixels (x, y, w, h) in grid pixels

    @property
    def chip_count(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])

    def describe(self) -> str:
        x, y, w, h = self.window
        return f"block {self.index} (row {self.block_row}, column {self.block_col}: pixels x {x}-{x + w - 1}, " \
               f"y {y}-{y + h - 1})"


def chips_per_block(chips: TileGrid, bytes_per_pixel: float, block_size: int = 0,
                    batch: int = 1) -> tuple[int, int]:
    """Chip rows and columns per block.

    ``block_size`` (output pixels per side) when given; otherwise about
    :data:`BLOCK_PIXELS`, shrunk so that ``bytes_per_pixel`` (input window plus
    accumulators, per output pixel) times the block stays within
    :data:`BLOCK_BYTES`.  A block holds at least one full batch of chips where the
    raster has that many.
    """
    side = block_size or min(BLOCK_PIXELS, int(math.sqrt(BLOCK_BYTES / max(bytes_per_pixel, 1.0))))
    kr = max(1, side // chips.core_h)
    kc = max(1, side // chips.core_w)
    if not block_size:
        while kr * kc < batch and (kr < chips.rows or kc < chips.cols):
            if kc <= kr and kc < chips.cols:
                kc += 1
            else:
                kr += 1
    return min(kr, chips.rows), min(kc, chips.cols)


def block_jobs(chips: TileGrid, per_block: tuple[int, int]) -> list[BlockJob]:
    """The blocks of ``per_block`` chips covering the grid, row-major; each writes its chips' centres."""
    kr, kc = per_block
    jobs = []
    for br, r0 in enumerate(range(0, chips.rows, kr)):
        r1 = min(r0 + kr, chips.rows)
        y0 = chips.core_window(r0, 0)[1]
        y1 = min(chips.height, r1 * chips.core_h)
        for bc, c0 in enumerate(range(0, chips.cols, kc)):
            c1 = min(c0 + kc, chips.cols)
            x0 = chips.core_window(0, c0)[0]
            x1 = min(chips.width, c1 * chips.core_w)
            jobs.append(BlockJob(len(jobs), br, bc, (r0, r1), (c0, c1), (x0, y0, x1 - x0, y1 - y0)))
    return jobs


class BlockTask(Protocol):
    """What a tool does with one block (see the module docstring); picklable."""

    def load(self, job: BlockJob) -> tuple[Any, Iterator[tuple[Any, list]]]:
        """(context for :meth:`start`, batches): each batch is (model input, per-chip metadata)."""

    def infer(self, model: Any, batch: Any) -> Any:
        """The model's output for one batch. A task may also have ``infer_deferred`` (same arguments, a
        :class:`~core.backends.base.Deferred` result): in-process, the model thread then calls that and the writer
        thread waits for the outputs, so a GPU's copy back overlaps the next batch (Classify Pixels)."""

    def start(self, job: BlockJob, context: Any) -> Any:
        """A fresh accumulator for ``job``."""

    def fold(self, acc: Any, metas: list, output: Any) -> None:
        """Fold one batch's model output into the accumulator."""

    def finish(self, acc: Any) -> Any:
        """The job's result (what the sink writes; pickled back to the client on a cluster)."""

    def units(self, job: BlockJob) -> int:
        """Progress units (chips) the job will report, summed over its batches' metadata."""


class BlockSink(Protocol):
    """Where finished blocks go, in any order; ``close`` after the last, ``abort`` on failure."""

    def write(self, job: BlockJob, result: Any) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class ResultSink:
    """Keeps each finished block's result by its job's index, for a tool that merges them (Detect Objects) or hands
    them on in input order (Classify Objects) after the blocks ran, in-process or on Dask."""

    def __init__(self) -> None:
        self.results: dict[int, Any] = {}

    def write(self, job: Any, result: Any) -> None:
        self.results[job.index] = result

    def take(self, index: int) -> Any:
        """The result of job ``index``, no longer kept."""
        return self.results.pop(index)

    def in_order(self) -> list[Any]:
        """Every result, in job order (whatever order the blocks finished in)."""
        return [self.results[k] for k in sorted(self.results)]

    def close(self) -> None:
        """Nothing to flush: the results stay until taken."""

    def abort(self) -> None:
        self.results.clear()


def run_block(task: BlockTask, model: Any, job: BlockJob) -> Any:
    """One job start to finish on the calling thread: the pure function a cluster worker runs."""
    context, batches = task.load(job)
    acc = task.start(job, context)
    for data, metas in batches:
        task.fold(acc, metas, task.infer(model, data))
    return task.finish(acc)


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


def _acquire(slots: threading.Semaphore, stop: threading.Event) -> None:
    while not slots.acquire(timeout=_POLL):
        if stop.is_set():
            raise _Stop
    if stop.is_set():
        raise _Stop


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


class _Pipeline:
    """The queues between the stages of :func:`run_in_process` and the bodies of its threads."""

    def __init__(self, task: BlockTask, jobs: list[BlockJob], sink: BlockSink, stop: threading.Event) -> None:
        self.task, self.jobs, self.sink, self.stop = task, jobs, sink, stop
        self.q_in: queue.Queue = queue.Queue(QUEUE_DEPTH)  # batches for the model
        # the model's outputs for the writer; a task whose outputs are small may hold more of them (see
        # PixelTask.output_queue_depth), so the model goes on while the writer finishes and writes a block
        self.q_out: queue.Queue = queue.Queue(max(QUEUE_DEPTH, int(getattr(task, "output_queue_depth", 0))))
        self.loaded: queue.Queue = queue.Queue()  # windows read ahead, bounded by the slots
        self.slots = threading.Semaphore(READ_AHEAD)

    def read_ahead(self) -> None:
        for job in self.jobs:
            _acquire(self.slots, self.stop)
            _put(self.loaded, (job, self.task.load(job)), self.stop)
        _put(self.loaded, None, self.stop)

    def reader(self) -> None:
        stop = self.stop
        while True:
            item = _get(self.loaded, stop)
            if item is None:
                break
            job, (context, batches) = item
            self.slots.release()  # the next window may be read while this one is cut into batches
            _put(self.q_in, ("start", job, context), stop)
            for data, metas in batches:
                if stop.is_set():
                    raise _Stop
                _put(self.q_in, ("batch", job.index, (data, metas)), stop)
            _put(self.q_in, ("end", job, None), stop)
        _put(self.q_in, None, stop)

    def writer(self) -> None:
        task, accs = self.task, {}
        while True:
            item = _get(self.q_out, self.stop)
            if item is None:
                break
            kind, key, payload = item
            if kind == "start":
                accs[key.index] = task.start(key, payload)
            elif kind == "batch":
                metas, output = payload
                task.fold(accs[key], metas, output.result() if isinstance(output, Deferred) else output)
            else:
                self.sink.write(key, task.finish(accs.pop(key.index)))


def run_in_process(task: BlockTask, model: Any, jobs: Iterable[BlockJob], sink: BlockSink,
                   progress: Progress) -> None:
    """Run ``jobs`` through a read-ahead thread, a reader thread, the model (this thread) and a writer thread into
    ``sink``.

    The read-ahead thread reads the next block's window (``task.load``: all of a block's reading) while the reader
    thread cuts the current one into batches for the model: a window takes as long to read as the model takes for
    dozens of a cheap model's tiles, and with the reading in the reader thread the model waited for every window
    (make bench io-8192 on a quiet machine: 1.2 s of the model thread's 2.9).  At most :data:`READ_AHEAD` windows
    wait beside the one being cut, so memory stays bounded by the block size.

    Cancelling, or an error in any stage, stops them all; the sink is aborted (the caller's
    :class:`~core.safe_output.OutputSet` then discards the temporary files).  On success the sink is closed.
    """
    jobs = list(jobs)
    total = sum(task.units(j) for j in jobs) or 1
    stop = threading.Event()
    pipe = _Pipeline(task, jobs, sink, stop)
    q_in, q_out = pipe.q_in, pipe.q_out
    stages = [_Stage(pipe.reader, "dltools-reader", stop), _Stage(pipe.writer, "dltools-writer", stop),
              _Stage(pipe.read_ahead, "dltools-read-ahead", stop)]
    done = 0
    ok = False
    try:
        for s in stages:  # inside the guard: if the second cannot start, the first is stopped and the sink aborted
            try:
                s.start()
            except RuntimeError as exc:  # "can't start new thread": the process is out of threads or memory
                raise OutputError(f"Cannot start the {s.name} thread ({exc}): the system has no room for another "
                                  "thread; lower 'threads' or close other programs. Nothing was written") from exc
        while True:
            for s in stages:
                if s.error is not None:
                    raise s.error
            if progress.is_canceled():
                raise CancelledError("The run was cancelled.")
            try:
                item = q_in.get(timeout=_POLL)
            except queue.Empty:
                if not stages[0].is_alive() and q_in.empty():
                    for s in stages:  # it stopped because another stage failed (the read-ahead): that error
                        if s.error is not None:
                            raise s.error from None
                    raise RuntimeError("reader stopped without finishing") from None
                continue
            if item is None:
                _put(q_out, None, stop)
                break
            kind, key, payload = item
            if kind == "batch":
                data, metas = payload
                infer = getattr(task, "infer_deferred", task.infer)  # outputs the writer may wait for (GPU)
                _put(q_out, ("batch", key, (metas, infer(model, data))), stop)
                done += len(metas)
                progress.set_progress(100.0 * done / total)
            else:
                _put(q_out, item, stop)
        while stages[1].is_alive():
            stages[1].join(_POLL)
            if progress.is_canceled():
                raise CancelledError("The run was cancelled.")
        for s in stages:
            if s.error is not None:
                raise s.error
        sink.close()
        ok = True
    except _Stop:
        for s in stages:
            if s.error is not None:
                raise s.error from None
        raise
    finally:
        stop.set()
        for s in stages:
            if s.ident is not None:  # started
                # after a failure or a cancel, a stage still blocked after ABANDON_AFTER (a read waiting on a web
                # server that does not answer) is left behind: a daemon thread holding no output, which stops
                # at its next step (the closed source, a queue)
                s.join(None if ok else ABANDON_AFTER)
        if not ok:
            sink.abort()

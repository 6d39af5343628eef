# SPDX-License-Identifier: GPL-2.0-or-later
"""ONNX Runtime backend: any opset it runs, fixed or dynamic batch, CPU or CUDA."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, CancelledError, DependencyMissingError, plain_reason
from ..installer.advice import not_installed
from ..memory import memory_bound
from ..threads import thread_count
from .base import Backend, DeviceRequest, TensorInfo, refuse_half_on_cpu
from .onnx_binding import IoBinder
from .onnx_class_index import INDEX_OUTPUT, TOTAL_OUTPUT, with_class_indices
from .onnx_sizes import check_onnx_sizes

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
    "tensor(bool)": "bool",
}


def import_onnxruntime():  # noqa: ANN201 - returns the module
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyMissingError(not_installed("ONNX Runtime", "onnxruntime")) from exc
    return onnxruntime


def _terminate_on_cancel(options: Any, cancelled: Callable[[], bool], done: threading.Event) -> None:
    """Until the backend is closed: set ``RunOptions.terminate`` as soon as the user cancels. ONNX Runtime checks it
    between operators and loop iterations, so a model that would run for ever (a Loop of 2^62 trips) stops; every
    later call with these options stops at once.  One watcher per backend, not per call: starting a thread for
    each of thousands of small calls cost more than the calls of a cheap model (``make bench`` io-8192)."""
    while not done.wait(0.1):
        if cancelled():
            options.terminate = True
            return


def _half_note(half_already: bool) -> str:
    """ONNX Runtime runs a graph in the types it was saved with: a float32 model is not converted on the fly (that
    changes results in ways the model's author never checked), so half precision means a float16 model."""
    if half_already:
        return "half_precision: the ONNX model is float16 already; it runs in half precision on the GPU"
    return ("half_precision: this ONNX model is float32, and ONNX Runtime runs it in float32 as saved; to run in "
            "half precision, convert the model to float16 (onnxconverter-common's float16 converter) and use that copy")


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(size, modification time) of ``path``: a model file read twice must be the one that was checked."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _dims(shape: list) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def provider_plan(available: list[str], device: DeviceRequest) -> tuple[list, str]:
    """The providers to ask ONNX Runtime for, and why, from what this ONNX Runtime offers and the DEVICE asked.

    GPU without a CUDA provider is refused (nothing would run where the user asked); Auto takes CUDA where this
    ONNX Runtime has it and says so when it has not, so a log always tells why a run went to the CPU.
    """
    has_cuda = "CUDAExecutionProvider" in available
    if device.kind == "gpu" and not has_cuda:
        raise BackendError(
            "A GPU was requested but ONNX Runtime has no CUDA provider here (available: "
            f"{', '.join(available)}): install 'ONNX Runtime for NVIDIA GPUs' with Install Inference Libraries "
            "(dltools:installlibraries) and a matching CUDA, or choose CPU/Auto")
    if device.kind == "cpu":
        return ["CPUExecutionProvider"], "Device CPU: the model runs on the CPU"
    if not has_cuda:
        return ["CPUExecutionProvider"], (f"Device Auto: this ONNX Runtime has no CUDA provider (it offers "
                                          f"{', '.join(available)}), so the model runs on the CPU")
    return [("CUDAExecutionProvider", {"device_id": device.gpu_id}), "CPUExecutionProvider"], \
        f"CUDA provider asked for GPU {device.gpu_id}"


def provider_outcome(device: DeviceRequest, asked: list, used: list[str]) -> str | None:
    """What happened when the CUDA provider was asked for but the session did not take it (a missing CUDA or
    cuDNN library): an error for GPU, a note for Auto. None when the session runs where it was asked to."""
    wanted_cuda = any(p[0] == "CUDAExecutionProvider" for p in asked if isinstance(p, tuple))
    if not wanted_cuda or "CUDAExecutionProvider" in used:
        return None
    if device.kind == "gpu":
        raise BackendError("A GPU was requested but ONNX Runtime could not start its CUDA provider "
                           "(check the CUDA and cuDNN libraries), or choose CPU/Auto")
    return ("Device Auto: ONNX Runtime has a CUDA provider but could not start it (check the CUDA and cuDNN "
            "libraries), so the model runs on the CPU")


class OnnxBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, model_file: Path, device: DeviceRequest, io_binding: bool | None = None) -> None:
        """``io_binding``: run through :class:`~.onnx_binding.IoBinder`; None (the default) = on a CUDA device,
        where it saves an allocation and a pageable copy per call; True on the CPU runs the same path there."""
        super().__init__()
        ort = import_onnxruntime()
        self._ort = ort
        #: the run's cancel check (open_backend sets it): a call in progress is terminated when it says so
        self.cancelled: Callable[[], bool] | None = None
        providers, why = provider_plan(ort.get_available_providers(), device)
        options = ort.SessionOptions()
        threads = thread_count(device.threads)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between model calls: the engine's reader and writer threads need the cores then
        # (make bench io-8192: less CPU for the same work on a loaded two-core machine)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        check_onnx_sizes(model_file, memory_bound())  # a constant gigabyte tensor is refused before it is taken
        self._model_file, self._options, self._providers = Path(model_file), options, providers
        self._model_stat = _file_stamp(self._model_file)  # read again only if unchanged (use_class_indices)
        #: the outputs :meth:`run` returns (None: all of the graph's; named once the graph has more, see below)
        self._fetch: list[str] | None = None
        self._run_options: Any = None  # while someone can cancel (see _watched_options)
        self._watched: Callable[[], bool] | None = None
        self._watch_done = threading.Event()
        try:
            self.session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime cannot load '{Path(model_file).name}': {plain_reason(exc)}") from exc
        used = self.session.get_providers()
        fallback = provider_outcome(device, providers, used)
        if fallback or device.kind == "auto" and len(providers) == 1:
            self.notes.append(fallback or why)
        if "CUDAExecutionProvider" in used:
            self.device = f"cuda:{device.gpu_id}"
            self.provider = "ONNX Runtime CUDAExecutionProvider"
        else:
            self.device = "cpu"
            self.provider = f"ONNX Runtime CPUExecutionProvider, {threads} threads"
        refuse_half_on_cpu(device, self.device)
        self.inputs = [TensorInfo(i.name, _dims(i.shape), _ORT_TYPES.get(i.type, i.type), tuple(i.shape))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, _dims(o.shape), _ORT_TYPES.get(o.type, o.type), tuple(o.shape))
                        for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if device.half:
            half_already = any(i.dtype == "float16" for i in self.inputs)
            (self.notes if half_already else self.warnings).append(_half_note(half_already))
        on_cuda = self.device.startswith("cuda")
        self.binder: IoBinder | None = None
        if io_binding or (io_binding is None and on_cuda):
            self.binder = IoBinder(ort, self.session, self.inputs, self.outputs, "cuda" if on_cuda else "cpu",
                                   device.gpu_id if on_cuda else 0)
            self.provider += ", I/O binding"

    def _run(self, arrays: list[np.ndarray], fetch: list[str] | None = None) -> list[np.ndarray]:
        feed = {}
        for info, arr in zip(self.inputs, arrays):
            dtype = np.dtype(info.dtype) if info.dtype in _ORT_TYPES.values() else np.float32
            feed[info.name] = np.ascontiguousarray(arr, dtype=dtype)
        if self.cancelled is None:
            return self._call(feed, None, fetch)
        options = self._watched_options(self.cancelled)
        try:
            return self._call(feed, options, fetch)
        except Exception as exc:
            if options.terminate:
                raise CancelledError("Cancelled: the model was stopped in the middle of a call.") from exc
            raise

    def _watched_options(self, cancelled: Callable[[], bool]) -> Any:
        """The RunOptions every call uses while someone can cancel, and their watcher (started with the first
        call, stopped by :meth:`close` or when this backend is collected); new ones when the check changed (the
        backend reused for another run)."""
        if self._run_options is None or self._watched is not cancelled:
            self._watch_done.set()  # the previous watcher, if any, stops
            self._watch_done = done = threading.Event()
            self._run_options, self._watched = self._ort.RunOptions(), cancelled
            weakref.finalize(self, done.set)
            threading.Thread(target=_terminate_on_cancel, args=(self._run_options, cancelled, done),
                             name="dltools-onnx-cancel", daemon=True).start()
        return self._run_options

    def _call(self, feed: dict[str, np.ndarray], options: Any, fetch: list[str] | None = None) -> list[np.ndarray]:
        if self.binder is not None:
            return self.binder.run(list(feed.values()), options)
        return [np.asarray(o) for o in self.session.run(fetch or self._fetch, feed, options)]

    def use_class_indices(self, output: int, axis: int, rank: int, channels: int, suppressed: Sequence[int] = (),
                          threads: int = 0, keep: tuple[int, int, int, int] | None = None) -> bool:
        """The session is made again from the model's bytes with an arg-max appended to its graph
        (:mod:`.onnx_class_index`; the file is not changed), so :meth:`run_class_indices` returns one byte per pixel
        instead of the float scores; with ``threads`` (0: as it was opened) ONNX Runtime threads.  Not with I/O
        binding (its outputs are bound by name and device)."""
        if self.binder is not None or self.outputs[output].dtype != "float32":
            return False
        try:
            model = self._model_file.read_bytes()
        except OSError:
            return False
        if _file_stamp(self._model_file) != self._model_stat:  # replaced since it was checked and opened
            return False
        edited = with_class_indices(model, output, axis, rank, channels, suppressed, keep)
        if edited is None:
            return False
        fetch = [o.name for o in self.outputs]
        opened_with = self._options.intra_op_num_threads
        self.session = None  # type: ignore[assignment]  # one session's weights in memory at a time
        try:
            self._options.intra_op_num_threads = threads or opened_with
            self.session = self._ort.InferenceSession(edited, sess_options=self._options, providers=self._providers)
        except Exception:  # noqa: BLE001 - the edited graph is refused: the model runs as it came, decoded by numpy
            self._options.intra_op_num_threads = opened_with
            self.session = self._ort.InferenceSession(str(self._model_file), sess_options=self._options,
                                                      providers=self._providers)
            return False
        self._fetch = fetch
        if self.device == "cpu":
            self.provider = f"ONNX Runtime CPUExecutionProvider, {self._options.intra_op_num_threads} threads"
        return True

    def _run_indices(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self._run(arrays, [INDEX_OUTPUT, TOTAL_OUTPUT])

    def close(self) -> None:
        self._watch_done.set()
        self.binder = None
        self.session = None  # type: ignore[assignment]

# SPDX-License-Identifier: GPL-2.0-or-later
"""ONNX Runtime backend: any opset it runs, fixed or dynamic batch, CPU or CUDA."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, CancelledError, DependencyMissingError, plain_reason
from ..installer.advice import not_installed
from ..threads import thread_count
from .base import Backend, DeviceRequest, TensorInfo

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
    """While one call runs: set ``RunOptions.terminate`` as soon as the user cancels. ONNX Runtime checks it
    between operators and loop iterations, so a model that would run for ever (a Loop of 2^62 trips) stops."""
    while not done.wait(0.1):
        if cancelled():
            options.terminate = True
            return


def _dims(shape: list) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


class OnnxBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, model_file: Path, device: DeviceRequest) -> None:
        super().__init__()
        ort = import_onnxruntime()
        self._ort = ort
        #: the run's cancel check (open_backend sets it): a call in progress is terminated when it says so
        self.cancelled: Callable[[], bool] | None = None
        available = ort.get_available_providers()
        has_cuda = "CUDAExecutionProvider" in available
        if device.kind == "gpu" and not has_cuda:
            raise BackendError(
                "A GPU was requested but ONNX Runtime has no CUDA provider here (available: "
                f"{', '.join(available)}): install 'ONNX Runtime for NVIDIA GPUs' with Install Inference Libraries "
                "(dltools:installlibraries) and a matching CUDA, or choose CPU/Auto")
        options = ort.SessionOptions()
        threads = thread_count(device.threads)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between model calls: the engine's reader and writer threads need the cores then
        # (make bench io-8192: less CPU for the same work on a loaded two-core machine)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers: list = ["CPUExecutionProvider"]
        if has_cuda and device.kind in ("gpu", "auto"):
            providers = [("CUDAExecutionProvider", {"device_id": device.gpu_id}), "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime cannot load '{Path(model_file).name}': {plain_reason(exc)}") from exc
        used = self.session.get_providers()
        if device.kind == "gpu" and "CUDAExecutionProvider" not in used:
            raise BackendError("A GPU was requested but ONNX Runtime could not start its CUDA provider "
                               "(check the CUDA and cuDNN libraries), or choose CPU/Auto")
        if "CUDAExecutionProvider" in used:
            self.device = f"cuda:{device.gpu_id}"
            self.provider = "ONNX Runtime CUDAExecutionProvider"
        else:
            self.device = "cpu"
            self.provider = f"ONNX Runtime CPUExecutionProvider, {threads} threads"
        self.inputs = [TensorInfo(i.name, _dims(i.shape), _ORT_TYPES.get(i.type, i.type), tuple(i.shape))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, _dims(o.shape), _ORT_TYPES.get(o.type, o.type), tuple(o.shape))
                        for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feed = {}
        for info, arr in zip(self.inputs, arrays):
            dtype = np.dtype(info.dtype) if info.dtype in _ORT_TYPES.values() else np.float32
            feed[info.name] = np.ascontiguousarray(arr, dtype=dtype)
        if self.cancelled is None:
            return [np.asarray(o) for o in self.session.run(None, feed)]
        options = self._ort.RunOptions()
        done = threading.Event()
        watcher = threading.Thread(target=_terminate_on_cancel, args=(options, self.cancelled, done), daemon=True)
        watcher.start()
        try:
            return [np.asarray(o) for o in self.session.run(None, feed, options)]
        except Exception as exc:
            if options.terminate:
                raise CancelledError("Cancelled: the model was stopped in the middle of a call.") from exc
            raise
        finally:
            done.set()

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

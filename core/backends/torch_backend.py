# SPDX-License-Identifier: GPL-2.0-or-later
"""PyTorch backend: TorchScript (``torch.jit.load``) and ``torch.export`` programs (``.pt2``).

Never ``torch.load`` of a pickle: that would run arbitrary code from the file.  Every file is checked by
:mod:`.torch_safety` before torch opens it (nothing to unpickle) and its graphs after loading (tensor
operators only), before the first batch runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import BackendError, DependencyMissingError, plain_reason
from ..installer.advice import not_installed
from ..threads import thread_count
from ..trust import CodeTrust, require_trust
from .base import Backend, Deferred, DeviceRequest, TensorInfo, model_call, refuse_half_on_cpu
from .torch_safety import (
    check_exported_program,
    check_pt2_archive,
    check_torchscript_archive_code,
    check_torchscript_module,
    weights_only_loading,
)
from .torch_transfer import TorchTransfer

#: PyTorch's own switch (since 2.2) for 2 MB transparent huge pages under its CPU tensors of 2 MB or more; read once,
#: when torch makes its first tensor, so it is set before torch is imported
HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"


def import_torch():  # noqa: ANN201 - returns the module
    """torch, with huge pages for its large CPU tensors unless the user said otherwise: a training step allocates
    every gradient afresh (174 MB for an R-CNN resnet18), and in 4 KB pages that was 44,000 page faults, 0.07 of a
    0.37 s MaskRCNN step (measured; 2,000 faults with huge pages).  Only where torch is not imported yet (in QGIS
    another plugin may have imported it) and where the system's huge pages allow it (``madvise`` or ``always``);
    the numbers are the same."""
    if "torch" not in sys.modules:
        os.environ.setdefault(HUGE_PAGES, "1")
    try:
        import torch
    except ImportError as exc:
        raise DependencyMissingError(not_installed("PyTorch", "torch") + "; or export the model to ONNX") from exc
    return torch


def _uses_torchvision_ops(model_file: Path) -> bool:
    """Whether a TorchScript archive calls torchvision's operators (nms, roi_align): they must be loaded first."""
    import zipfile

    try:
        with zipfile.ZipFile(model_file) as zf:
            for name in zf.namelist():
                if name.endswith(".py") and "/code/" in name and b"ops.torchvision." in zf.read(name):
                    return True
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def _to_numpy(out):  # noqa: ANN001, ANN202 - any TorchScript result
    """Tensors anywhere in a (nested) result -> numpy arrays, keeping lists, tuples and dicts."""
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_to_numpy(v) for v in out)
    if hasattr(out, "detach"):
        t = out.detach()
        return t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()
    return out


def select_device(torch, device: DeviceRequest):  # noqa: ANN001, ANN201 - (torch.device, provider text)
    """The torch device for ArcGIS's processor type / GPU id, and the thread count; clear errors for a missing GPU."""
    has_cuda = torch.cuda.is_available()
    if device.kind == "gpu":
        if not has_cuda:
            raise BackendError("A GPU was requested but PyTorch sees no CUDA device here: install a CUDA "
                               "build of torch, or choose CPU/Auto")
        if device.gpu_id >= torch.cuda.device_count():
            raise BackendError(f"GPU id {device.gpu_id} does not exist: PyTorch sees "
                               f"{torch.cuda.device_count()} GPU(s), numbered from 0")
    use_cuda = has_cuda and device.kind in ("gpu", "auto")
    torch_device = torch.device(f"cuda:{device.gpu_id}" if use_cuda else "cpu")
    threads = thread_count(device.threads)
    torch.set_num_threads(threads)
    provider = f"PyTorch {torch.__version__}, " + (
        f"CUDA {torch.cuda.get_device_name(torch_device)}" if use_cuda else f"CPU, {threads} threads")
    return torch_device, provider


def auto_device_note(torch, device: DeviceRequest, torch_device) -> str | None:  # noqa: ANN001
    """Why Device Auto ended on the CPU (a CPU-only build of torch, or a CUDA build that finds no GPU), for the log;
    None when it did not."""
    if device.kind != "auto" or torch_device.type != "cpu":
        return None
    if not torch.version.cuda:
        return f"Device Auto: PyTorch {torch.__version__} is a CPU-only build, so the model runs on the CPU"
    return (f"Device Auto: PyTorch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no NVIDIA GPU "
            "or driver here, so the model runs on the CPU")


class TorchBackend(Backend):
    kind = "torch"

    def __init__(self, model_file: Path, device: DeviceRequest, exported: bool = False,
                 input_shape: tuple[int | None, ...] | None = None, trust: CodeTrust | None = None) -> None:
        super().__init__()
        # first, before torch is even imported: an untrusted program is never opened (CodeTrust)
        require_trust(model_file, "torch_export" if exported else "torchscript", trust)
        torch = import_torch()
        self._torch = torch
        self.torch_device, self.provider = select_device(torch, device)
        refuse_half_on_cpu(device, str(self.torch_device))
        self.notes += [n for n in [auto_device_note(torch, device, self.torch_device)] if n]
        self.transfer = TorchTransfer(torch, self.torch_device, device.half)
        self._seconds_lock = threading.Lock()
        if self.transfer.half:
            self.provider += ", half precision (autocast float16)"
        model_file = Path(model_file)
        if exported:
            check_pt2_archive(model_file)
        else:
            check_torchscript_archive_code(model_file)
        if not exported and _uses_torchvision_ops(model_file):
            try:
                import torchvision  # noqa: F401 - registers torchvision::nms, roi_align for the archive
            except ImportError as exc:
                raise DependencyMissingError(
                    f"'{Path(model_file).name}' uses torchvision operators (a torchvision detector), and "
                    + not_installed("torchvision", "torch")) from exc
        try:
            if exported:
                with weights_only_loading():
                    program = torch.export.load(str(model_file))
                self.module = program.module()
            else:
                self.module = torch.jit.load(str(model_file), map_location=self.torch_device)
                self.module.eval()
        except Exception as exc:
            what = "torch.export program" if exported else "TorchScript archive"
            raise BackendError(f"'{Path(model_file).name}' could not be loaded as a {what}: {plain_reason(exc)}") from exc
        if exported:
            check_exported_program(program, self.module, model_file)
        else:
            check_torchscript_module(self.module, model_file)
        if exported:
            self.module.to(self.torch_device)
        self.device = str(self.torch_device)
        #: a forward(images: List[Tensor]) module (torchvision detectors) takes a list of [C, H, W] images
        self.list_input = False
        if not exported:
            try:
                args = self.module.forward.schema.arguments
                self.list_input = len(args) > 1 and str(args[1].type) in ("Tensor[]", "List[Tensor]")
            except (AttributeError, RuntimeError):
                self.list_input = False
        shape = input_shape or (None, None, None, None)
        self.inputs = [TensorInfo("input", tuple(shape), "float32")]
        self.outputs = [TensorInfo("output", (None,), "float32")]

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        tensors = self.transfer.to_device(arrays)
        with self._torch.inference_mode(), self.transfer.autocast():
            out = self.module(*tensors)
        if isinstance(out, dict):
            out = list(out.values())
        return self.transfer.to_host(list(out) if isinstance(out, (list, tuple)) else [out])

    def run_deferred(self, batch: np.ndarray | list[np.ndarray]) -> Deferred:
        """On CUDA: the batch goes up, the model runs and the copies back start; this returns without waiting for
        them, so the engine's model thread can send the next batch while the writer waits for this one. The
        waiting counts as time in the model. Elsewhere (and for a module returning dicts): :meth:`Backend.run`."""
        arrays = [batch] if isinstance(batch, np.ndarray) else list(batch)
        if not self.transfer.cuda or len(arrays) != len(self.inputs) or self.fixed_batch is not None:
            return super().run_deferred(batch)
        start = time.perf_counter()
        try:
            with model_call():
                tensors = self.transfer.to_device(arrays)
                with self._torch.inference_mode(), self.transfer.autocast():
                    out = self.module(*tensors)
                outs = list(out.values()) if isinstance(out, dict) else out
                wait = self.transfer.to_host_later(list(outs) if isinstance(outs, (list, tuple)) else [outs])
        except Exception as exc:  # noqa: BLE001 - torch raises many types; one clear message
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise BackendError(f"The model failed on input of shape {shapes}: {plain_reason(exc)}") from exc
        with self._seconds_lock:
            self.model_seconds += time.perf_counter() - start
        self.calls += 1

        def outputs() -> list[np.ndarray]:  # on the engine's writer thread
            waited = time.perf_counter()
            result = wait()
            with self._seconds_lock:  # the model thread adds its own seconds meanwhile
                self.model_seconds += time.perf_counter() - waited
            return result

        return Deferred(outputs)

    def run_structured(self, arrays: list[np.ndarray]):  # noqa: ANN201 - nested lists/dicts of arrays
        """The module's whole result with tensors as numpy (dicts and lists kept): for detectors."""
        start = time.perf_counter()
        tensors = self.transfer.to_device(arrays)
        try:
            with self._torch.inference_mode(), self.transfer.autocast(), model_call():
                if self.list_input:
                    out = self.module([t for t in tensors[0]])
                else:
                    out = self.module(*tensors)
        except Exception as exc:  # noqa: BLE001 - torch raises many types; one clear message
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise BackendError(f"The model failed on input of shape {shapes}: {plain_reason(exc)}") from exc
        result = _to_numpy(out)
        self.model_seconds += time.perf_counter() - start
        self.calls += 1
        return result

    def close(self) -> None:
        self.module = None
        if self.torch_device.type == "cuda":
            self._torch.cuda.empty_cache()

# SPDX-License-Identifier: GPL-2.0-or-later
"""Inference backends behind one small interface (:class:`~.base.Backend`).

``open_backend`` picks ONNX Runtime, torch or a rebuilt arcgis.learn network from the model kind; each implementation imports its
framework inside its constructor, so importing this package costs nothing (no onnxruntime, no torch) and a missing framework
becomes a clear error at run time.  The interface (:mod:`.base`) knows no implementation: the
implementations import it, and only this package's door imports them, so there is no circle.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BackendError
from ..progress import NullProgress, Progress
from ..trust import CodeTrust
from .arcgis_learn_backend import ArcgisLearnBackend
from .base import Backend, DeviceRequest, TensorInfo
from .onnx_backend import OnnxBackend
from .torch_backend import TorchBackend

__all__ = ["Backend", "DeviceRequest", "TensorInfo", "open_backend"]


def open_backend(model_file: Path, kind: str, device: DeviceRequest | None = None,
                 progress: Progress | None = None, definition: dict | None = None,
                 trust: CodeTrust | None = None, detection: tuple[float, float] | None = None) -> Backend:
    """Load ``model_file`` with the backend for ``kind`` (onnx, torchscript, torch_export, arcgis_learn).

    ``definition`` is the model definition's JSON (its raw dict): arcgis.learn weights need it to
    rebuild their network; the other kinds ignore it. ``trust`` is the user's permission to run code-bearing
    files (TorchScript, torch.export): without it they are refused before torch opens them.  ``detection``: the
    run's (threshold, nms_overlap) for the rebuilt arcgis.learn R-CNN detectors, whose torchvision heads apply them
    inside the network.
    """
    device = device or DeviceRequest()
    progress = progress or NullProgress()
    if kind == "onnx":
        backend: Backend = OnnxBackend(model_file, device)
        if not isinstance(progress, NullProgress):  # a call can be stopped only where someone can cancel
            backend.cancelled = progress.is_canceled
    elif kind in ("torchscript", "torch_export"):
        backend = TorchBackend(model_file, device, exported=(kind == "torch_export"), trust=trust)
    elif kind == "arcgis_learn":
        backend = ArcgisLearnBackend(model_file, device, definition or {}, detection)
    else:
        raise BackendError(f"No backend runs models of kind '{kind}'")
    progress.info(f"Model runs with {backend.describe()}")
    for note in backend.notes:
        progress.info(note)
    for warning in backend.warnings:
        progress.warning(warning)
    return backend

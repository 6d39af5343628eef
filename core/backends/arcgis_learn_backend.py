# SPDX-License-Identifier: GPL-2.0-or-later
"""Backend for arcgis.learn ``.pth`` weights: the network is rebuilt (:mod:`.arcgis_learn`), never unpickled.

Pixel families return ``[B, N + 1, H, W]`` class scores and FeatureClassifier ``[B, N]`` from
:meth:`Backend.run`, so Classify Pixels and Classify Objects run them like any other model.
Detectors answer :meth:`ArcgisLearnBackend.detect` with one dict per chip: R-CNN's torchvision-style
detections (``boxes`` xyxy in chip pixels, ``scores`` 0..1, ``labels`` 1-based, ``masks`` for MaskRCNN), or SSD's
and RetinaNet's raw per-anchor outputs (``anchor_boxes``, ``anchor_scores``), which the shared detection decoder
(:mod:`core.detection.decode`) thresholds and suppresses like any other detector's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, DependencyMissingError
from ..installer.advice import not_installed
from .arcgis_learn.families import Family, describe_family, resolve_family
from .base import Backend, DeviceRequest, TensorInfo, refuse_half_on_cpu
from .torch_backend import auto_device_note, import_torch, select_device
from .torch_transfer import TorchTransfer


def import_torchvision():  # noqa: ANN201 - returns the module
    try:
        import torchvision
    except ImportError as exc:
        raise DependencyMissingError(not_installed(
            "torchvision", "torch", ", and models trained with arcgis.learn are rebuilt with it")) from exc
    return torchvision


def _numpy(key: str, value: Any) -> Any:
    """A detector dict's tensor as numpy (boxes [N, 4], scores [N], labels int64 [N]); plain values as they are."""
    if not hasattr(value, "detach"):
        return value
    if key == "labels":
        return value.detach().cpu().numpy().astype(np.int64).reshape(-1)
    array = value.detach().float().cpu().numpy()
    if key == "boxes":
        return array.reshape(-1, 4)
    return array.reshape(-1) if key == "scores" else array


class ArcgisLearnBackend(Backend):
    kind = "arcgis.learn"

    def __init__(self, model_file: Path, device: DeviceRequest, definition: dict[str, Any],
                 detection: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.family: Family = resolve_family(definition)
        #: the run's (threshold, nms_overlap) for R-CNN, whose torchvision heads apply them before their top-100
        #: cut; None: the family's defaults.  SSD and RetinaNet return raw outputs and ignore it.
        self.detection = detection
        torch = import_torch()
        torchvision = import_torchvision()
        from .arcgis_learn.network import RebuiltNetwork

        self._torch = torch
        self.torch_device, provider = select_device(torch, device)
        refuse_half_on_cpu(device, str(self.torch_device))
        self.notes += [n for n in [auto_device_note(torch, device, self.torch_device)] if n]
        self.transfer = TorchTransfer(torch, self.torch_device, device.half)
        if self.transfer.half:
            provider += ", half precision (autocast float16)"
        self.net = RebuiltNetwork(self.family, definition, Path(model_file), torchvision, self.torch_device)
        self.device = str(self.torch_device)
        self.provider = f"{self.family.title}; {provider}"
        fam = self.family
        self.inputs = [TensorInfo("image", (None, fam.in_channels, None, None), "float32")]
        if fam.task == "pixels":
            self.outputs = [TensorInfo("scores", (None, fam.num_classes + 1, None, None), "float32")]
        elif fam.task == "objects":
            self.outputs = [TensorInfo("scores", (None, fam.num_classes), "float32")]
        else:
            self.outputs = [TensorInfo("boxes", (None, 4), "float32"), TensorInfo("scores", (None,), "float32"),
                            TensorInfo("labels", (None,), "int64")]
            if fam.model_name == "MaskRCNN":
                self.outputs.append(TensorInfo("masks", (None, 1, None, None), "float32"))

    def describe(self) -> str:
        return f"{describe_family(self.family)}; on {self.device} ({self.provider.split('; ', 1)[-1]})"

    def _tensor(self, array: np.ndarray):  # noqa: ANN202
        return self.transfer.to_device([array])[0]

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.family.task == "detection":
            raise BackendError(f"{self.family.title} is a detector: run it with Detect Objects Using Deep Learning")
        with self._torch.inference_mode(), self.transfer.autocast():
            out = self.net.scores(self._tensor(arrays[0]))
        return self.transfer.to_host([out])

    def run_structured(self, arrays: list[np.ndarray]):  # noqa: ANN201 - detectors: one dict per chip
        """Detectors: one dict per chip (Detect Objects' decoder reads them); others: :meth:`run`."""
        if self.family.task != "detection":
            return self.run(arrays)
        return self.detect(arrays[0], *(self.detection or (None, None)))

    def detect(self, batch: np.ndarray, threshold: float | None = None,
               nms_overlap: float | None = None) -> list[dict[str, Any]]:
        """One numpy dict per chip of a normalised ``[B, C, H, W]`` batch (see the module docstring); ``threshold``
        and ``nms_overlap`` reach R-CNN's heads only (None: the family's defaults)."""
        if self.family.task != "detection":
            raise BackendError(f"{self.family.title} is not a detector")
        defaults = self.family.defaults
        thr = float(defaults.get("threshold", 0.5) if threshold is None else threshold)
        nms = float(defaults.get("nms_overlap", 0.1) if nms_overlap is None else nms_overlap)
        import time

        start = time.perf_counter()
        try:
            with self._torch.inference_mode(), self.transfer.autocast():
                found = self.net.detect(self._tensor(batch), thr, nms)
        except BackendError:
            raise
        except Exception as exc:  # the frameworks raise many types
            raise BackendError(f"{self.family.title} failed on input of shape {tuple(batch.shape)}: {exc}") from exc
        self.model_seconds += time.perf_counter() - start
        self.calls += 1
        return [{k: _numpy(k, v) for k, v in d.items()} for d in found]

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]
        if self.torch_device.type == "cuda":
            self._torch.cuda.empty_cache()

# SPDX-License-Identifier: GPL-2.0-or-later
"""A family's rebuilt network, its weights, and its outputs in the form the tools decode.

* pixel families (UnetClassifier, DeepLab): class scores ``[B, N + 1, H, W]`` (background first);
* FeatureClassifier: class scores ``[B, N]``;
* detectors (MaskRCNN, FasterRCNN, SingleShotDetector, RetinaNet): one torchvision-style dict per
  chip, ``boxes`` (xyxy, chip pixels), ``scores`` (0..1), ``labels`` (1-based: ``Classes[label - 1]``)
  and, for MaskRCNN, ``masks`` ``[K, 1, H, W]`` probabilities.

Imports torch (and torchvision) at module level: the backend imports this module only after
checking that both are installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .families import Family
from .weights import load_strict, read_state_dict


def _stats_pick(data: dict[str, Any], key: str, bands: list[int]) -> list[float] | None:
    stats = data.get("NormalizationStats") if isinstance(data.get("NormalizationStats"), dict) else None
    if not stats or not isinstance(stats.get(key), list):
        return None
    values = stats[key]
    return [float(values[b]) for b in bands] if max(bands) < len(values) else None


def rcnn_mean_std(data: dict[str, Any], in_channels: int) -> tuple[list[float] | None, list[float] | None]:
    """Multispectral R-CNN: the transform's mean/std are ``scaled_mean/std_values[ExtractBands]``."""
    bands = data.get("ExtractBands") if isinstance(data.get("ExtractBands"), list) else list(range(in_channels))
    try:
        bands = [int(b) for b in bands]
    except (TypeError, ValueError):
        bands = list(range(in_channels))
    return _stats_pick(data, "scaled_mean_values", bands), _stats_pick(data, "scaled_std_values", bands)


def build_module(family: Family, data: dict[str, Any], torchvision) -> torch.nn.Module:  # noqa: ANN001
    chip = int(data.get("ImageHeight") or 224)
    width = int(data.get("ImageWidth") or chip)
    n, c = family.num_classes, family.in_channels
    name = family.model_name
    if name in ("MaskRCNN", "FasterRCNN"):
        from .torchvision_nets import build_rcnn

        mean, std = rcnn_mean_std(data, c) if data.get("NormalizationStats") else (None, None)
        return build_rcnn(torchvision, name, family.backbone, n, chip, c, mean, std)
    if name == "DeepLab":
        from .torchvision_nets import build_deeplab

        return build_deeplab(torchvision, n, c)
    if name == "UnetClassifier":
        from .fastai_layers import create_body
        from .unet import DynamicUnet

        return DynamicUnet(create_body(torchvision, family.backbone, c), n + 1, (chip, width), c).eval()
    if name == "FeatureClassifier":
        from .fastai_layers import body_channels, create_body, create_head

        body = create_body(torchvision, family.backbone, c)
        return torch.nn.Sequential(body, create_head(2 * body_channels(family.backbone), n)).eval()
    if name == "SingleShotDetector":
        from .ssd import build_ssd

        return build_ssd(torchvision, family.backbone, n, chip, c, data)
    if name == "RetinaNet":
        from .retinanet import build_retinanet

        return build_retinanet(torchvision, family.backbone, n, c, data)
    raise ValueError(f"no builder for {name}")  # pragma: no cover - families.py lists only these


class RebuiltNetwork:
    """The network of ``family`` with the weights of ``weights_file``, on ``device``, in eval mode."""

    def __init__(self, family: Family, data: dict[str, Any], weights_file: Path, torchvision,  # noqa: ANN001
                 device: torch.device) -> None:
        self.family = family
        self.data = data
        try:
            module = build_module(family, data, torchvision)
        except ValueError as exc:
            from ...errors import ModelDefinitionError

            raise ModelDefinitionError(f"{family.title} cannot be built from this model definition: {exc}") from exc
        state = read_state_dict(torch, weights_file)
        load_strict(module, state, family.title, Path(weights_file).name)
        self.module = module.to(device).eval()
        self.device = device
        self._anchors: dict[tuple, Any] = {}

    # -- pixels and objects ------------------------------------------------------------------
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if isinstance(out, dict):  # torchvision segmentation models
            out = out["out"]
        return out

    # -- detectors ---------------------------------------------------------------------------
    def detect(self, x: torch.Tensor, threshold: float, nms_overlap: float) -> list[dict[str, Any]]:
        """Per chip: R-CNN's detections (torchvision's own heads threshold and suppress, before their top-100 cut,
        with the run's ``threshold`` and ``nms_overlap``), or SSD's and RetinaNet's raw per-anchor outputs (the
        shared decoder thresholds and suppresses them)."""
        name = self.family.model_name
        if name in ("MaskRCNN", "FasterRCNN"):
            heads = self.module.roi_heads
            heads.score_thresh = float(threshold)
            heads.nms_thresh = float(nms_overlap)
            return list(self.module(list(x)))
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if name == "SingleShotDetector":
            from .ssd import ssd_anchors, ssd_raw_outputs, ssd_settings

            classes, offsets = self.module(x)
            key = ("ssd", h, w)
            if key not in self._anchors:
                grids, zooms, ratios = ssd_settings(self.data, h)
                anchors, cells = ssd_anchors(grids, zooms, ratios)
                self._anchors[key] = (anchors.to(x.device), cells.to(x.device))
            anchors, cells = self._anchors[key]
            if classes.shape[1] != anchors.shape[0]:
                raise ValueError(f"the SSD head gives {classes.shape[1]} anchors on a {w}x{h} chip but Grids/Zooms/"
                                 f"Ratios describe {anchors.shape[0]}: run it on {self.data.get('ImageWidth')}-pixel "
                                 "tiles")
            return [ssd_raw_outputs(classes[i], offsets[i], anchors, cells, (h, w)) for i in range(x.shape[0])]
        if name == "RetinaNet":
            from .retinanet import retinanet_anchors, retinanet_raw_outputs, retinanet_settings

            classes, offsets, sizes = self.module(x)
            key = ("retina", h, w)
            if key not in self._anchors:
                scales, ratios = retinanet_settings(self.data)
                self._anchors[key] = retinanet_anchors(sizes, ratios, scales).to(x.device)
            anchors = self._anchors[key]
            return [retinanet_raw_outputs(classes[i], offsets[i], anchors, (h, w)) for i in range(x.shape[0])]
        raise ValueError(f"{name} is not a detector")  # pragma: no cover

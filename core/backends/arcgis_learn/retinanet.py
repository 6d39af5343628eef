# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn's RetinaNet, rebuilt after the fastai v1 RetinaNet design.

Keys: ``encoder.N`` (the ResNet body), ``c5top5`` (1x1) and ``c5top6`` (3x3, stride 2) from the
last body stage, ``p6top7`` (ReLU, 3x3 stride 2), ``merges[i].conv_lat`` (1x1 laterals from
stages 3 then 2, added to the nearest-upsampled coarser level), ``smoothers`` (3x3 on the three
finest levels), and two head subnets (``classifier``, ``box_regressor``): four fastai
``conv_layer`` (conv with bias, ReLU, BatchNorm) and a 3x3 conv to ``k x n`` outputs.

Decoding: anchors are (row, column, height, width) in -1..1, ``len(ratios) x len(scales)``
per cell of each pyramid level, sized 4 x scale x sqrt(ratio) cells; offsets are scaled by
(0.1, 0.1, 0.2, 0.2) (centre shift in anchor sizes, log size); sigmoid class scores (no
background).  The head returns these raw per-anchor outputs; the threshold and the class-agnostic NMS are the
shared detection decoder's (:mod:`core.detection.decode`).  Anchors follow from the chip size, so a
RetinaNet runs on tiles of ImageHeight.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fastai_layers import conv_layer, create_body

DEFAULT_SCALES = (1.0, 2 ** (-1 / 3), 2 ** (-2 / 3))
DEFAULT_RATIOS = (0.5, 1.0, 2.0)
#: the classifier's initial bias (arcgis.learn's ``final_bias=-4``)
CLASSIFIER_BIAS = -4.0


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    """fastai v1's initialisation of its convolutions (what arcgis.learn trains from): kaiming-normal weights, zero
    bias.  Only training sees it; a ``.pth`` replaces every weight."""
    with torch.no_grad():
        nn.init.kaiming_normal_(conv.weight)
        conv.bias.zero_()
    return conv


def _conv2d(ni: int, nf: int, ks: int = 3, stride: int = 1) -> nn.Conv2d:
    return _kaiming(nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=ks // 2, bias=True))


class LateralUpsampleMerge(nn.Module):
    def __init__(self, ch: int, ch_lat: int) -> None:
        super().__init__()
        self.conv_lat = _conv2d(ch_lat, ch, ks=1)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return self.conv_lat(lateral) + F.interpolate(x, lateral.shape[-2:], mode="nearest")


def _head(n_out: int, n_anchors: int, chs: int, final_bias: float = 0.0) -> nn.Sequential:
    """A head subnet initialised as arcgis.learn initialises it for training (a ``.pth`` replaces all of it): four
    conv_layers (:func:`_kaiming`), then a convolution with zero weights and the bias ``final_bias`` (-4 for the
    classifier: every anchor starts as background with a probability near 0.02, so that the focal loss does not
    begin by drowning in thousands of anchors)."""
    layers: list[nn.Module] = [conv_layer(chs, chs, bias=True) for _ in range(4)]
    for layer in layers:
        _kaiming(layer[0])
    layers.append(_conv2d(chs, n_out * n_anchors))
    with torch.no_grad():
        layers[-1].weight.zero_()
        layers[-1].bias.fill_(final_bias)
    return nn.Sequential(*layers)


def _stage_channels(backbone: str) -> tuple[int, int, int]:
    """Channels out of body stages layer2, layer3, layer4."""
    return (128, 256, 512) if backbone in ("resnet18", "resnet34") else (512, 1024, 2048)


class RetinaNet(nn.Module):
    def __init__(self, encoder: nn.Sequential, backbone: str, n_classes: int, n_anchors: int, chs: int = 256) -> None:
        super().__init__()
        self.n_classes = n_classes
        c3, c4, c5 = _stage_channels(backbone)
        self.encoder = encoder
        self.c5top5 = _conv2d(c5, chs, ks=1)
        self.c5top6 = _conv2d(c5, chs, stride=2)
        self.p6top7 = nn.Sequential(nn.ReLU(), _conv2d(chs, chs, stride=2))
        self.merges = nn.ModuleList([LateralUpsampleMerge(chs, c4), LateralUpsampleMerge(chs, c3)])
        self.smoothers = nn.ModuleList([_conv2d(chs, chs) for _ in range(3)])
        self.classifier = _head(n_classes, n_anchors, chs, final_bias=CLASSIFIER_BIAS)
        self.box_regressor = _head(4, n_anchors, chs)

    def forward(self, x: torch.Tensor) -> list[Any]:
        stages = {}
        h = x
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i in (5, 6):
                stages[i] = h
        p = [self.c5top5(h), self.c5top6(h)]
        p.append(self.p6top7(p[-1]))
        for merge, lateral in zip(self.merges, (stages[6], stages[5])):
            p = [merge(p[0], lateral)] + p
        for i, smooth in enumerate(self.smoothers):
            p[i] = smooth(p[i])

        def flat(head: nn.Module, k: int) -> torch.Tensor:
            return torch.cat([head(s).permute(0, 2, 3, 1).contiguous().view(s.size(0), -1, k) for s in p], dim=1)

        return [flat(self.classifier, self.n_classes), flat(self.box_regressor, 4),
                [[int(s.size(2)), int(s.size(3))] for s in p]]


def retinanet_settings(data: dict[str, Any]) -> tuple[list[float], list[float]]:
    params = data.get("ModelParameters") if isinstance(data.get("ModelParameters"), dict) else {}
    scales = [float(s) for s in (params.get("scales") or DEFAULT_SCALES)]
    ratios = [float(r) for r in (params.get("ratios") or DEFAULT_RATIOS)]
    return scales, ratios


def build_retinanet(torchvision, backbone: str, num_classes: int, in_channels: int,  # noqa: ANN001
                    data: dict[str, Any]) -> nn.Module:
    scales, ratios = retinanet_settings(data)
    encoder = create_body(torchvision, backbone, in_channels)
    return RetinaNet(encoder, backbone, num_classes, len(scales) * len(ratios)).eval()


def _grid(h: int, w: int) -> torch.Tensor:
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h) if h > 1 else torch.tensor([0.0])
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w) if w > 1 else torch.tensor([0.0])
    return torch.stack([ys[:, None].expand(h, w), xs[None, :].expand(h, w)], dim=-1).reshape(-1, 2)


def retinanet_anchors(sizes: list[list[int]], ratios: list[float], scales: list[float]) -> torch.Tensor:
    """Anchors [A, 4] (row centre, column centre, height, width) in -1..1, ratio-major within a cell."""
    aspects = torch.tensor([[s * math.sqrt(r), s * math.sqrt(1 / r)] for r in ratios for s in scales])
    out = []
    for h, w in sizes:
        sized = 4 * aspects * torch.tensor([2 / h, 2 / w])
        base = _grid(h, w)
        n, a = base.shape[0], aspects.shape[0]
        out.append(torch.cat([base[:, None].expand(n, a, 2), sized[None].expand(n, a, 2)], dim=2).reshape(-1, 4))
    return torch.cat(out)


def retinanet_raw_outputs(classes: torch.Tensor, offsets: torch.Tensor, anchors: torch.Tensor,
                          chip_hw: tuple[int, int]) -> dict:
    """One chip's raw head outputs as every anchor's box (xyxy pixels) and class probabilities (sigmoid, no
    background).  The threshold on each anchor's best class and the class-agnostic NMS are the shared detection
    decoder's (:mod:`core.detection.decode`, layout ``anchors``, ``class_rule`` ``best``)."""
    acts = offsets * offsets.new_tensor([0.1, 0.1, 0.2, 0.2])
    centres = anchors[:, 2:] * acts[:, :2] + anchors[:, :2]
    hw = anchors[:, 2:] * torch.exp(acts[:, 2:])
    tl, br = centres - hw / 2, centres + hw / 2
    h, w = chip_hw
    boxes = torch.stack([(tl[:, 1] + 1) / 2 * w, (tl[:, 0] + 1) / 2 * h, (br[:, 1] + 1) / 2 * w,
                         (br[:, 0] + 1) / 2 * h], dim=1)
    return {"anchor_boxes": boxes, "anchor_scores": torch.sigmoid(classes), "class_rule": "best"}

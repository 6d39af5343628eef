# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn's SingleShotDetector, rebuilt after the fast.ai (2018) multi-grid SSD design.

``Sequential(body, head)``: keys ``0.*`` are the ResNet body, ``1.sconvs.*`` the head's
stride convolutions and ``1.oconvs.*`` its output convolutions.  The head is arcgis.learn's
``SSDHeadv2`` (``SSDVersion`` 2) or ``SSDHead`` (``SSDVersion`` 1 or none: the whole body, each grid reached by an
exact convolution, never upsampling; :mod:`.ssd_versions`).  Version 2: ReLU, then ``sconvs[0]`` (3x3, stride 1,
to 256 channels), then
for each anchor grid of ``Grids`` one ``StdConv`` that reaches the grid from the map before it
(:func:`grid_step`: a ``size x size`` kernel to a grid of 1, a 3x3 kernel of stride 1 or 2 and
padding 0 or 1 to a smaller grid, else nearest upsampling to the grid then a 3x3 kernel) and one
``OutConv`` giving (N + 1) class logits and 4 offsets per anchor (``k = len(Zooms) x
len(Ratios)`` anchors per cell).  A first grid over 8 and far from chip / 32 starts from the body
cut before its last stage (:func:`body_cut`), as arcgis.learn does.

Decoding: anchors are centred on each grid cell, of size ``zoom x ratio / grid``; offsets go
through tanh (centre moves by at most half a cell, size by at most x1.5); class scores through
a sigmoid, column 0 (background) ignored.  The head returns these raw per-anchor outputs; the threshold and NMS
per class (top 50 kept, as arcgis.learn does) are the shared detection decoder's (:mod:`core.detection.decode`).
Coordinates are (row, column) internally, xyxy pixels on the way out.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fastai_layers import create_body
from .ssd_versions import body_cut, grid_step, head_plan  # noqa: F401 - body_cut, grid_step re-exported

#: arcgis.learn keeps the 50 most confident objects of each class per chip
TOP_K = 50


class StdConv(nn.Module):
    """arcgis.learn's ``StdConvv2`` (and, never upsampling, version 1's ``StdConv``): (upsample to the grid,) conv,
    ReLU, BatchNorm, Dropout.  The upsampling has
    no weights, so the keys are ``conv``, ``bn`` whichever way the grid is reached."""

    def __init__(self, nin: int, nout: int, stride: int = 2, drop: float = 0.1, kernel: int = 3, padding: int = 1,
                 upsample_to: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nin, nout, kernel, stride=stride, padding=padding)
        self.bn = nn.BatchNorm2d(nout)
        self.drop = nn.Dropout(drop)
        self.upsample_to = upsample_to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample_to:
            x = F.interpolate(x, size=self.upsample_to, mode="nearest")
        return self.drop(self.bn(F.relu(self.conv(x))))


def _flatten_conv(x: torch.Tensor, k: int) -> torch.Tensor:
    bs, nf = x.shape[:2]
    return x.permute(0, 2, 3, 1).contiguous().view(bs, -1, nf // k)


class OutConv(nn.Module):
    def __init__(self, k: int, nin: int, n_outputs: int) -> None:
        super().__init__()
        self.k = k
        self.oconv1 = nn.Conv2d(nin, n_outputs * k, 3, padding=1)
        self.oconv2 = nn.Conv2d(nin, 4 * k, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [_flatten_conv(self.oconv1(x), self.k), _flatten_conv(self.oconv2(x), self.k)]


class SSDHead(nn.Module):
    """arcgis.learn's ``SSDHeadv2`` or ``SSDHead`` (the same forward and keys): one stride-1 convolution to 256
    channels, then per grid a :class:`StdConv` reaching it by its ``steps`` entry (stride, padding, kernel,
    upsample; :func:`.ssd_versions.head_plan`) and an :class:`OutConv`.  ``bias``: the class logits' initial
    bias (-4: every anchor starts as background with a probability near 0.98, as arcgis.learn initialises it)."""

    def __init__(self, grids: list[int], k: int, n_outputs: int, nin: int, steps: list[tuple[int, int, int, bool]],
                 drop: float = 0.3, bias: float = -4.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.sconvs = nn.ModuleList([StdConv(nin, 256, stride=1, drop=drop)])
        self.oconvs = nn.ModuleList()
        for g, (stride, padding, kernel, upsample) in zip(grids, steps):
            self.sconvs.append(StdConv(256, 256, stride=stride, drop=drop, kernel=kernel, padding=padding,
                                       upsample_to=g if upsample else 0))
            out = OutConv(k, 256, n_outputs)
            with torch.no_grad():
                out.oconv1.bias.fill_(bias)
            self.oconvs.append(out)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.sconvs[0](self.drop(F.relu(x)))
        classes, boxes = [], []
        for sconv, oconv in zip(self.sconvs[1:], self.oconvs):
            x = sconv(x)
            c, b = oconv(x)
            classes.append(c)
            boxes.append(b)
        return [torch.cat(classes, dim=1), torch.cat(boxes, dim=1)]


def ssd_settings(data: dict[str, Any], chip: int) -> tuple[list[int], list[float], list[tuple[float, float]]]:
    """Grids, Zooms and Ratios from the .emd, defaults [4, 2, 1], [1.0], [[1.0, 1.0]]."""
    grids = [int(g) for g in data.get("Grids") or [4, 2, 1]]
    zooms = [float(z) for z in data.get("Zooms") or [1.0]]
    ratios = [(float(r[0]), float(r[1])) for r in (data.get("Ratios") or [[1.0, 1.0]])]
    return grids, zooms, ratios


def build_ssd(torchvision, backbone: str, num_classes: int, chip: int, in_channels: int,  # noqa: ANN001
              data: dict[str, Any]) -> nn.Module:
    """The network the ``.emd`` describes, with the head of its ``SSDVersion`` (absent: 1, as arcgis.learn reads
    it): both versions store the same keys, so only the version tells them apart (:mod:`.ssd_versions`)."""
    grids, zooms, ratios = ssd_settings(data, chip)
    cut, feature, channels, steps = head_plan(data, backbone, chip, grids)
    body = create_body(torchvision, backbone, in_channels)
    if cut == 3:
        body = nn.Sequential(*list(body.children())[:-1])
    head = SSDHead(grids, len(zooms) * len(ratios), num_classes + 1, channels, steps)
    return nn.Sequential(body, head).eval()


def ssd_anchors(grids: list[int], zooms: list[float], ratios: list[tuple[float, float]]) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """Anchors [A, 4] as (row centre, column centre, height, width) in 0..1, and each anchor's cell size [A, 1]."""
    scales = [(z * i, z * j) for z in zooms for (i, j) in ratios]
    rows, sizes, cells = [], [], []
    for g in grids:
        off = 1.0 / (2 * g)
        lin = torch.linspace(off, 1 - off, g) if g > 1 else torch.tensor([0.5])
        cy = lin.repeat_interleave(g)  # cell index r * g + c: row r
        cx = lin.repeat(g)
        centres = torch.stack([cy, cx], dim=1).repeat_interleave(len(scales), dim=0)
        hw = torch.tensor([[o / g, p / g] for _ in range(g * g) for o, p in scales])
        rows.append(centres)
        sizes.append(hw)
        cells.append(torch.full((g * g * len(scales), 1), 1.0 / g))
    return torch.cat([torch.cat(rows), torch.cat(sizes)], dim=1), torch.cat(cells)


def ssd_raw_outputs(classes: torch.Tensor, offsets: torch.Tensor, anchors: torch.Tensor, cells: torch.Tensor,
                    chip_hw: tuple[int, int]) -> dict:
    """One chip's raw head outputs as every anchor's box (xyxy pixels) and class probabilities (sigmoid, the
    background column dropped).  The threshold, the per-class NMS and arcgis.learn's top 50 per class are the
    shared detection decoder's (:mod:`core.detection.decode`, layout ``anchors``, ``class_rule`` ``each``)."""
    act = torch.tanh(offsets)
    centres = act[:, :2] / 2 * cells + anchors[:, :2]
    hw = (act[:, 2:] / 2 + 1) * anchors[:, 2:]
    tl, br = centres - hw / 2, centres + hw / 2
    h, w = chip_hw
    boxes = torch.stack([tl[:, 1] * w, tl[:, 0] * h, br[:, 1] * w, br[:, 0] * h], dim=1)
    return {"anchor_boxes": boxes, "anchor_scores": torch.sigmoid(classes)[:, 1:], "class_rule": "each",
            "top_k": TOP_K}

# SPDX-License-Identifier: GPL-2.0-or-later
"""Exact object detectors built by the tests: they find bright squares on a dark background.

A square's top-left pixel is bright with dark pixels left of and above it; its width and height are the
runs of bright pixels to the right and downwards (up to ``MAX_SIZE``).  The confidence is the square's
brightness in its class band (band 1 = class "red", band 2 = class "green"), after ``x / 255``.  So the
boxes are exact, one per square (or per visible piece of a square cut by the tile edge), and the scores
are the pixel values / 255.

* :func:`yolo_v8_onnx`: Ultralytics YOLOv8 layout ``[B, 4 + 2, H * W]`` with ``names``/``imgsz``/``task``
  metadata as Ultralytics writes it.
* :func:`yolo_variant_onnx`: the Ultralytics OBB layout (angle 0) and segmentation layout (one mask
  coefficient, prototypes +10 on bright pixels, -10 elsewhere).
* :func:`torchvision_script`: a TorchScript ``forward(images: List[Tensor])`` returning
  ``(losses, detections)`` like a scripted torchvision detector, labels 1-based, optionally with
  ``masks`` ``[N, 1, H, W]`` (0.9 inside the square).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

MAX_SIZE = 32
BRIGHT = 0.3


class SquareCore(torch.nn.Module):
    """corner mask, width, height and the two class scores, each [B, H, W]."""

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        super().__init__()
        self.max_size = max_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r = x[:, 0]
        g = x[:, 1]
        m = (torch.maximum(r, g) > 0.3).float()  # BRIGHT
        h = m.shape[1]
        w = m.shape[2]
        left = F.pad(m, (1, 0))[:, :, :w]
        top = F.pad(m, (0, 0, 1, 0))[:, :h, :]
        corner = m * (1.0 - left) * (1.0 - top)
        run = m
        width = m
        for k in range(1, self.max_size):
            run = run * F.pad(m, (0, k))[:, :, k:]
            width = width + run
        run = m
        height = m
        for k in range(1, self.max_size):
            run = run * F.pad(m, (0, 0, 0, k))[:, k:, :]
            height = height + run
        red = (r >= g).float()
        return corner, width, height, corner * red * r, corner * (1.0 - red) * g


class SquareYoloV8(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.core = SquareCore()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corner, width, height, s0, s1 = self.core(x)
        b, h, w = corner.shape
        xs = torch.arange(w, dtype=x.dtype).view(1, 1, w).expand(b, h, w)
        ys = torch.arange(h, dtype=x.dtype).view(1, h, 1).expand(b, h, w)
        out = torch.stack([xs + width / 2, ys + height / 2, width, height, s0, s1], dim=1)
        return out.reshape(b, 6, h * w)


class SquareYoloVariant(torch.nn.Module):
    """The v8 layout plus an angle row of zeros (Ultralytics OBB), or plus one mask coefficient with full-size
    prototypes (Ultralytics segmentation): the prototype is +10 on bright pixels and -10 elsewhere."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.core = SquareCore()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        corner, width, height, s0, s1 = self.core(x)
        b, h, w = corner.shape
        xs = torch.arange(w, dtype=x.dtype).view(1, 1, w).expand(b, h, w)
        ys = torch.arange(h, dtype=x.dtype).view(1, h, 1).expand(b, h, w)
        extra = torch.zeros_like(corner) if self.kind == "obb" else torch.ones_like(corner)
        out = torch.stack([xs + width / 2, ys + height / 2, width, height, s0, s1, extra], dim=1).reshape(b, 7, h * w)
        bright = (torch.maximum(x[:, 0], x[:, 1]) > 0.3).float()
        return out, (bright * 20.0 - 10.0).unsqueeze(1)


class SquareTorchvision(torch.nn.Module):
    def __init__(self, with_masks: bool = True) -> None:
        super().__init__()
        self.core = SquareCore()
        self.with_masks = with_masks

    def forward(self, images: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        x = torch.stack(images)
        corner, width, height, s0, s1 = self.core(x)
        h = x.shape[2]
        w = x.shape[3]
        results: list[dict[str, torch.Tensor]] = []
        yy = torch.arange(h).view(1, h, 1)
        xx = torch.arange(w).view(1, 1, w)
        for b in range(x.shape[0]):
            score = torch.maximum(s0[b], s1[b]).flatten()
            idx = torch.nonzero(score > 0).flatten()
            px = (idx % w).float()
            py = torch.div(idx, w, rounding_mode="floor").float()
            bw = width[b].flatten()[idx]
            bh = height[b].flatten()[idx]
            boxes = torch.stack([px, py, px + bw, py + bh], dim=1)
            labels = torch.where(s0[b].flatten()[idx] > 0, torch.ones_like(idx), torch.full_like(idx, 2))
            det: dict[str, torch.Tensor] = {"boxes": boxes, "scores": score[idx], "labels": labels}
            if self.with_masks:
                x1 = px.view(-1, 1, 1)
                y1 = py.view(-1, 1, 1)
                inside = (xx >= x1) & (xx < x1 + bw.view(-1, 1, 1)) & (yy >= y1) & (yy < y1 + bh.view(-1, 1, 1))
                det["masks"] = (inside.float() * 0.9).unsqueeze(1)
            results.append(det)
        losses: dict[str, torch.Tensor] = {}
        return losses, results


def yolo_v8_onnx(path: Path, tile: int, names: dict | None = None, fixed_batch: int | None = None,
                 dynamic_size: bool = False) -> Path:
    """The square finder as an Ultralytics YOLOv8 ONNX export (``names``, ``imgsz``, ``task``, ``stride``);
    ``dynamic_size``: any tile size goes in (``imgsz`` then says ``tile``)."""
    module = SquareYoloV8().eval()
    example = torch.zeros(fixed_batch or 1, 3, tile, tile)
    axes = None if fixed_batch else {"images": {0: "batch"}, "output0": {0: "batch"}}
    if dynamic_size:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["images"],
                          output_names=["output0"], dynamic_axes=axes, opset_version=13)
    import onnx

    model = onnx.load(str(path))
    meta = {"names": str(names or {0: "red", 1: "green"}), "imgsz": json.dumps([tile, tile]), "task": "detect",
            "stride": "32", "description": "Ultralytics YOLOv8n model (square finder built by the tests)"}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


class SquareSeparate(torch.nn.Module):
    """One image per call, torchvision's ONNX export layout: boxes [N, 4], labels [N], scores [N]."""

    def __init__(self) -> None:
        super().__init__()
        self.tv = SquareTorchvision(with_masks=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        det = self.tv([x[0]])[1][0]
        return det["boxes"], det["labels"], det["scores"]


def separate_onnx(path: Path, tile: int) -> Path:
    """The square finder exported to ONNX with separate, named boxes / labels / scores outputs (batch 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SquareSeparate().eval(), (torch.zeros(1, 3, tile, tile),), str(path), dynamo=False,
                          input_names=["image"], output_names=["boxes", "labels", "scores"], opset_version=13,
                          dynamic_axes={"boxes": {0: "n"}, "labels": {0: "n"}, "scores": {0: "n"}})
    return path


def yolo_variant_onnx(path: Path, tile: int, kind: str) -> Path:
    """The square finder as an Ultralytics OBB (``kind`` "obb", angle 0) or segmentation ("segment") export."""
    module = SquareYoloVariant(kind).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, tile, tile),), str(path), dynamo=False, input_names=["images"],
                          output_names=["output0", "output1"], opset_version=13,
                          dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}, "output1": {0: "batch"}})
    import onnx

    model = onnx.load(str(path))
    if kind == "obb":  # an OBB export has one output: drop the prototypes
        del model.graph.output[1]
    for k, v in {"names": str({0: "red", 1: "green"}), "imgsz": json.dumps([tile, tile]), "task": kind}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def torchvision_script(path: Path, with_masks: bool = True, emd: dict | None = None) -> Path:
    scripted = torch.jit.script(SquareTorchvision(with_masks).eval())
    extra = {"dltools.json": json.dumps(emd)} if emd else {}
    torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


# ------------------------------------------------------------------------------------------------ scene
def square_scene(width: int, height: int, squares: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """A 3-band uint8 image with ``(x, y, size, class, value)`` squares (class 0 in band 1, 1 in band 2);
    squares may reach outside the image (they are clipped)."""
    img = np.zeros((3, height, width), np.uint8)
    for x, y, s, cls, value in squares:
        img[cls, max(0, y):max(0, y + s), max(0, x):max(0, x + s)] = value
    return img


def expected_boxes(width: int, height: int, squares: list[tuple[int, int, int, int, int]]) -> list[tuple]:
    """(x1, y1, x2, y2, class, confidence 0-100) of each square's visible part, in pixels."""
    out = []
    for x, y, s, cls, value in squares:
        x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + s), min(height, y + s)
        if x2 > x1 and y2 > y1:
            out.append((x1, y1, x2, y2, cls, value / 255.0 * 100.0))
    return out

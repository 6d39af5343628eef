# SPDX-License-Identifier: GPL-2.0-or-later
"""RoIAlign on a small feature map as two matrix products: the same numbers as torchvision's, a fraction of the time.

Why: on the CPU, torchvision's RoIAlign backward pass is one thread walking every sample of every region; for the
resnet18/34 R-CNNs (one feature map at stride 32: 3 x 3 cells for a 64-pixel chip at 1.5 x) it took 0.09 s of a
FasterRCNN step for the box head's 64 regions and as much again for MaskRCNN's mask head (measured, 2 threads), a
fifth of a MaskRCNN step.

How: torchvision's RoIAlign (``aligned=False``, a fixed ``sampling_ratio``) averages, over the samples of each bin,
the bilinear interpolation of the map at the sample; its boundary rules (a sample beyond one cell outside the map
gives 0, one just outside is clamped to the edge) act on the row and the column separately, so each output value is
``sum_h sum_w ay[p, h] * ax[q, w] * map[h, w]``, ``ay`` and ``ax`` the bins' mean interpolation weights along each
axis.  For the regions of one image that is one matrix product of the map ``[C, H*W]`` with their weights
``[H*W, K*P*Q]``; autograd's backward is the transposed product.  The result equals torchvision's within float
rounding (tested, with its gradient).  Where it does not pay or does not apply (several feature maps: FPN; an
adaptive ``sampling_ratio``; weights over :data:`MAX_WEIGHTS` numbers, i.e. large maps with many regions) the
wrapped torchvision pooler runs unchanged.  The poolers hold no weights: the network's state_dict is untouched.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

#: largest weight matrix (numbers, per image) computed on the fast path: 8 M floats (32 MB)
MAX_WEIGHTS = 1 << 23


def axis_weights(torch, start, bin_size, pooled: int, grid: int, size: int):  # noqa: ANN001, ANN201
    """``[K, pooled, size]``: per region and bin, the mean over the bin's ``grid`` samples of their bilinear
    weights on the ``size`` cells of one axis (torchvision's RoIAlign rules, ``aligned=False``)."""
    dtype = start.dtype
    steps = torch.arange(pooled, dtype=dtype, device=start.device)[None, :, None]
    offsets = (torch.arange(grid, dtype=dtype, device=start.device)[None, None, :] + 0.5)
    pos = start[:, None, None] + steps * bin_size[:, None, None] + offsets * (bin_size / grid)[:, None, None]
    inside = (pos >= -1.0) & (pos <= size)  # further out a sample is 0
    pos = pos.clamp(min=0.0)
    low = pos.floor()
    last = low >= size - 1  # at the last cell: no interpolation
    low = torch.where(last, torch.full_like(low, size - 1), low)
    pos = torch.where(last, low, pos)
    high = torch.where(last, low, low + 1)
    frac = pos - low
    cells = torch.arange(size, dtype=dtype, device=start.device)
    weights = (1 - frac)[..., None] * (cells == low[..., None]) + frac[..., None] * (cells == high[..., None])
    return (weights * inside[..., None]).sum(dim=2) / grid


def image_weights(torch, boxes, scale: float, pooled: tuple[int, int], grid: int,  # noqa: ANN001, ANN201
                  size: tuple[int, int]):
    """``[H*W, K*P*Q]``: the weights of the map's cells in each bin of each of the ``K`` boxes (x1, y1, x2, y2 in
    image pixels; the map is the image times ``scale``)."""
    x1, y1, x2, y2 = (boxes[:, i] * scale for i in range(4))
    height = (y2 - y1).clamp(min=1.0)
    width = (x2 - x1).clamp(min=1.0)
    ay = axis_weights(torch, y1, height / pooled[0], pooled[0], grid, size[0])  # [K, P, H]
    ax = axis_weights(torch, x1, width / pooled[1], pooled[1], grid, size[1])  # [K, Q, W]
    both = ay[:, :, None, :, None] * ax[:, None, :, None, :]  # [K, P, Q, H, W]
    return both.reshape(len(boxes) * pooled[0] * pooled[1], size[0] * size[1]).t()


def small_map_roi_align(torch, feature, boxes: list, scale: float, pooled: tuple[int, int],  # noqa: ANN001, ANN201
                        grid: int):
    """torchvision's ``roi_align(feature, boxes, pooled, scale, grid, aligned=False)``, ``[sum K, C, P, Q]``, as
    one matrix product per image."""
    channels, rows, cols = feature.shape[1:]
    outputs = []
    for index, image_boxes in enumerate(boxes):
        if len(image_boxes) == 0:
            continue
        weights = image_weights(torch, image_boxes.to(feature.dtype), scale, pooled, grid, (rows, cols))
        values = feature[index].reshape(channels, rows * cols) @ weights  # [C, K*P*Q]
        outputs.append(values.reshape(channels, len(image_boxes), *pooled).transpose(0, 1))
    if not outputs:
        return feature.new_zeros((0, channels, *pooled))
    return torch.cat(outputs).contiguous()


def map_scale(feature, image_shapes: list) -> float:  # noqa: ANN001
    """The map's scale as torchvision's MultiScaleRoIAlign infers it: 2 ** round(log2(map rows / image rows)), the
    image rows being the largest of the batch's."""
    rows = max(int(shape[0]) for shape in image_shapes)
    return 2.0 ** round(math.log2(feature.shape[-2] / rows))


def _fits(feature, boxes: list, pooled: tuple[int, int]) -> bool:  # noqa: ANN001
    cells = int(feature.shape[-2]) * int(feature.shape[-1])
    return all(len(b) * pooled[0] * pooled[1] * cells <= MAX_WEIGHTS for b in boxes)


@lru_cache(maxsize=1)
def _pooler_class():  # noqa: ANN202 - an nn.Module subclass, made when torch is imported
    import torch

    class SmallMapRoIAlign(torch.nn.Module):
        """A MultiScaleRoIAlign that pools one small map by :func:`small_map_roi_align`; otherwise the wrapped one."""

        def __init__(self, pooler) -> None:  # noqa: ANN001
            super().__init__()
            self.pooler = pooler
            size = pooler.output_size
            self.pooled = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size),) * 2

        def forward(self, features: dict, boxes: list, image_shapes: list) -> Any:  # noqa: ANN401
            maps = [v for k, v in features.items() if k in self.pooler.featmap_names]
            grid = int(self.pooler.sampling_ratio)
            if len(maps) != 1 or grid <= 0 or not _fits(maps[0], boxes, self.pooled):
                return self.pooler(features, boxes, image_shapes)
            return small_map_roi_align(torch, maps[0], boxes, map_scale(maps[0], image_shapes), self.pooled, grid)

    return SmallMapRoIAlign


def use_small_map_pooling(module) -> int:  # noqa: ANN001
    """Wrap an R-CNN's box (and mask) poolers in :func:`small_map_roi_align`'s; the number wrapped.  The wrapper
    holds no weights, so the state_dict keeps torchvision's keys."""
    heads = getattr(module, "roi_heads", None)  # SSD and RetinaNet have none
    if heads is None:
        return 0
    wrapper = _pooler_class()
    wrapped = 0
    for name in ("box_roi_pool", "mask_roi_pool"):
        pooler = getattr(heads, name, None)
        if pooler is not None and not isinstance(pooler, wrapper):
            setattr(heads, name, wrapper(pooler))
            wrapped += 1
    return wrapped

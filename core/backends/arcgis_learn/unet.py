# SPDX-License-Identifier: GPL-2.0-or-later
"""fastai v1 ``DynamicUnet`` as arcgis.learn's UnetClassifier builds it, written for this plugin.

``DynamicUnet(create_body(resnet), n_classes, (chip, chip), blur=False, blur_final=True,
norm_type=None, last_cross=True, bottle=True)``: ``layers`` 0 the ResNet body, 1 BatchNorm,
2 ReLU, 3 two middle conv_layers (ni -> 2ni -> ni), 4.. one UnetBlock per resolution change
of the body (deepest first), then a PixelShuffle to the input size, the input concatenated
(dense merge), a bottleneck res_block and a 1x1 conv to the class scores.  fastai keeps the
body's intermediate outputs with forward hooks; here :meth:`DynamicUnet.forward` keeps them
itself, which computes the same thing and holds no state between calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fastai_layers import MergeLayer, PixelShuffleICNR, conv_layer, res_block


class UnetBlock(nn.Module):
    """Upsample the deeper features, concatenate the skip features (batch-normed), ReLU, two convs."""

    def __init__(self, up_in_c: int, x_in_c: int, final_div: bool = True) -> None:
        super().__init__()
        self.shuf = PixelShuffleICNR(up_in_c, up_in_c // 2)
        self.bn = nn.BatchNorm2d(x_in_c)
        ni = up_in_c // 2 + x_in_c
        nf = ni if final_div else ni // 2
        self.conv1 = conv_layer(ni, nf, batch_norm=False)
        self.conv2 = conv_layer(nf, nf, batch_norm=False)
        self.relu = nn.ReLU()

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up_out = self.shuf(up_in)
        if skip.shape[-2:] != up_out.shape[-2:]:
            up_out = F.interpolate(up_out, skip.shape[-2:], mode="nearest")
        cat_x = self.relu(torch.cat([up_out, self.bn(skip)], dim=1))
        return self.conv2(self.conv1(cat_x))


class ResizeTo(nn.Module):
    """fastai's final ``Lambda(F.interpolate(x, imsize, 'nearest'))``, used when the chip size is odd."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, self.size, mode="nearest")


def _size_change_indexes(widths: list[int]) -> list[int]:
    """fastai's ``_get_sfs_idxs``: the layers after which the resolution changes."""
    idxs = [i for i in range(len(widths) - 1) if widths[i] != widths[i + 1]]
    if widths[0] != widths[1]:
        idxs = [0] + idxs
    return idxs


class DynamicUnet(nn.Module):
    def __init__(self, body: nn.Sequential, n_classes: int, img_size: tuple[int, int], in_channels: int) -> None:
        super().__init__()
        with torch.no_grad():
            body.eval()
            x = torch.zeros(1, in_channels, *img_size)
            sizes = []
            for layer in body:
                x = layer(x)
                sizes.append(tuple(x.shape))
        skips = list(reversed(_size_change_indexes([s[-1] for s in sizes])))
        self.skip_indexes = skips
        ni = sizes[-1][1]
        middle = nn.Sequential(conv_layer(ni, ni * 2, batch_norm=False), conv_layer(ni * 2, ni, batch_norm=False))
        layers: list[nn.Module] = [body, nn.BatchNorm2d(ni), nn.ReLU(), middle]
        up_c = ni
        h, w = sizes[-1][-2:]
        for i, idx in enumerate(skips):
            not_final = i != len(skips) - 1
            block = UnetBlock(up_c, sizes[idx][1], final_div=not_final)
            layers.append(block)
            ni_cat = up_c // 2 + sizes[idx][1]
            up_c = ni_cat if not_final else ni_cat // 2
            h, w = sizes[idx][-2:]
        if tuple(img_size) != (sizes[0][-2], sizes[0][-1]):
            layers.append(PixelShuffleICNR(up_c))
        h, w = h * 2, w * 2
        if (h, w) != tuple(img_size):
            layers.append(ResizeTo(tuple(img_size)))
        layers.append(MergeLayer(dense=True))
        nf = up_c + in_channels
        layers.append(res_block(nf, bottle=True, batch_norm=False))
        layers.append(conv_layer(nf, n_classes, ks=1, batch_norm=False, use_activ=False))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.layers[0]
        wanted = set(self.skip_indexes)
        stored: dict[int, torch.Tensor] = {}
        h = x
        for i, layer in enumerate(body):
            h = layer(h)
            if i in wanted:
                stored[i] = h
        skips = iter(self.skip_indexes)
        for layer in list(self.layers)[1:]:
            if isinstance(layer, UnetBlock):
                h = layer(h, stored[next(skips)])
            elif isinstance(layer, MergeLayer):
                h = layer(h, x)
            else:
                h = layer(h)
        return h

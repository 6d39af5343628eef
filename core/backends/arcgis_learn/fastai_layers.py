# SPDX-License-Identifier: GPL-2.0-or-later
"""The few fastai-v1 building blocks arcgis.learn networks are made of, written for this plugin.

Rebuilt from the published fastai v1 design (Apache-2.0), module for module, so that the
``state_dict`` keys and the arithmetic match what arcgis.learn saved:

* :func:`conv_layer`: ``Sequential(conv, ReLU, BatchNorm)``; without batch norm the conv
  has a bias (keys ``0.weight``, ``0.bias``);
* :class:`SequentialEx` + :class:`MergeLayer`: a sequence whose merge layer adds (or, dense,
  concatenates after) the sequence's own input (keys under ``layers.``);
* :func:`res_block`, :class:`PixelShuffleICNR` (1x1 conv to 4x channels, ReLU, pixel shuffle);
* :func:`create_body` (a torchvision ResNet without its pooling and classifier) and
  :func:`create_head` (concat pooling, BN/Dropout/Linear twice).

Built for inference, these blocks do not reproduce fastai's initialisations (ICNR, zeroed batch
norms): the weights come from the ``.pth``.  The one network trained from these blocks whose
training depends on its start, RetinaNet, initialises its own layers (:mod:`.retinanet`).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_layer(ni: int, nf: int, ks: int = 3, stride: int = 1, bias: bool | None = None,
               batch_norm: bool = True, use_activ: bool = True) -> nn.Sequential:
    """fastai v1 ``conv_layer``: conv (padding (ks-1)//2), then ReLU, then BatchNorm2d."""
    if bias is None:
        bias = not batch_norm
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=(ks - 1) // 2, bias=bias)]
    if use_activ:
        layers.append(nn.ReLU(inplace=True))
    if batch_norm:
        layers.append(nn.BatchNorm2d(nf))
    return nn.Sequential(*layers)


class MergeLayer(nn.Module):
    """Add the enclosing sequence's input to x, or concatenate it after x (``dense``)."""

    def __init__(self, dense: bool = False) -> None:
        super().__init__()
        self.dense = dense

    def forward(self, x: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, orig], dim=1) if self.dense else x + orig


class SequentialEx(nn.Module):
    """A sequence (in ``self.layers``) whose :class:`MergeLayer` members see the sequence's input."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x
        for layer in self.layers:
            res = layer(res, x) if isinstance(layer, MergeLayer) else layer(res)
        return res


def res_block(nf: int, bottle: bool = False, batch_norm: bool = True) -> SequentialEx:
    """fastai v1 ``res_block`` (not dense): two conv_layers and a residual add."""
    inner = nf // 2 if bottle else nf
    return SequentialEx(conv_layer(nf, inner, batch_norm=batch_norm), conv_layer(inner, nf, batch_norm=batch_norm),
                        MergeLayer(dense=False))


class PixelShuffleICNR(nn.Module):
    """fastai v1 ``PixelShuffle_ICNR`` without blur: 1x1 conv to nf*4 channels, ReLU, pixel shuffle x2."""

    def __init__(self, ni: int, nf: int | None = None, scale: int = 2) -> None:
        super().__init__()
        nf = ni if nf is None else nf
        self.conv = conv_layer(ni, nf * scale * scale, ks=1, batch_norm=False, use_activ=False)
        self.shuf = nn.PixelShuffle(scale)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuf(self.relu(self.conv(x)))


class AdaptiveConcatPool2d(nn.Module):
    """Max pooling and average pooling to 1x1, concatenated (max first)."""

    def __init__(self) -> None:
        super().__init__()
        self.mp = nn.AdaptiveMaxPool2d(1)
        self.ap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], dim=1)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


def resnet(torchvision, name: str) -> nn.Module:  # noqa: ANN001 - the torchvision module
    """A torchvision ResNet with no weights (they come from the .pth)."""
    return getattr(torchvision.models, name)(weights=None)


def first_conv_for(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The same first convolution taking ``in_channels`` bands (multispectral models: same key, other shape)."""
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                     padding=conv.padding, bias=conv.bias is not None)


def create_body(torchvision, backbone: str, in_channels: int = 3) -> nn.Sequential:  # noqa: ANN001
    """fastai v1 ``create_body`` for a ResNet: its children without the last two (pooling, fc)."""
    model = resnet(torchvision, backbone)
    model.conv1 = first_conv_for(model.conv1, in_channels)
    return nn.Sequential(*list(model.children())[:-2])


def body_channels(backbone: str) -> int:
    """Channels out of a ResNet body."""
    return 512 if backbone in ("resnet18", "resnet34") else 2048


def create_head(nf: int, nc: int) -> nn.Sequential:
    """fastai v1 ``create_head(nf, nc)``: concat pool, flatten, [BN, Dropout .25, Linear 512, ReLU], [BN, Dropout .5,
    Linear nc]."""
    return nn.Sequential(
        AdaptiveConcatPool2d(), Flatten(),
        nn.BatchNorm1d(nf), nn.Dropout(0.25), nn.Linear(nf, 512), nn.ReLU(inplace=True),
        nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, nc),
    )

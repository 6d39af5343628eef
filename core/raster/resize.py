# SPDX-License-Identifier: GPL-2.0-or-later
"""Resizing a chip axis by axis with a matrix: area averaging when shrinking, bilinear when enlarging.

Shared by Classify Objects (chips cut around features, CropSizeFixed 0) and Train Deep Learning Model (Labeled_Tiles
chips of several sizes), so that a chip is resized the same way in training and in inference.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """A (n_out, n_in) matrix resizing one axis: area average when shrinking, bilinear when enlarging.

    Every row sums to 1, so a constant stays the same constant.
    """
    m = axis_matrix(int(n_in), int(n_out))
    return m.copy()


@lru_cache(maxsize=256)
def axis_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The cached matrix of :func:`resize_matrix` (shared: never modify it)."""
    if n_in == n_out:
        return np.eye(n_out)
    m = np.zeros((n_out, n_in))
    if n_out < n_in:
        scale = n_in / n_out
        for i in range(n_out):
            a, b = i * scale, (i + 1) * scale
            j0, j1 = int(math.floor(a)), min(n_in, int(math.ceil(b)))
            for j in range(j0, j1):
                overlap = min(b, j + 1) - max(a, j)
                if overlap > 0:
                    m[i, j] = overlap / scale
    else:
        scale = n_in / n_out
        for i in range(n_out):
            u = min(max((i + 0.5) * scale - 0.5, 0.0), n_in - 1.0)
            j0 = int(math.floor(u))
            f = u - j0
            j1 = min(j0 + 1, n_in - 1)
            m[i, j0] += 1.0 - f
            m[i, j1] += f
    return m

def resize_chip(chip: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A ``(bands, h, w)`` chip resized to ``(bands, rows, cols)`` (float64), each axis by :func:`resize_matrix`."""
    my, mx = axis_matrix(chip.shape[-2], rows), axis_matrix(chip.shape[-1], cols)
    return np.einsum("ij,bjk,lk->bil", my, chip.astype(np.float64), mx)

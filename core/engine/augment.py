# SPDX-License-Identifier: GPL-2.0-or-later
"""Test-time augmentation: the 8 dihedral transforms of a square tile and their inverses.

Transform k (0-7): bit 4 transposes, then bit 1 flips rows, bit 2 flips columns.
In map space all 8 are used (4 flips when tiles are not square); in pixel space
(``ImageSpaceUsed`` other than ``MAP_SPACE``) only identity and a left-right flip,
as arcgis.learn does, since "up" has a meaning in oblique imagery.
"""

from __future__ import annotations

import numpy as np


def transform_ids(square: bool, map_space: bool) -> list[int]:
    if not map_space:
        return [0, 2]
    return list(range(8)) if square else [0, 1, 2, 3]


def forward(x: np.ndarray, k: int) -> np.ndarray:
    """Apply transform k to the last two axes."""
    if k & 4:
        x = np.swapaxes(x, -1, -2)
    if k & 1:
        x = x[..., ::-1, :]
    if k & 2:
        x = x[..., :, ::-1]
    return np.ascontiguousarray(x)


def inverse(x: np.ndarray, k: int) -> np.ndarray:
    """Undo transform k on the last two axes."""
    if k & 2:
        x = x[..., :, ::-1]
    if k & 1:
        x = x[..., ::-1, :]
    if k & 4:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(x)


def merge(stack: list[np.ndarray], policy: str) -> np.ndarray:
    """Merge the inverted predictions: mean (default), max or min."""
    arr = np.stack(stack)
    if policy == "max":
        return arr.max(axis=0)
    if policy == "min":
        return arr.min(axis=0)
    return arr.mean(axis=0)

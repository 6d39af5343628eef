# SPDX-License-Identifier: GPL-2.0-or-later
"""Chips turned by any angle: where each turned pixel comes from, and where it sits on the map.

A chip turned by ``degrees`` counter-clockwise keeps its size and its centre; each of its pixels takes the value of
the input pixel under its centre (nearest neighbour: raw values, never blended), and pixels whose centre falls
outside the raster are 0 and not valid.  Its geotransform carries the rotation, so every pixel keeps its place on
the map and GDAL, QGIS and the world file agree.  Quarter turns are exact rearrangements and take
``chip_files.turn_array`` instead (the result is the same, it is only cheaper).
"""

from __future__ import annotations

import math

import numpy as np

from ...raster.gdal_io import RasterSource


def _cos_sin(degrees: float) -> tuple[float, float]:
    phi = math.radians(degrees)
    c, s = math.cos(phi), math.sin(phi)
    # exact quarter values, so that 90 degrees lands on pixel centres exactly
    return (round(c) if abs(c - round(c)) < 1e-12 else c), (round(s) if abs(s - round(s)) < 1e-12 else s)


def source_pixels(x0: int, y0: int, w: int, h: int, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Input pixel coordinates (column, row; fractional) under the centre of each pixel of the turned chip."""
    c, s = _cos_sin(degrees)
    j, i = np.meshgrid(np.arange(w) + 0.5 - w / 2, np.arange(h) + 0.5 - h / 2)
    return x0 + w / 2 + c * j - s * i, y0 + h / 2 + s * j + c * i


def rotated_transform(gt: tuple[float, ...], x0: int, y0: int, w: int, h: int, degrees: float) -> tuple[float, ...]:
    """The geotransform of the chip (x0, y0, w, h) of a raster whose geotransform is ``gt``, turned by ``degrees``."""
    c, s = _cos_sin(degrees)
    ax = x0 + w / 2 - c * w / 2 + s * h / 2  # input pixel coordinates of the turned chip's top-left corner
    ay = y0 + h / 2 - s * w / 2 - c * h / 2
    return (gt[0] + ax * gt[1] + ay * gt[2], c * gt[1] + s * gt[2], -s * gt[1] + c * gt[2],
            gt[3] + ax * gt[4] + ay * gt[5], c * gt[4] + s * gt[5], -s * gt[4] + c * gt[5])


def read_rotated(source: RasterSource, x0: int, y0: int, w: int, h: int,
                 degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The turned chip's pixels ``[bands, h, w]`` and validity ``[h, w]``: one window read, then a gather."""
    cols, rows = source_pixels(x0, y0, w, h, degrees)
    ci, ri = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
    bx, by = int(ci.min()), int(ri.min())
    data, valid = source.read(bx, by, int(ci.max()) - bx + 1, int(ri.max()) - by + 1)
    return data[:, ri - by, ci - bx], valid[ri - by, ci - bx]

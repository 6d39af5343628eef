# SPDX-License-Identifier: GPL-2.0-or-later
"""The chip grid: ArcGIS's padded tiling, laid out once over the whole output.

Chips of ``tile_h x tile_w`` are placed at a stride of ``tile - 2*pad``, the first
one starting ``pad`` pixels above and left of the output (so every output pixel
has ``pad`` pixels of context), and the ``tile - 2*pad`` centre of each chip is
kept.  This is the same set of chips ArcGIS's super-tiles (``rectangle(B)`` chips
per block, esri-compat.md 3.1) produce, since blocks start at multiples of the
chip stride; the batch size therefore only groups chips and never changes a pixel.

Edges (``edge_fill``):

* ``mirror`` (the default): where the raster is at least one chip centre large,
  the last chip of a row or column is moved inward so that its centre ends at the
  raster's edge.  It keeps only the part of its centre that the previous chip's
  centre does not cover, so every output pixel still comes from exactly one chip
  centre and has ``pad`` pixels of context.  The only pixels outside the raster a
  chip holds are then the ``pad`` margin at the raster's outer edge (and, on a
  raster smaller than a chip, the rest of that chip); the reader fills them by
  mirroring the raster (reflection about the edge pixel, as ``numpy.pad``'s
  ``reflect``).
* ``zero``: ArcGIS's layout (``fixedTileSize=1``): chips at the plain stride, the
  part past the raster zero-filled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ArgumentError

EDGE_FILLS = ("mirror", "zero")


@dataclass(frozen=True)
class TileGrid:
    width: int
    height: int
    tile_h: int
    tile_w: int
    pad: int
    edge_fill: str = "mirror"

    def __post_init__(self) -> None:
        if 2 * self.pad >= min(self.tile_h, self.tile_w):
            raise ArgumentError(
                f"padding {self.pad} is too large for {self.tile_w}x{self.tile_h} tiles: it must be less than half "
                f"the tile size (at most {(min(self.tile_h, self.tile_w) - 1) // 2})")
        if self.edge_fill not in EDGE_FILLS:
            raise ArgumentError(f"edge_fill '{self.edge_fill}' is not one of {', '.join(EDGE_FILLS)}")

    @property
    def core_h(self) -> int:
        return self.tile_h - 2 * self.pad

    @property
    def core_w(self) -> int:
        return self.tile_w - 2 * self.pad

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.core_h)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.core_w)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def mirrored(self) -> bool:
        return self.edge_fill == "mirror"

    def _core_start(self, i: int, n: int, size: int, core: int) -> int:
        if self.mirrored and n > 1 and i == n - 1:
            return size - core  # the last chip ends at the raster's edge
        return i * core

    def core_origin(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the first pixel of chip (row, col)'s centre (moved inward for a last chip)."""
        return (self._core_start(col, self.cols, self.width, self.core_w),
                self._core_start(row, self.rows, self.height, self.core_h))

    def chip_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The input window (x, y, w, h) of chip (row, col) in grid pixels (may reach outside)."""
        x, y = self.core_origin(row, col)
        return x - self.pad, y - self.pad, self.tile_w, self.tile_h

    def core_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The output pixels (x, y, w, h) chip (row, col) is responsible for, clipped to the grid."""
        x, y = col * self.core_w, row * self.core_h
        return x, y, min(self.core_w, self.width - x), min(self.core_h, self.height - y)

    def row_height(self, row: int) -> int:
        return min(self.core_h, self.height - row * self.core_h)

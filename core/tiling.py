# SPDX-License-Identifier: GPL-2.0-or-later
"""The chip grid: ArcGIS's padded tiling, laid out once over the whole output.

Chips of ``tile_h x tile_w`` are placed at a stride of ``tile - 2*pad``, the first
one starting ``pad`` pixels above and left of the output (so every output pixel
has ``pad`` pixels of context), and the ``tile - 2*pad`` centre of each chip is
kept.  This is the same set of chips ArcGIS's super-tiles (``rectangle(B)`` chips
per block, esri-compat.md 3.1) produce, since blocks start at multiples of the
chip stride; the batch size therefore only groups chips and never changes a pixel.
Chips reaching past the raster are zero-filled (ArcGIS ``fixedTileSize=1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ArgumentError


@dataclass(frozen=True)
class ChipGrid:
    width: int
    height: int
    tile_h: int
    tile_w: int
    pad: int

    def __post_init__(self) -> None:
        if 2 * self.pad >= min(self.tile_h, self.tile_w):
            raise ArgumentError(
                f"padding {self.pad} is too large for {self.tile_w}x{self.tile_h} tiles: it must be less than half "
                f"the tile size (at most {(min(self.tile_h, self.tile_w) - 1) // 2})")

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

    def chip_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The input window (x, y, w, h) of chip (row, col) in grid pixels (may reach outside)."""
        return col * self.core_w - self.pad, row * self.core_h - self.pad, self.tile_w, self.tile_h

    def core_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The output pixels (x, y, w, h) chip (row, col) is responsible for, clipped to the grid."""
        x, y = col * self.core_w, row * self.core_h
        return x, y, min(self.core_w, self.width - x), min(self.core_h, self.height - y)

    def row_height(self, row: int) -> int:
        return min(self.core_h, self.height - row * self.core_h)

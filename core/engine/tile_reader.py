# SPDX-License-Identifier: GPL-2.0-or-later
"""The reader stage every raster tool shares: a block's window (halo included), cut into tiles, normalised, batched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputDataError
from ..model.definition import ModelDefinition
from ..progress import Progress
from ..raster.gdal_io import RasterGrid, RasterSource, data_band_count, read_mirrored
from ..raster.grid import TileGrid
from ..raster.mask import GridMask
from .normalize import Normaliser, resolve_bands


class PixelSource:
    """What the engine reads: windows of stacked model bands on one grid.  Must pickle as what it reads (paths,
    bands, grid), so a cluster worker can reopen it."""

    grid: RasterGrid
    dtype: str
    band_count: int
    has_mask: bool

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


@dataclass
class TileReader:
    """The reader stage every raster tool's block job shares: the window of a block's chips (their padding halo
    included, mirrored or zero past the raster's edge), cut into chips, NoData zeroed, normalised, batched."""

    source: Any
    chips: TileGrid
    normaliser: Normaliser | None
    batch: int
    channels: int
    #: the chips' type before normalising (a model's float32; a custom function without dataRange gets the raster's)
    dtype: str = "float32"

    def chip_offset(self, r: int, c: int, wx0: int, wy0: int) -> tuple[int, int]:
        """(x, y) of chip (r, c)'s top-left pixel (padding included) in the window read from (wx0, wy0)."""
        pad = self.chips.pad
        return self.chips.core_origin(0, c)[0] - pad - wx0, self.chips.core_origin(r, 0)[1] - pad - wy0

    def chip_valid(self, valid: np.ndarray, r: int, c: int, wx0: int, wy0: int) -> np.ndarray:
        """The validity mask [H, W] of chip (r, c) in the window's ``valid``."""
        cx, cy = self.chip_offset(r, c, wx0, wy0)
        return valid[cy:cy + self.chips.tile_h, cx:cx + self.chips.tile_w]

    @property
    def mask(self) -> GridMask | None:
        """The run's processing mask (:mod:`core.raster.mask`), carried by the source; None without one."""
        return getattr(self.source, "mask", None)

    def needed(self, rows: range, cols: range) -> list[tuple[int, int]]:
        """The chips of ``rows`` x ``cols`` to read and run: all of them, or those whose window touches the mask."""
        mask = self.mask
        return [(r, c) for r in rows for c in cols if mask is None or mask.touches(*self.chips.chip_window(r, c))]

    def read(self, rows: range, cols: range) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(data, valid, x0, y0): the window holding chips ``rows`` x ``cols``, and its grid origin.  With a mask only
        the needed chips' windows are read (one read per run of neighbouring chips in a row); the rest of the
        window stays 0 and invalid."""
        chips, pad = self.chips, self.chips.pad
        wx0 = chips.core_origin(0, cols[0])[0] - pad
        wx1 = chips.core_origin(0, cols[-1])[0] - pad + chips.tile_w
        wy0 = chips.core_origin(rows[0], 0)[1] - pad
        wy1 = chips.core_origin(rows[-1], 0)[1] - pad + chips.tile_h
        read = read_mirrored if chips.mirrored else type(self.source).read
        if self.mask is None:
            data, valid = read(self.source, wx0, wy0, wx1 - wx0, wy1 - wy0)
            return data, valid, wx0, wy0
        data = np.zeros((self.source.band_count, wy1 - wy0, wx1 - wx0), self.source.dtype)
        valid = np.zeros((wy1 - wy0, wx1 - wx0), bool)
        needed = set(self.needed(rows, cols))
        for r in rows:
            run = [c for c in cols if (r, c) in needed]
            while run:
                end = next((i for i in range(1, len(run)) if run[i] != run[i - 1] + 1), len(run))
                x0 = chips.core_origin(0, run[0])[0] - pad
                x1 = chips.core_origin(0, run[end - 1])[0] - pad + chips.tile_w
                y0 = chips.core_origin(r, 0)[1] - pad
                d, v = read(self.source, x0, y0, x1 - x0, chips.tile_h)
                data[:, y0 - wy0:y0 - wy0 + chips.tile_h, x0 - wx0:x1 - wx0] = d
                valid[y0 - wy0:y0 - wy0 + chips.tile_h, x0 - wx0:x1 - wx0] = v
                run = run[end:]
        return data, valid, wx0, wy0

    def batches(self, data: np.ndarray, valid: np.ndarray, rows: range, cols: range, wx0: int, wy0: int):
        """Batches ``(chips [B, C, H, W] float32 normalised, [(row, col), ...])`` of the window's chips, row-major."""
        th, tw = self.chips.tile_h, self.chips.tile_w
        masked = bool(self.source.has_mask)
        buf = np.empty((self.batch, self.channels, th, tw), self.dtype)
        metas: list[tuple[int, int]] = []
        for r, c in self.needed(rows, cols):
            cx, cy = self.chip_offset(r, c, wx0, wy0)
            i = len(metas)
            np.copyto(buf[i], data[:, cy:cy + th, cx:cx + tw], casting="unsafe")
            if masked:
                chip_valid = valid[cy:cy + th, cx:cx + tw]
                if not chip_valid.all():
                    buf[i][:, ~chip_valid] = 0.0
            metas.append((r, c))
            if len(metas) == self.batch:
                yield self._normalised(buf), metas
                buf = np.empty_like(buf)
                metas = []
        if metas:
            yield self._normalised(buf[:len(metas)]), metas

    def _normalised(self, arr: np.ndarray) -> np.ndarray:
        return self.normaliser.apply(arr) if self.normaliser is not None else arr


def log_mask(reader: TileReader, progress: Progress) -> None:
    """With a mask: how many tiles touch it (read and run) and how many are skipped, never read nor run; an error
    when none does (the mask lies in the extent's margin only)."""
    mask = reader.mask
    if mask is None:
        return
    chips = reader.chips
    needed = len(reader.needed(range(chips.rows), range(chips.cols)))
    if not needed:
        raise InputDataError(f"MASK '{mask.name}' covers no tile of the processing extent: there is nothing to process")
    progress.info(f"MASK '{mask.name}': {needed} of {chips.count} tiles touch its polygons; {chips.count - needed} "
                  "tiles are skipped (never read nor run); output pixels outside the polygons are NoData")


def open_model_source(path: str, md: ModelDefinition, grid: RasterGrid, model_channels: int | None = None) -> RasterSource:
    """Open ``path`` reading the model's bands (ExtractBands) on ``grid``."""
    probe = RasterSource(path, [0])
    try:
        bands = resolve_bands(md, data_band_count(probe.ds, path), probe.band_names(), probe.name, model_channels)
    finally:
        probe.close()
    return RasterSource(path, bands, grid)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Which part of a raster, on which grid: the request every raster tool reads through."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError
from .gdal_io import RasterGrid, RasterSource, dataset_grid, grid_for_request, open_raster
from .mask import GridMask, ProcessingMask


@dataclass
class RasterRequest:
    """Which part of the raster, on which grid: the input grid unless an extent or cell size is given."""

    extent: tuple[float, float, float, float] | None = None  # (xmin, ymin, xmax, ymax) in extent_crs_wkt
    extent_crs_wkt: str | None = None
    cell_size: float | None = None
    #: MASK: only what touches these polygons is read and run; without an extent, their bounding box is the extent
    mask: ProcessingMask | None = None

    def grid_mask(self, grid: RasterGrid) -> GridMask | None:
        """The mask on the run's processing grid (None without one)."""
        return self.mask.on_grid(grid) if self.mask is not None else None


class BandSource:
    """A :class:`RasterSource` seen by the engine (one raster, the model's bands), with the run's mask if any."""

    def __init__(self, source: RasterSource, mask: GridMask | None = None) -> None:
        self.source = source
        self.mask = mask
        self.grid = source.grid
        self.dtype = source.dtype
        self.band_count = len(source.bands)
        self.has_mask = source.has_mask

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.read(x, y, w, h)


def processing_grid(path: str, request: RasterRequest | None) -> tuple[RasterGrid, RasterGrid]:
    """(native grid, processing grid) for a raster and a request; checks the CRS."""
    ds = open_raster(path)
    native = dataset_grid(ds)
    ds = None
    name = os.path.basename(path)
    if not native.crs_wkt:
        raise InputDataError(f"Raster '{name}' has no coordinate reference system: assign one "
                             "(Raster > Projections > Assign Projection) so the output can be placed on the map")
    request = request or RasterRequest()
    extent, extent_crs = request.extent, request.extent_crs_wkt
    if extent is None and request.mask is not None:  # the polygons' bounding box, in the raster's CRS
        extent, extent_crs = request.mask.bounds_in(native.crs_wkt), native.crs_wkt
    grid = grid_for_request(native, extent, request.cell_size, extent_crs)
    return native, grid

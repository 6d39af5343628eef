# SPDX-License-Identifier: GPL-2.0-or-later
"""Which part of a raster, on which grid: the request every raster tool reads through."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError
from .gdal_io import RasterGrid, RasterSource, dataset_grid, grid_for_request, open_raster


@dataclass
class RasterRequest:
    """Which part of the raster, on which grid: the input grid unless an extent or cell size is given."""

    extent: tuple[float, float, float, float] | None = None  # (xmin, ymin, xmax, ymax) in extent_crs_wkt
    extent_crs_wkt: str | None = None
    cell_size: float | None = None


class BandSource:
    """A :class:`RasterSource` seen by the engine (one raster, the model's bands)."""

    def __init__(self, source: RasterSource) -> None:
        self.source = source
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
    grid = grid_for_request(native, request.extent, request.cell_size, request.extent_crs_wkt)
    return native, grid

# SPDX-License-Identifier: GPL-2.0-or-later
"""The output GeoTIFFs' compression (chosen in core/raster/gdal_io.compression_options): what the file says, and
values read back exactly as written, blocks in any order."""

from __future__ import annotations

import numpy as np
import pytest
from dltools.core.raster.gdal_io import BlockWriter, RasterGrid
from osgeo import gdal

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("dtype, nodata, predictor", [("uint8", 255, None), ("int16", -32768, None),
                                                      ("float32", float("nan"), "3")])
def test_block_writer_compresses_losslessly(tmp_path, dtype, nodata, predictor):
    width, height = 700, 530  # partial 256-pixel tiles on the right and bottom
    grid = RasterGrid((500000.0, 1.0, 0.0, 4000000.0, 0.0, -1.0), width, height, "")
    if dtype == "float32":
        data = RNG.normal(size=(2, height, width)).astype(np.float32)
        data[:, 5, 7] = np.nan
    else:
        # a class map: regions of a few values with noisy edges, and NoData
        data = (RNG.integers(0, 3, size=(2, height, width)) + np.arange(width) // 100).astype(dtype)
        data[:, 100:120, 50:90] = nodata
    path = tmp_path / f"out_{dtype}.tif"
    writer = BlockWriter(path, grid, 2, dtype, nodata, ["a", "b"])
    blocks = [(x, y) for y in range(0, height, 300) for x in range(0, width, 300)]
    for x, y in reversed(blocks):  # any order
        writer.write_block(x, y, data[:, y:y + 300, x:x + 300])
    writer.close()
    ds = gdal.Open(str(path))
    structure = ds.GetMetadata("IMAGE_STRUCTURE")
    assert structure.get("COMPRESSION") == "DEFLATE"
    assert structure.get("PREDICTOR") == predictor  # class maps: none (smaller and faster, make bench compress-8192)
    got = ds.ReadAsArray()
    assert got.dtype == np.dtype(dtype)
    assert np.array_equal(got, data, equal_nan=dtype == "float32")
    assert path.stat().st_size < data.nbytes  # compressed

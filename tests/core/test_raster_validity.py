# SPDX-License-Identifier: GPL-2.0-or-later
"""Which pixels RasterSource reads as valid in a 4-band 8-bit GeoTIFF, whose fourth band GDAL takes for alpha: a
pixel is valid where any read band is, so reading the alpha band itself as data makes every pixel valid (and no mask
is read per window); reading only the colour bands takes the alpha band as their mask."""

from __future__ import annotations

import numpy as np
from builders import write_raster
from dltools.core.raster.gdal_io import RasterSource
from osgeo import gdal


def test_alpha_read_as_data_means_every_pixel_is_valid(tmp_path):
    image = np.random.default_rng(3).integers(1, 200, size=(4, 30, 20)).astype(np.uint8)
    image[3, 5:9, 2:6] = 0  # transparent there
    path = write_raster(tmp_path / "rgba.tif", image, block=16)
    ds = gdal.Open(str(path))
    assert ds.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand  # GDAL's own rule for 4 x 8-bit
    ds = None

    all_bands = RasterSource(str(path), [0, 1, 2, 3])
    assert not all_bands.has_mask
    data, valid = all_bands.read(-3, -2, 26, 34)
    assert np.array_equal(data[:, 2:32, 3:23], image)
    expected = np.zeros((34, 26), bool)
    expected[2:32, 3:23] = True  # past the raster's edge: invalid; inside: every pixel, transparent or not
    assert np.array_equal(valid, expected)

    colours = RasterSource(str(path), [0, 1, 2])
    assert colours.has_mask
    data, valid = colours.read(0, 0, 20, 30)
    assert np.array_equal(data, image[:3])
    assert np.array_equal(valid, image[3] > 0)

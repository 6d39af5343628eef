# SPDX-License-Identifier: GPL-2.0-or-later
"""Chip geometry and extraction (core/chips.py): exact windows, pixels, resizing, masks and PNGs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))

from builders import write_raster  # noqa: E402
from co_models import ORIGIN, grid_raster, wkt_line, wkt_point, wkt_polygon, wkt_rect  # noqa: E402
from dltools.core.errors import InputDataError  # noqa: E402
from dltools.core.raster.gdal_io import RasterSource  # noqa: E402
from dltools.core.raster.resize import resize_matrix  # noqa: E402
from dltools.core.tools.classify_objects import feature_chips as chips  # noqa: E402
from dltools.core.tools.classify_objects.feature_chips import ChipSpec, Window, chip_window, extract_chip  # noqa: E402

GT = (ORIGIN[0], 1.0, 0.0, ORIGIN[1], 0.0, -1.0)


def geom(wkt: str) -> ogr.Geometry:
    return ogr.CreateGeometryFromWkt(wkt)


def env(wkt: str) -> tuple[float, float, float, float]:
    return geom(wkt).GetEnvelope()


@pytest.fixture
def grid(tmp_path):
    return grid_raster(tmp_path / "grid.tif")


def cols_rows(n: int = 64):
    rows, cols = np.mgrid[0:n, 0:n]
    return cols + 1.0, rows + 1.0


# ------------------------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("centre,size,first", [
    (15.0, 7, 12),     # centre on a pixel edge, odd size: 12..18, centre 15.5 is within half a pixel
    (15.5, 7, 12),     # centre on a pixel centre, odd size: exactly centred
    (15.0, 8, 11),     # even size, centre on an edge: exactly centred (11..18 -> 15.0)
    (15.5, 8, 12),     # even size, centre on a pixel centre: a tie, the chip goes half a pixel right
    (15.2, 8, 11),
    (15.8, 8, 12),
    (0.2, 7, -3),      # reaches outside on the left
])
def test_fixed_window_rounding(centre, size, first):
    spec = ChipSpec(size, size, crop_size_fixed=True)
    w = chip_window(GT, env(wkt_point(centre, centre)), spec)
    assert w == Window(first, first, size, size)


def test_fixed_window_is_centred_on_the_bounding_box_centre():
    spec = ChipSpec(9, 5, crop_size_fixed=True)
    # triangle whose centroid is not its bounding-box centre: box cols 10..30, rows 4..8 -> centre (20, 6)
    w = chip_window(GT, env(wkt_polygon((10, 8), (30, 8), (11, 4))), spec)
    assert w == Window(16, 4, 9, 5)


def test_bbox_window_pixels_touched_plus_padding():
    spec = ChipSpec(4, 4, crop_size_fixed=False)
    assert chip_window(GT, env(wkt_rect(10, 20, 18, 28)), spec) == Window(10, 20, 8, 8)
    assert chip_window(GT, env(wkt_rect(10.5, 20.2, 17.5, 27.9)), spec) == Window(10, 20, 8, 8)
    padded = ChipSpec(4, 4, crop_size_fixed=False, padding=3)
    assert chip_window(GT, env(wkt_rect(10, 20, 18, 28)), padded) == Window(7, 17, 14, 14)


def test_bbox_window_widened_to_the_model_aspect_ratio():
    square = ChipSpec(5, 5, crop_size_fixed=False)
    # 10 wide, 5 tall -> 10 tall, 2 rows added above and 3 below
    assert chip_window(GT, env(wkt_rect(10, 20, 20, 25)), square) == Window(10, 18, 10, 10)
    # 3 wide, 10 tall -> 10 wide, 3 columns left, 4 right
    assert chip_window(GT, env(wkt_rect(10, 20, 13, 30)), square) == Window(7, 20, 10, 10)
    wide = ChipSpec(8, 4, crop_size_fixed=False)  # 2:1 model
    assert chip_window(GT, env(wkt_rect(10, 20, 14, 24)), wide) == Window(8, 20, 8, 4)
    assert chip_window(GT, env(wkt_rect(10, 20, 30, 22)), wide) == Window(10, 16, 20, 10)


def test_bbox_window_of_a_point_is_one_pixel_widened():
    spec = ChipSpec(3, 3, crop_size_fixed=False)
    assert chip_window(GT, env(wkt_point(10.5, 4.5)), spec) == Window(10, 4, 1, 1)
    assert chip_window(GT, env(wkt_point(10.0, 4.0)), spec) == Window(10, 4, 1, 1)
    line = chip_window(GT, env(wkt_line((10.5, 4.5), (14.5, 4.5))), spec)  # horizontal line: 5 x 1 -> 5 x 5
    assert line == Window(10, 2, 5, 5)


def test_bad_spec():
    with pytest.raises(InputDataError, match="padding"):
        ChipSpec(4, 4, padding=-1)


# ------------------------------------------------------------------------------------------------ resizing
def test_resize_matrix_values():
    assert np.array_equal(resize_matrix(3, 3), np.eye(3))
    down = resize_matrix(4, 2)
    assert np.allclose(down, [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    third = resize_matrix(3, 2)  # 1.5 source pixels per chip pixel
    assert np.allclose(third, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    up = resize_matrix(2, 4)  # sample points -0.25, 0.25, 0.75, 1.25 -> clamped at the edges
    assert np.allclose(up, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    for n_in, n_out in ((7, 3), (3, 7), (100, 224), (224, 100), (1, 5)):
        assert np.allclose(resize_matrix(n_in, n_out).sum(axis=1), 1.0)


# ------------------------------------------------------------------------------------------------ extraction
def test_fixed_chip_copies_pixels_exactly(grid):
    cols, rows = cols_rows()
    src = RasterSource(str(grid), [0, 1, 2])
    chip = extract_chip(src, geom(wkt_point(20.3, 30.7)), ChipSpec(7, 5))
    assert chip.note is None and chip.window == Window(17, 28, 7, 5)
    assert chip.data.dtype == np.float32 and chip.data.shape == (3, 5, 7)
    assert np.array_equal(chip.data[0], cols[28:33, 17:24])
    assert np.array_equal(chip.data[1], rows[28:33, 17:24])
    assert np.all(chip.data[2] == 100)
    assert chip.geotransform == (ORIGIN[0] + 17, 1.0, 0.0, ORIGIN[1] - 28, 0.0, -1.0)
    assert chip.valid_fraction == 1.0


def test_chip_crossing_the_edge_is_zero_filled(grid):
    cols, rows = cols_rows()
    src = RasterSource(str(grid), [0, 1])
    chip = extract_chip(src, geom(wkt_point(62.0, 1.0)), ChipSpec(6, 6))  # cols 59..64, rows -2..3
    assert chip.window == Window(59, -2, 6, 6)
    expected = np.zeros((6, 6))
    expected[2:, :5] = cols[0:4, 59:64]
    assert np.array_equal(chip.data[0], expected)
    assert chip.valid_fraction == pytest.approx(20 / 36)


def test_feature_outside_the_raster_gets_a_note(grid):
    src = RasterSource(str(grid), [0])
    # the fixed chip around this point would reach the raster, but the feature itself does not touch it
    chip = extract_chip(src, geom(wkt_point(-1.0, 10.0)), ChipSpec(7, 7))
    assert chip.data is None and chip.note == "it lies entirely outside the raster"
    touching = extract_chip(src, geom(wkt_point(0.0, 10.0)), ChipSpec(7, 7))
    assert touching.data is not None
    assert extract_chip(src, None, ChipSpec(7, 7)).note == "it has no geometry"


def test_nodata_is_zeroed_and_only_nodata_gets_a_note(tmp_path):
    path = grid_raster(tmp_path / "nd.tif", nodata=0, nodata_box=(10, 10, 30, 30))
    cols, _ = cols_rows()
    src = RasterSource(str(path), [0])
    inside = extract_chip(src, geom(wkt_point(20, 20)), ChipSpec(7, 7))
    assert inside.data is None and inside.note == "the raster has only NoData in its chip"
    half = extract_chip(src, geom(wkt_point(30.5, 20.5)), ChipSpec(7, 7))  # cols 27..33
    expected = cols[17:24, 27:34].copy()
    expected[:, :3] = 0
    assert np.array_equal(half.data[0], expected)
    assert half.valid_fraction == pytest.approx(4 / 7)


def test_nodata_value_that_is_not_zero_becomes_zero(tmp_path):
    arr = np.full((1, 20, 20), 5, np.int16)
    arr[0, :, :10] = -9999
    path = write_raster(tmp_path / "nd.tif", arr, origin=ORIGIN, nodata=-9999)
    chip = extract_chip(RasterSource(str(path), [0]), geom(wkt_point(10, 10)), ChipSpec(4, 4))
    assert np.array_equal(chip.data[0], np.array([[0, 0, 5, 5]] * 4, np.float32))


def test_blacken_polygon_keeps_pixel_centres_inside(grid):
    cols, _ = cols_rows()
    src = RasterSource(str(grid), [0])
    tri = wkt_polygon((10, 10), (20, 10), (10, 20))  # right triangle: inside when c + r < 30 (centres c+0.5, r+0.5)
    spec = ChipSpec(15, 15, blacken=True)
    chip = extract_chip(src, geom(tri), spec)
    assert chip.window == Window(8, 8, 15, 15) and chip.masked
    rr, cc = np.mgrid[8:23, 8:23]
    inside = (cc + 0.5 >= 10) & (rr + 0.5 >= 10) & (cc + 0.5 + rr + 0.5 <= 30)
    expected = np.where(inside, cols[8:23, 8:23], 0)
    assert np.array_equal(chip.data[0], expected)
    assert int(inside.sum()) == 55
    assert chip.valid_fraction == pytest.approx(55 / 225)
    plain = extract_chip(src, geom(tri), ChipSpec(15, 15, blacken=False))
    assert np.array_equal(plain.data[0], cols[8:23, 8:23]) and not plain.masked


def test_blacken_on_a_resized_chip_rasterises_on_the_chip_grid(grid):
    cols, _ = cols_rows()
    src = RasterSource(str(grid), [0])
    # 10x10 pixel square, 5x5 chip: each chip pixel averages 2x2 pixels
    spec = ChipSpec(5, 5, crop_size_fixed=False, blacken=True)
    chip = extract_chip(src, geom(wkt_polygon((10, 10), (20, 10), (10, 20))), spec)
    assert chip.window == Window(10, 10, 10, 10)
    assert chip.geotransform == (ORIGIN[0] + 10, 2.0, 0.0, ORIGIN[1] - 10, 0.0, -2.0)
    block = cols[10:20, 10:20].reshape(5, 2, 5, 2).mean(axis=(1, 3))
    i, j = np.mgrid[0:5, 0:5]
    inside = (j + 0.5) + (i + 0.5) <= 5  # chip pixel centres inside the triangle (in chip units)
    assert np.array_equal(chip.data[0], np.where(inside, block, 0).astype(np.float32))


def test_blacken_does_not_mask_points_and_lines(grid):
    cols, _ = cols_rows()
    src = RasterSource(str(grid), [0])
    spec = ChipSpec(5, 5, blacken=True)
    for wkt in (wkt_point(20.5, 20.5), wkt_line((18.5, 20.5), (22.5, 20.5))):
        chip = extract_chip(src, geom(wkt), spec)
        assert not chip.masked
        assert np.array_equal(chip.data[0], cols[18:23, 18:23])


def test_blacken_collection_uses_its_polygons_only(grid):
    src = RasterSource(str(grid), [0])
    coll = geom(f"GEOMETRYCOLLECTION ({wkt_rect(10, 10, 12, 12)}, {wkt_line((10, 15), (14, 15))})")
    chip = extract_chip(src, coll, ChipSpec(6, 6, blacken=True))  # box cols 10..14 rows 10..15 -> chip 9..14, 10..15
    assert chip.window == Window(9, 10, 6, 6)
    nonzero = np.argwhere(chip.data[0] != 0)
    assert {tuple(p) for p in nonzero.tolist()} == {(0, 1), (0, 2), (1, 1), (1, 2)}


def test_bbox_chip_area_average(grid):
    cols, rows = cols_rows()
    src = RasterSource(str(grid), [0, 1])
    chip = extract_chip(src, geom(wkt_rect(10, 20, 20, 25)), ChipSpec(5, 5, crop_size_fixed=False))
    assert chip.window == Window(10, 18, 10, 10)
    assert np.allclose(chip.data[0], cols[18:28, 10:20].reshape(5, 2, 5, 2).mean(axis=(1, 3)))
    assert np.allclose(chip.data[1], rows[18:28, 10:20].reshape(5, 2, 5, 2).mean(axis=(1, 3)))


def test_bbox_chip_enlarged_bilinear(grid):
    cols, _ = cols_rows()
    src = RasterSource(str(grid), [0])
    chip = extract_chip(src, geom(wkt_rect(10, 10, 12, 12)), ChipSpec(4, 4, crop_size_fixed=False))
    up = resize_matrix(2, 4)
    assert np.allclose(chip.data[0], up @ cols[10:12, 10:12] @ up.T)
    assert np.allclose(chip.data[0][0], [11, 11.25, 11.75, 12])


def test_large_window_read_decimated(tmp_path, monkeypatch):
    arr = np.full((1, 300, 300), 40, np.uint8)
    arr[0, :, 150:] = 80
    path = write_raster(tmp_path / "big.tif", arr, origin=ORIGIN, nodata=None)
    monkeypatch.setattr(chips, "LARGE_WINDOW_PIXELS", 1000)
    src = RasterSource(str(path), [0])
    chip = extract_chip(src, geom(wkt_rect(0, 0, 300, 300)), ChipSpec(6, 6, crop_size_fixed=False))
    assert np.array_equal(chip.data[0], np.array([[40] * 3 + [80] * 3] * 6, np.float32))
    # strip reading gives the same answer for a window that is not large
    monkeypatch.setattr(chips, "LARGE_WINDOW_PIXELS", 10 ** 9)
    monkeypatch.setattr(chips, "STRIP_PIXELS", 900)
    strip = extract_chip(src, geom(wkt_rect(0, 0, 300, 300)), ChipSpec(6, 6, crop_size_fixed=False))
    assert np.array_equal(strip.data, chip.data)


def test_chip_png_keeps_16_bit_values(tmp_path, grid):
    cols, rows = cols_rows()
    src = RasterSource(str(grid), [0, 1, 2])
    chip = extract_chip(src, geom(wkt_point(20.5, 30.5)), ChipSpec(7, 7))
    out = tmp_path / "c.png"
    chips.write_chip_png(str(out), chip.data, "uint16", chip.geotransform)
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 3 and ds.GetRasterBand(1).DataType == gdal.GDT_UInt16
    assert np.array_equal(ds.GetRasterBand(1).ReadAsArray(), cols[27:34, 17:24])
    assert np.array_equal(ds.GetRasterBand(2).ReadAsArray(), rows[27:34, 17:24])
    assert ds.GetGeoTransform() == (ORIGIN[0] + 17, 1.0, 0.0, ORIGIN[1] - 27, 0.0, -1.0)  # from the world file
    assert (tmp_path / "c.wld").exists()


def test_chip_png_stretches_float_and_keeps_one_band():
    data = np.array([[[0.0, 0.5], [1.0, 2.0]]], np.float32)
    arr = chips.chip_png_array(data, "float32", [(0.0, 2.0)])
    assert arr.dtype == np.uint8 and np.array_equal(arr[0], [[0, 64], [128, 255]])
    two = chips.chip_png_array(np.stack([data[0], data[0]]), "uint8")
    assert two.shape == (1, 2, 2)

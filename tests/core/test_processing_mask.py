# SPDX-License-Identifier: GPL-2.0-or-later
"""MASK in the engine: only the tiles touching the polygons are read and run, pixels outside are NoData (exactly:
pixel centres, checked point by point with OGR here), pixels inside equal a run without the mask, objects whose
centre lies outside are dropped; a mask in another CRS; an empty or disjoint mask is refused."""

from __future__ import annotations

import numpy as np
import pytest
from builders import RecordingProgress, conv_module, export_onnx, read_raster, write_emd, write_raster
from detection_models import expected_boxes, square_scene, yolo_v8_onnx
from dltools.core.errors import InputDataError
from dltools.core.model.loader import load_model_definition
from dltools.core.raster import gdal_io
from dltools.core.raster.mask import ProcessingMask
from dltools.core.raster.request import RasterRequest
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from dltools.core.tools.detect_change.pipeline import detect_change
from dltools.core.tools.detect_objects.pipeline import detect_objects
from osgeo import ogr, osr

RNG = np.random.default_rng(21)
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
ORIGIN = (500000.0, 4000000.0)
W, H = 90, 70


def utm() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def polygon_wkb(points: list[tuple[float, float]]) -> bytes:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in points + [points[0]]:
        ring.AddPoint_2D(x, y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly.ExportToIsoWkb()


def to_wgs84(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32633)
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)
    return [tuple(tr.TransformPoint(x, y)[:2]) for x, y in points]


def centres_inside(wkb: bytes, crs_wkt: str, width: int, height: int, gt: tuple) -> np.ndarray:
    """[h, w] True where the pixel's centre lies in the polygon (one OGR test per pixel, not GDAL's rasteriser)."""
    geom = ogr.CreateGeometryFromWkb(wkb)
    if crs_wkt != utm():
        src = osr.SpatialReference()
        src.ImportFromWkt(crs_wkt)
        dst = osr.SpatialReference()
        dst.ImportFromEPSG(32633)
        for s in (src, dst):
            s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        geom.AssignSpatialReference(src)
        geom.TransformTo(dst)
    out = np.zeros((height, width), bool)
    pt = ogr.Geometry(ogr.wkbPoint)
    for y in range(height):
        for x in range(width):
            pt.SetPoint_2D(0, gt[0] + (x + 0.5) * gt[1], gt[3] + (y + 0.5) * gt[5])
            out[y, x] = geom.Contains(pt)
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mask")
    image = RNG.integers(0, 10, size=(3, H, W)).astype(np.uint8)
    raster = write_raster(folder / "in.tif", image, origin=ORIGIN, epsg=32633, block=16)
    export_onnx(conv_module(3, 3, 5), folder / "conv5.onnx", 3, 16)
    return {"folder": folder, "raster": raster, "emd": write_emd(folder / "conv5.emd", "conv5.onnx", tile=16,
                                                                  classes=CLASSES)}


# a triangle over part of the raster (pixel (x, y) is at ORIGIN + (x, -y))
TRIANGLE = [(ORIGIN[0] + 10.3, ORIGIN[1] - 5.2), (ORIGIN[0] + 60.7, ORIGIN[1] - 12.1), (ORIGIN[0] + 22.4, ORIGIN[1] - 48.9)]


@pytest.mark.parametrize("crs", ["utm", "wgs84"])
@pytest.mark.parametrize("arguments", ["padding 2", "padding 3;blend True;block_size 24"])
def test_nodata_exactly_outside_and_inside_as_without_the_mask(case, tmp_path, crs, arguments):
    md = load_model_definition(str(case["emd"]))
    full = tmp_path / "full.tif"
    classify_pixels(str(case["raster"]), md, str(full), arguments)
    points = TRIANGLE if crs == "utm" else to_wgs84(TRIANGLE)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633 if crs == "utm" else 4326)
    mask = ProcessingMask([polygon_wkb(points)], srs.ExportToWkt(), "triangle")
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])  # the whole raster: the same grid as `full`
    out = tmp_path / "masked.tif"
    progress = RecordingProgress()
    result = classify_pixels(str(case["raster"]), md, str(out), arguments,
                             request=RasterRequest(extent=extent, mask=mask), progress=progress)
    got, want = read_raster(out), read_raster(full)
    inside = centres_inside(polygon_wkb(points), srs.ExportToWkt(), W, H, (ORIGIN[0], 1.0, 0, ORIGIN[1], 0, -1.0))
    assert inside.sum() > 500 and (~inside).sum() > 500
    assert np.array_equal(got[inside], want[inside])
    assert (got[~inside] == result.nodata).all()
    line = next(x for x in progress.infos if x.startswith("MASK 'triangle'"))
    needed, total = int(line.split()[2]), int(line.split()[4])
    assert 0 < needed < total and f"{total - needed} tiles are skipped" in line


def test_without_an_extent_the_mask_bounding_box_is_the_extent(case, tmp_path):
    md = load_model_definition(str(case["emd"]))
    square = [(ORIGIN[0] + 20, ORIGIN[1] - 10), (ORIGIN[0] + 50, ORIGIN[1] - 10), (ORIGIN[0] + 50, ORIGIN[1] - 40),
              (ORIGIN[0] + 20, ORIGIN[1] - 40)]
    out = tmp_path / "bbox.tif"
    classify_pixels(str(case["raster"]), md, str(out), "padding 2",
                    request=RasterRequest(mask=ProcessingMask([polygon_wkb(square)], utm())))
    ds = gdal_io.open_raster(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (30, 30)
    assert ds.GetGeoTransform() == (ORIGIN[0] + 20, 1.0, 0.0, ORIGIN[1] - 10, 0.0, -1.0)


def test_skipped_tiles_are_never_read(case, tmp_path, monkeypatch):
    """Every window the engine reads lies within a tile that touches the mask."""
    md = load_model_definition(str(case["emd"]))
    reads: list[tuple[int, int, int, int]] = []
    original = gdal_io.RasterSource.read

    def recording(self, x, y, w, h, dtype=None):
        reads.append((x, y, w, h))
        return original(self, x, y, w, h, dtype)

    monkeypatch.setattr(gdal_io.RasterSource, "read", recording)
    corner = [(ORIGIN[0] + 1, ORIGIN[1] - 1), (ORIGIN[0] + 5, ORIGIN[1] - 1), (ORIGIN[0] + 5, ORIGIN[1] - 5)]
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    classify_pixels(str(case["raster"]), md, str(tmp_path / "c.tif"), "padding 2;block_size 48",
                    request=RasterRequest(extent=extent, mask=ProcessingMask([polygon_wkb(corner)], utm())))
    # tiles of 16 with padding 2 (centres of 12): only the first tile's window (-2..13, mirrored: 0..13) touches
    assert reads == [(0, 0, 14, 14)]


def test_detect_objects_drops_objects_whose_centre_is_outside(tmp_path):
    squares = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (70, 50, 12, 0, 180), (20, 50, 8, 1, 210)]
    raster = write_raster(tmp_path / "scene.tif", square_scene(W, H, squares), origin=ORIGIN, cell=1.0)
    md = load_model_definition(str(yolo_v8_onnx(tmp_path / "yolo.onnx", 32, {0: "red", 1: "green"})))
    # the polygon holds the centres of the first two squares (10, 10) and (50, 30), and clips the third's corner
    poly = [(ORIGIN[0], ORIGIN[1]), (ORIGIN[0] + 72, ORIGIN[1]), (ORIGIN[0] + 72, ORIGIN[1] - 52),
            (ORIGIN[0], ORIGIN[1] - 40)]
    progress = RecordingProgress()
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    result = detect_objects(str(raster), md, "padding 4", progress=progress,
                            request=RasterRequest(extent=extent, mask=ProcessingMask([polygon_wkb(poly)], utm())))
    boxes = sorted(ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope() for o in result.objects)
    want = sorted((ORIGIN[0] + x1, ORIGIN[0] + x2, ORIGIN[1] - y2, ORIGIN[1] - y1)
                  for x1, y1, x2, y2, *_ in expected_boxes(W, H, squares[:2]))
    assert boxes == want and len(detect_objects(str(raster), md, "padding 4").objects) == 4
    assert any("objects whose centre lies outside" in line for line in progress.infos)


def test_detect_change_with_a_mask(case, tmp_path):
    folder = case["folder"]
    export_onnx(conv_module(6, 2, 1), folder / "change.onnx", 6, 16)
    emd = write_emd(folder / "change.emd", "change.onnx", tile=16, bands=list(range(6)),
                    classes=[(0, "no change", (0, 0, 0)), (1, "change", (255, 0, 0))])
    md = load_model_definition(str(emd))
    full, out = tmp_path / "full.tif", tmp_path / "masked.tif"
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    detect_change(str(case["raster"]), str(case["raster"]), md, str(full), "padding 2")
    result = detect_change(str(case["raster"]), str(case["raster"]), md, str(out), "padding 2",
                           request=RasterRequest(extent=extent, mask=ProcessingMask([polygon_wkb(TRIANGLE)], utm())))
    inside = centres_inside(polygon_wkb(TRIANGLE), utm(), W, H, (ORIGIN[0], 1.0, 0, ORIGIN[1], 0, -1.0))
    got, want = read_raster(out), read_raster(full)
    assert np.array_equal(got[inside], want[inside]) and (got[~inside] == result.nodata).all()


@pytest.mark.parametrize("wkbs,message", [([], "has no polygon"), ([None], "has no polygon"),
                                          ([polygon_wkb([(0, 0), (1, 0), (1, 1)])], "does not overlap")])
def test_empty_or_disjoint_mask_is_refused(case, tmp_path, wkbs, message):
    md = load_model_definition(str(case["emd"]))
    out = tmp_path / "never.tif"
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    with pytest.raises(InputDataError, match=f"MASK 'fields' .*{message}"):
        classify_pixels(str(case["raster"]), md, str(out), "padding 2",
                        request=RasterRequest(extent=extent, mask=ProcessingMask(wkbs, utm(), "fields")))
    assert not out.exists()


# ------------------------------------------------------------------ a model's own Python function (Esri raster function)
def _function(tmp_path, name: str, source: str, **kwargs):
    import prf_functions as prf

    return load_model_definition(str(prf.write_function(tmp_path / "model", name, source, **kwargs)))


@pytest.mark.parametrize("scheduler", ["", "local:1"])
def test_a_models_own_function_with_a_mask_exact_pixels_and_skipped_tiles(case, tmp_path, monkeypatch, scheduler):
    """The neighbour classifier (class 2 where the right-hand neighbour's band 2 is above 5, else 1; mirrored past
    the last column): inside the triangle exactly that, outside NoData, and only tiles touching it read and run
    (in-process: every window read is counted; on a local Dask cluster the worker reads, the pixels are the same)."""
    import prf_functions as prf

    if scheduler:
        pytest.importorskip("distributed", reason="dask[distributed] is not installed")

    md = _function(tmp_path, "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    ds = gdal_io.open_raster(str(case["raster"]))
    band = ds.GetRasterBand(2).ReadAsArray().astype(float)
    native = gdal_io.dataset_grid(ds)
    ds = None
    right = np.concatenate([band[:, 1:], band[:, -2:-1]], axis=1)
    expected = np.where(right > 5, 2, 1)
    reads: list[tuple[int, int, int, int]] = []
    original = gdal_io.RasterSource.read

    def recording(self, x, y, w, h, dtype=None):
        reads.append((x, y, w, h))
        return original(self, x, y, w, h, dtype)

    monkeypatch.setattr(gdal_io.RasterSource, "read", recording)
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    mask = ProcessingMask([polygon_wkb(TRIANGLE)], utm(), "triangle")
    progress = RecordingProgress()
    out = tmp_path / "masked.tif"
    result = classify_pixels(str(case["raster"]), md, str(out), "threshold 5", progress=progress,
                             request=RasterRequest(extent=extent, mask=mask), allow_custom_code=True,
                             scheduler=scheduler, retries=0)
    got = read_raster(out)
    inside = centres_inside(polygon_wkb(TRIANGLE), utm(), W, H, (ORIGIN[0], 1.0, 0, ORIGIN[1], 0, -1.0))
    assert np.array_equal(got[inside], expected[inside])
    assert result.nodata is not None and (got[~inside] == result.nodata).all()
    line = next(x for x in progress.infos if x.startswith("MASK 'triangle'"))
    needed, total = int(line.split()[2]), int(line.split()[4])
    assert 0 < needed < total
    if scheduler:
        return
    # every window read is a run of chips that touch the triangle
    grid = mask.on_grid(native)
    assert reads and all(grid.touches(x, y, w, h) for x, y, w, h in reads)
    assert sum(w * h for _, _, w, h in reads) < W * H


def test_a_models_own_change_function_with_a_mask(case, tmp_path):
    import prf_functions as prf
    from builders import write_raster

    rng = np.random.default_rng(3)
    before, after = (rng.integers(0, 100, (2, H, W)).astype(np.uint8) for _ in range(2))
    r1 = write_raster(tmp_path / "before.tif", before, origin=ORIGIN)
    r2 = write_raster(tmp_path / "after.tif", after, origin=ORIGIN)
    md = _function(tmp_path, "Growth", prf.CHANGE_FUNCTION,
                   classes=((0, "no change", (0, 0, 0)), (1, "growth", (0, 255, 0))))
    out = tmp_path / "change.tif"
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    result = detect_change(str(r1), str(r2), md, str(out), "margin 5", allow_custom_code=True,
                           request=RasterRequest(extent=extent, mask=ProcessingMask([polygon_wkb(TRIANGLE)], utm())))
    inside = centres_inside(polygon_wkb(TRIANGLE), utm(), W, H, (ORIGIN[0], 1.0, 0, ORIGIN[1], 0, -1.0))
    expected = (after[0].astype(int) > before[0].astype(int) + 5).astype(np.uint8)
    got = read_raster(out)
    assert np.array_equal(got[inside], expected[inside]) and (got[~inside] == result.nodata).all()


def test_a_models_own_detector_with_a_mask_drops_objects_centred_outside(tmp_path):
    """The spot detector (a one-pixel box around each 255 of band 1): spots whose centre lies in the polygon are
    kept, the others dropped, whether their tile ran or not."""
    import prf_functions as prf
    from builders import write_raster

    image = np.zeros((2, H, W), np.uint8)
    spots = [(12, 8), (30, 15), (20, 30), (70, 10), (80, 60), (5, 65)]  # (x, y)
    for x, y in spots:
        image[0, y, x] = 255
    raster = write_raster(tmp_path / "spots.tif", image, origin=ORIGIN)
    md = _function(tmp_path, "SpotDetector", prf.DETECTOR, model_type="ObjectDetection",
                   classes=((1, "spot", (255, 0, 0)), (2, "big spot", (0, 255, 0))))
    extent = (ORIGIN[0], ORIGIN[1] - H, ORIGIN[0] + W, ORIGIN[1])
    progress = RecordingProgress()
    result = detect_objects(str(raster), md, "", progress=progress, allow_custom_code=True,
                            request=RasterRequest(extent=extent, mask=ProcessingMask([polygon_wkb(TRIANGLE)],
                                                                                     utm(), "triangle")))
    tri = ogr.CreateGeometryFromWkb(polygon_wkb(TRIANGLE))
    point = ogr.Geometry(ogr.wkbPoint)
    kept = []
    for x, y in spots:
        point.SetPoint_2D(0, ORIGIN[0] + x + 0.5, ORIGIN[1] - y - 0.5)
        if tri.Contains(point):
            kept.append((ORIGIN[0] + x, ORIGIN[0] + x + 1, ORIGIN[1] - y - 1, ORIGIN[1] - y))
    assert 0 < len(kept) < len(spots)
    boxes = sorted(ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope() for o in result.objects)
    assert boxes == sorted(kept)
    assert any(line.startswith("MASK 'triangle'") and "tiles are skipped" in line for line in progress.infos)

# SPDX-License-Identifier: GPL-2.0-or-later
"""MASK through processing.run: Classify Pixels, Detect Change and Detect Objects with a polygon layer in another
CRS (WGS 84 over a UTM raster); NoData exactly outside, the same pixels inside as without the mask, objects whose
centre lies outside dropped, the skipped tiles logged; an empty polygon layer is refused naming MASK."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import conv_module, export_onnx, read_raster, write_emd, write_raster
from detection_models import square_scene, yolo_v8_onnx
from osgeo import ogr, osr
from recording_feedback import RecordingFeedback

ORIGIN = (500000.0, 4000000.0)
W, H = 80, 60
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
# a quadrilateral, in pixel offsets from ORIGIN (x right, y down)
QUAD = [(8.5, 4.2), (55.3, 9.9), (47.1, 50.6), (12.2, 41.7)]


def _transform(src_epsg: int, dst_epsg: int) -> osr.CoordinateTransformation:
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(src_epsg)
    dst.ImportFromEPSG(dst_epsg)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return osr.CoordinateTransformation(src, dst)


def write_mask(path, quads: list[list[tuple[float, float]]]) -> str:
    """A GeoJSON polygon layer in WGS 84 (the raster is in UTM 33N)."""
    tr = _transform(32633, 4326)
    features = []
    for quad in quads:
        ring = [list(tr.TransformPoint(ORIGIN[0] + x, ORIGIN[1] - y)[:2]) for x, y in quad]
        features.append({"type": "Feature", "properties": {},
                         "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def inside_pixels() -> np.ndarray:
    """Pixel centres inside QUAD after the round trip through WGS 84, one OGR test per pixel."""
    to_wgs, to_utm = _transform(32633, 4326), _transform(4326, 32633)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in QUAD + [QUAD[0]]:
        lon, lat = to_wgs.TransformPoint(ORIGIN[0] + x, ORIGIN[1] - y)[:2]
        ring.AddPoint_2D(*to_utm.TransformPoint(lon, lat)[:2])
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    out = np.zeros((H, W), bool)
    pt = ogr.Geometry(ogr.wkbPoint)
    for y in range(H):
        for x in range(W):
            pt.SetPoint_2D(0, ORIGIN[0] + x + 0.5, ORIGIN[1] - y - 0.5)
            out[y, x] = poly.Contains(pt)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mask")
    image = np.random.default_rng(3).integers(0, 10, size=(3, H, W)).astype(np.uint8)
    raster = write_raster(d / "in.tif", image, origin=ORIGIN, epsg=32633)
    export_onnx(conv_module(3, 3, 5), d / "conv5.onnx", 3, 16)
    emd = write_emd(d / "conv5.emd", "conv5.onnx", tile=16, classes=CLASSES)
    return {"dir": d, "raster": str(raster), "emd": str(emd), "mask": write_mask(d / "mask.geojson", [QUAD]),
            "extent": f"{ORIGIN[0]},{ORIGIN[0] + W},{ORIGIN[1] - H},{ORIGIN[1]} [EPSG:32633]"}


def run(alg: str, context, **params) -> tuple[dict, RecordingFeedback]:
    import processing

    feedback = RecordingFeedback()
    return processing.run(alg, params, context=context, feedback=feedback), feedback


def test_classify_pixels_with_a_mask_in_another_crs(context, files, tmp_path):
    full, masked = tmp_path / "full.tif", tmp_path / "masked.tif"
    run("dltools:classifypixels", context, INPUT=files["raster"], MODEL=files["emd"], ARGUMENTS="padding 2",
        OUTPUT=str(full))
    _, feedback = run("dltools:classifypixels", context, INPUT=files["raster"], MODEL=files["emd"],
                      ARGUMENTS="padding 2", EXTENT=files["extent"], MASK=files["mask"], OUTPUT=str(masked))
    got, want, inside = read_raster(masked), read_raster(full), inside_pixels()
    assert 1000 < inside.sum() < W * H - 1000
    assert np.array_equal(got[inside], want[inside])
    assert (got[~inside] == 255).all()  # the output's NoData (uint8 classes 1, 2, 5)
    assert any("tiles are skipped" in line and line.startswith("MASK 'mask'") for line in feedback.infos)


def test_detect_change_with_a_mask(context, files, tmp_path):
    d = files["dir"]
    export_onnx(conv_module(6, 2, 1), d / "change.onnx", 6, 16)
    emd = write_emd(d / "change.emd", "change.onnx", tile=16, bands=list(range(6)),
                    classes=[(0, "no change", (0, 0, 0)), (1, "change", (255, 0, 0))])
    full, masked = tmp_path / "full.tif", tmp_path / "masked.tif"
    common = {"FROM_RASTER": files["raster"], "TO_RASTER": files["raster"], "MODEL": str(emd), "ARGUMENTS": "padding 1"}
    run("dltools:detectchange", context, **common, OUTPUT=str(full))
    run("dltools:detectchange", context, **common, EXTENT=files["extent"], MASK=files["mask"], OUTPUT=str(masked))
    got, want, inside = read_raster(masked), read_raster(full), inside_pixels()
    assert np.array_equal(got[inside], want[inside]) and (got[~inside] == 255).all()


def test_detect_objects_keeps_objects_whose_centre_is_inside(context, files, tmp_path):
    from qgis.core import QgsVectorLayer

    d = files["dir"]
    # centres (10, 10) and (30, 30) inside QUAD; (62, 32) and (8, 54) outside, the first one's box touching it
    squares = [(5, 5, 10, 0, 200), (22, 22, 16, 1, 230), (56, 26, 12, 0, 180), (4, 50, 8, 1, 210)]
    raster = write_raster(d / "scene.tif", square_scene(W, H, squares), origin=ORIGIN, cell=1.0)
    onnx = yolo_v8_onnx(d / "yolo.onnx", 32, {0: "red", 1: "green"})
    found = {}
    for name, extra in (("all", {}), ("masked", {"MASK": files["mask"], "EXTENT": files["extent"]})):
        result, feedback = run("dltools:detectobjects", context, INPUT=str(raster), MODEL=str(onnx),
                               ARGUMENTS="padding 4", OUTPUT=str(tmp_path / f"{name}.gpkg"), **extra)
        layer = QgsVectorLayer(result["OUTPUT"], name, "ogr")
        found[name] = sorted((round(f.geometry().boundingBox().xMinimum() - ORIGIN[0]),
                              round(ORIGIN[1] - f.geometry().boundingBox().yMaximum())) for f in layer.getFeatures())
    assert found["all"] == [(4, 50), (5, 5), (22, 22), (56, 26)]
    assert found["masked"] == [(5, 5), (22, 22)]
    assert any("2 objects whose centre lies outside" in line for line in feedback.infos)


def test_an_empty_mask_layer_is_refused(context, files, tmp_path):
    from qgis.core import QgsProcessingException

    empty = write_mask(files["dir"] / "empty.geojson", [])
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException, match="MASK 'empty' has no polygon"):
        run("dltools:classifypixels", context, INPUT=files["raster"], MODEL=files["emd"], MASK=empty,
            EXTENT=files["extent"], OUTPUT=str(out))
    assert not out.exists()

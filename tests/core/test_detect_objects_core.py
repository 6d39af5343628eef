# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects' engine with exact detectors built here: every square found once, exact boxes, classes and
confidences, across tile sizes, paddings and batch sizes, seams and raster edges, rotated and geographic grids."""

from __future__ import annotations

import json

import pytest
from builders import RecordingProgress, write_raster
from detection_models import expected_boxes, square_scene, torchvision_script, yolo_v8_onnx
from dltools.core.errors import InputDataError
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.detect_objects.pipeline import detect_objects
from dltools.core.trust import CodeTrust
from osgeo import gdal, ogr, osr

TRUSTED = CodeTrust.all()  # these tests' own TorchScript files

W, H = 150, 130
# (x, y, size, class, value): squares across seams of 32/48/64-pixel tile centres, at corners of four tiles,
# bigger than the padding, and cut by the raster's left, right and bottom edges
SQUARES = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (56, 50, 16, 0, 190), (90, 60, 12, 0, 180),
           (-4, 80, 10, 1, 210), (140, 100, 20, 0, 250), (100, 120, 14, 1, 220), (120, 30, 28, 1, 240)]
NAMES = {0: "red", 1: "green"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    raster = write_raster(d / "scene.tif", square_scene(W, H, SQUARES), origin=(500000.0, 4000000.0), cell=0.5)
    return d, raster


@pytest.fixture(scope="module")
def yolo(scene):
    d, _ = scene
    cache = {}

    def get(tile: int):
        if tile not in cache:
            cache[tile] = yolo_v8_onnx(d / f"yolo{tile}.onnx", tile, NAMES)
        return cache[tile]
    return get


def pixel_boxes(result, gt) -> list[tuple]:
    """Objects -> (x1, y1, x2, y2, class value, confidence) in pixels of a north-up grid."""
    out = []
    for o in result.objects:
        minx, maxx, miny, maxy = ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope()
        out.append((round((minx - gt[0]) / gt[1], 6), round((maxy - gt[3]) / gt[5], 6),
                    round((maxx - gt[0]) / gt[1], 6), round((miny - gt[3]) / gt[5], 6), o.class_value, o.confidence))
    return sorted(out)


def assert_found_exactly(result, gt, value_of_class=lambda c: c, names=NAMES):
    got = pixel_boxes(result, gt)
    want = sorted((x1, y1, x2, y2, value_of_class(c), conf) for x1, y1, x2, y2, c, conf in expected_boxes(W, H, SQUARES))
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g[:4] == pytest.approx(w[:4], abs=1e-6), (g, w)
        assert g[4] == w[4]
        assert g[5] == pytest.approx(w[5], abs=1e-3)
    by_value = {value_of_class(c): n for c, n in names.items()}
    assert all(o.class_name == by_value[o.class_value] for o in result.objects)


@pytest.mark.parametrize("tile,padding,batch", [(64, 0, 1), (64, 8, 4), (64, 16, 4), (48, 8, 9), (48, 0, 4),
                                                (64, 24, 2)])
def test_yolo_v8_every_square_once(scene, yolo, tile, padding, batch):
    _, raster = scene
    md = load_model_definition(str(yolo(tile)), trust=TRUSTED)
    assert md.model_type == "ObjectDetection" and [c.name for c in md.classes] == ["red", "green"]
    progress = RecordingProgress()
    result = detect_objects(str(raster), md, f"padding {padding};batch_size {batch}", progress=progress)
    assert result.layout == "yolo_v8" and result.geometry_type == "Polygon"
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))
    assert any(line.startswith("Objects: ") and "after the seam merge" in line for line in progress.infos)
    assert any("Objects per class:" in line for line in progress.infos)
    assert result.per_class == {"red": 4, "green": 4}


def test_exclude_pad_detections_off_still_once(scene, yolo):
    _, raster = scene
    md = load_model_definition(str(yolo(64)), trust=TRUSTED)
    result = detect_objects(str(raster), md, "padding 16;exclude_pad_detections false;nms_overlap 0.3")
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))
    assert result.before_merge > result.after_merge


def test_test_time_augmentation_keeps_boxes_and_scores(scene, yolo):
    _, raster = scene
    md = load_model_definition(str(yolo(64)), trust=TRUSTED)
    result = detect_objects(str(raster), md, "padding 16;test_time_augmentation true")
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))


def test_emd_without_classes_takes_names_from_onnx_metadata(scene, yolo, tmp_path):
    _, raster = scene
    onnx = yolo(64)
    emd = tmp_path / "m.emd"
    emd.write_text(json.dumps({"Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": str(onnx),
                               "ImageHeight": 64, "ImageWidth": 64, "ExtractBands": [0, 1, 2], "DataRange": [0, 1]}))
    result = detect_objects(str(raster), load_model_definition(str(emd), trust=TRUSTED), "padding 8")
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))


TV_EMD = {"Framework": "PyTorch", "ModelType": "ObjectDetection", "ImageHeight": 64, "ImageWidth": 64,
          "ExtractBands": [0, 1, 2], "DataRange": [0, 1], "Threshold": 0.3,
          "Classes": [{"Value": 1, "Name": "red", "Color": [255, 0, 0]},
                      {"Value": 2, "Name": "green", "Color": [0, 255, 0]}]}


@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("padding,batch", [(0, 1), (8, 4), (16, 9)])
def test_torchvision_style_torchscript(scene, tmp_path, masks, padding, batch):
    _, raster = scene
    ts = torchvision_script(tmp_path / "tv.pt", with_masks=masks, emd=TV_EMD)
    md = load_model_definition(str(ts), trust=TRUSTED)
    result = detect_objects(str(raster), md, f"padding {padding};batch_size {batch}")
    assert result.layout == "torchvision"
    assert result.geometry_type == ("MultiPolygon" if masks else "Polygon")
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5), value_of_class=lambda c: c + 1)
    if masks:  # a mask's outline is the square itself: area = box area, 4 corners
        for o in result.objects:
            g = ogr.CreateGeometryFromWkb(o.wkb)
            assert g.GetGeometryType() == ogr.wkbMultiPolygon
            minx, maxx, miny, maxy = g.GetEnvelope()
            assert g.GetArea() == pytest.approx((maxx - minx) * (maxy - miny))


def _rotated_raster(path, gt, epsg):
    img = square_scene(W, H, SQUARES)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, 3, gdal.GDT_Byte)
    ds.SetGeoTransform(gt)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(img[b])
    ds = None
    return path


def _map(gt, x, y):
    return gt[0] + x * gt[1] + y * gt[2], gt[3] + x * gt[4] + y * gt[5]


@pytest.mark.parametrize("gt,epsg", [
    ((500000.0, 0.4330127, 0.25, 4000000.0, 0.25, -0.4330127), 32633),  # rotated 30 degrees
    ((12.5, 1e-5, 0.0, 45.2, 0.0, -1e-5), 4326),  # geographic
])
def test_rotated_and_geographic_grids(scene, yolo, tmp_path, gt, epsg):
    raster = _rotated_raster(tmp_path / "r.tif", gt, epsg)
    md = load_model_definition(str(yolo(64)), trust=TRUSTED)
    result = detect_objects(str(raster), md, "padding 8;batch_size 4")
    srs = osr.SpatialReference()
    srs.ImportFromWkt(result.crs_wkt)
    assert srs.GetAuthorityCode(None) == str(epsg)
    want = expected_boxes(W, H, SQUARES)
    assert len(result.objects) == len(want)
    for x1, y1, x2, y2, cls, conf in want:
        corners = [_map(gt, x, y) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        expected = ogr.CreateGeometryFromWkt("POLYGON((" + ",".join(f"{x!r} {y!r}" for x, y in corners + corners[:1])
                                             + "))")
        match = [o for o in result.objects if ogr.CreateGeometryFromWkb(o.wkb).Intersects(expected.Centroid())]
        assert len(match) == 1
        got = ogr.CreateGeometryFromWkb(match[0].wkb)
        assert got.SymDifference(expected).GetArea() < 1e-6 * expected.GetArea()
        assert match[0].class_value == cls and match[0].confidence == pytest.approx(conf, abs=1e-3)


def test_rotated_raster_refuses_extent(tmp_path, yolo):
    from dltools.core.raster.request import RasterRequest

    raster = _rotated_raster(tmp_path / "r.tif", (0.0, 0.8, 0.2, 0.0, 0.2, -0.8), 32633)
    with pytest.raises(InputDataError, match="rotated geotransform"):
        detect_objects(str(raster), load_model_definition(str(yolo(64)), trust=TRUSTED), request=RasterRequest(cell_size=2.0))


def test_non_detector_and_unknown_layout_are_refused(scene, tmp_path):
    import torch

    _, raster = scene

    class Pixels(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2]

    path = tmp_path / "pix.pt"
    emd = dict(TV_EMD)
    torch.jit.save(torch.jit.script(Pixels()), str(path), _extra_files={"dltools.json": json.dumps(emd)})
    with pytest.raises(InputDataError, match=r"returned \[1, 2, 64, 64\].*supported layouts"):
        detect_objects(str(raster), load_model_definition(str(path), trust=TRUSTED))
    emd["ModelType"] = "ImageClassification"
    torch.jit.save(torch.jit.script(Pixels()), str(path), _extra_files={"dltools.json": json.dumps(emd)})
    with pytest.raises(InputDataError, match="not an object detection model"):
        detect_objects(str(raster), load_model_definition(str(path), trust=TRUSTED))


def test_cancel_stops_the_run(scene, yolo):
    from dltools.core.errors import CancelledError

    _, raster = scene
    with pytest.raises(CancelledError):
        detect_objects(str(raster), load_model_definition(str(yolo(48)), trust=TRUSTED), "padding 8;batch_size 1",
                       progress=RecordingProgress(cancel_after=1))


def test_run_nms_applies_the_tool_rule(scene, yolo):
    _, raster = scene
    md = load_model_definition(str(yolo(64)), trust=TRUSTED)
    result = detect_objects(str(raster), md, "padding 8", run_nms=True, max_overlap_ratio=0.0)
    assert len(result.objects) == len(expected_boxes(W, H, SQUARES))  # the squares do not overlap


@pytest.mark.parametrize("extra", ["edge_fill zero", "block_size 48", "edge_fill zero;block_size 100"])
def test_edge_fill_and_block_sizes(scene, yolo, extra):
    _, raster = scene
    progress = RecordingProgress()
    result = detect_objects(str(raster), load_model_definition(str(yolo(64)), trust=TRUSTED), f"padding 8;batch_size 4;{extra}",
                            progress=progress)
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))
    assert result.blocks == (12 if extra == "block_size 48" else (4 if "100" in extra else 1))
    assert any(line.startswith("Blocks: ") for line in progress.infos)


@pytest.mark.parametrize("kind", ["obb", "segment"])
def test_ultralytics_obb_and_segmentation_exports(scene, tmp_path, kind):
    from detection_models import yolo_variant_onnx

    _, raster = scene
    md = load_model_definition(str(yolo_variant_onnx(tmp_path / f"{kind}.onnx", 64, kind)), trust=TRUSTED)
    result = detect_objects(str(raster), md, "padding 16;batch_size 4")
    assert result.layout == ("yolo_obb" if kind == "obb" else "yolo_seg")
    assert result.geometry_type == ("Polygon" if kind == "obb" else "MultiPolygon")
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))
    for o in result.objects:  # rotated rectangles at angle 0 and mask outlines are the squares themselves
        g = ogr.CreateGeometryFromWkb(o.wkb)
        minx, maxx, miny, maxy = g.GetEnvelope()
        assert g.GetArea() == pytest.approx((maxx - minx) * (maxy - miny))


def test_onnx_with_separate_outputs(scene, tmp_path):
    from detection_models import separate_onnx

    _, raster = scene
    separate_onnx(tmp_path / "separate.onnx", 64)
    emd = tmp_path / "separate.emd"
    emd.write_text(json.dumps({**TV_EMD, "Framework": "ONNX", "ModelFile": "separate.onnx"}))
    progress = RecordingProgress()
    result = detect_objects(str(raster), load_model_definition(str(emd), trust=TRUSTED), "padding 16;batch_size 4",
                            progress=progress)
    assert result.layout == "separate" and result.batch_size == 1
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5), value_of_class=lambda c: c + 1)


def test_blocks_are_independent_picklable_jobs(scene, yolo, monkeypatch):
    """What a cluster worker does: unpickle the task, run any block alone, in any order; same objects."""
    import pickle

    import dltools.core.tools.detect_objects.pipeline as pipeline
    from dltools.core.engine.blocks import run_block

    _, raster = scene
    md = load_model_definition(str(yolo(48)), trust=TRUSTED)
    args = "padding 8;batch_size 4;block_size 64"
    in_process = detect_objects(str(raster), md, args)

    def like_a_cluster(task, backend, jobs, sink, progress):
        copy = pickle.loads(pickle.dumps(task))
        for job in reversed(jobs):
            sink.write(job, pickle.loads(pickle.dumps(run_block(copy, backend, job))))
        sink.close()

    monkeypatch.setattr(pipeline, "run_in_process", like_a_cluster)
    shipped = detect_objects(str(raster), md, args)
    assert shipped.blocks == in_process.blocks > 1
    key = sorted((o.wkb, o.class_value, o.confidence) for o in in_process.objects)
    assert sorted((o.wkb, o.class_value, o.confidence) for o in shipped.objects) == key


def test_dynamic_size_export_takes_imgsz_and_tile_size(scene, tmp_path):
    _, raster = scene
    onnx = yolo_v8_onnx(tmp_path / "dyn.onnx", 96, NAMES, dynamic_size=True)
    md = load_model_definition(str(onnx), trust=TRUSTED)
    assert (md.image_height, md.image_width, md.supports_variable_tile_size) == (96, 96, True)
    for args in ("padding 16", "padding 8;tile_size 48"):
        result = detect_objects(str(raster), md, args)
        assert result.tile_size == ((48, 48) if "48" in args else (96, 96))
        assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))


def test_test_time_augmentation_inverts_masks(scene, tmp_path):
    _, raster = scene
    ts = torchvision_script(tmp_path / "tv.pt", with_masks=True, emd=TV_EMD)
    result = detect_objects(str(raster), load_model_definition(str(ts), trust=TRUSTED), "padding 16;test_time_augmentation true")
    assert_found_exactly(result, (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5), value_of_class=lambda c: c + 1)
    for o in result.objects:  # each outline is its square: the masks of all 8 transforms were turned back
        g = ogr.CreateGeometryFromWkb(o.wkb)
        minx, maxx, miny, maxy = g.GetEnvelope()
        assert g.GetArea() == pytest.approx((maxx - minx) * (maxy - miny))

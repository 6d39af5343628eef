# SPDX-License-Identifier: GPL-2.0-or-later
"""Export Training Data (core/tools/training_data) on hand-made rasters and polygons whose chips and labels
are known exactly, for every metadata format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from builders import read_raster, write_raster
from osgeo import gdal, ogr

from core.errors import CancelledError, InputDataError, OutputError
from core.tools.training_data.export import ClassData, export_training_data, tile_origins
from core.tools.training_data.settings import ExportSettings

X0, Y0 = 500000.0, 4000000.0  # the raster's top-left corner; 1 m pixels


def pixel_rect(c0: float, r0: float, c1: float, r1: float) -> bytes:
    """A polygon covering columns c0..c1 and rows r0..r1 (pixel edges) of the test raster."""
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)):
        ring.AddPoint_2D(X0 + c, Y0 - r)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return bytes(poly.ExportToWkb())


def point(c: float, r: float) -> bytes:
    p = ogr.Geometry(ogr.wkbPoint)
    p.AddPoint_2D(X0 + c, Y0 - r)
    return bytes(p.ExportToWkb())


@pytest.fixture
def raster(tmp_path) -> tuple[Path, np.ndarray]:
    band = (10 * np.arange(8)[:, None] + np.arange(12)[None, :]).astype(np.uint8)  # value = 10 * row + column
    data = np.stack([band, band + 100])
    return write_raster(tmp_path / "image.tif", data, origin=(X0, Y0)), data


#: class 1: columns 1..4, rows 1..3; class 2: columns 6..10, rows 4..7
FEATURES = [(1, pixel_rect(1, 1, 4, 3), 1), (2, pixel_rect(6, 4, 10, 7), 2)]


def export(raster_path, folder, fmt, features=FEATURES, mask=(), **kw):
    settings = ExportSettings(metadata_format=fmt, **{"tile_x": 4, "tile_y": 4, "stride_x": 4, "stride_y": 4, **kw})
    return export_training_data(str(raster_path), str(folder), ClassData(features=list(features)), settings,
                                mask_wkbs=mask)


def test_tile_origins_reach_the_edge_once():
    assert tile_origins(12, 4, 4) == [0, 4, 8]
    assert tile_origins(10, 4, 2) == [0, 2, 4, 6]
    assert tile_origins(12, 5, 5) == [0, 5, 10]  # the last chip reaches past the edge
    assert tile_origins(3, 4, 4) == [0]


def test_classified_tiles_chips_labels_and_esri_files(raster, tmp_path):
    path, data = raster
    out = tmp_path / "out"
    summary = export(path, out, "Classified_Tiles")
    assert (summary.chips, summary.classes) == (3, [1, 2])
    # chips with a feature, row by row: (0, 0), (4, 4), (8, 4); raw values, both bands
    origins = [(0, 0), (4, 4), (8, 4)]
    for n, (x, y) in enumerate(origins):
        chip = read_raster(out / "images" / f"{n:09d}.tif")
        assert np.array_equal(chip, data[:, y:y + 4, x:x + 4])
        ds = gdal.Open(str(out / "images" / f"{n:09d}.tif"))
        assert ds.GetGeoTransform() == (X0 + x, 1.0, 0.0, Y0 - y, 0.0, -1.0)
        world = (out / "images" / f"{n:09d}.tfw").read_text().split()
        assert [float(v) for v in world] == [1.0, 0.0, 0.0, -1.0, X0 + x + 0.5, Y0 - y - 0.5]
    expected0 = np.zeros((4, 4), np.uint8)
    expected0[1:3, 1:4] = 1
    assert np.array_equal(read_raster(out / "labels" / "000000000.tif"), expected0)
    expected1 = np.zeros((4, 4), np.uint8)
    expected1[0:3, 2:4] = 2
    assert np.array_equal(read_raster(out / "labels" / "000000001.tif"), expected1)
    assert (out / "map.txt").read_text().splitlines() == [
        f"images\\{n:09d}.tif labels\\{n:09d}.tif" for n in range(3)]
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["MetaDataMode"] == "Classified_Tiles" and stats["NumTiles"] == 3 and stats["NumBands"] == 2
    assert stats["ClassPixelStats"] == {"NumClasses": 2, "NumImagesTotal": 3, "NumImagesPerClass": [1, 2],
                                        "NumPixelsPerClass": [6, 12]}
    pixels = np.concatenate([data[:, y:y + 4, x:x + 4].reshape(2, -1) for x, y in origins], axis=1).astype(float)
    band = stats["BandStatsState"][0]
    assert (band["Min"], band["Max"], band["Num"]) == (pixels[0].min(), pixels[0].max(), 48)
    assert band["M1"] == pytest.approx(pixels[0].mean())
    assert band["M2"] == pytest.approx(((pixels[0] - pixels[0].mean()) ** 2).sum())
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert emd["MetaDataMode"] == "Classified_Tiles" and emd["ImageSpaceUsed"] == "MAP_SPACE"
    assert (emd["ImageWidth"], emd["ImageHeight"], emd["ExtractBands"]) == (4, 4, [0, 1])
    assert [(c["Value"], c["Name"]) for c in emd["Classes"]] == [(1, "1"), (2, "2")]
    assert emd["AllTilesStats"][1]["Mean"] == pytest.approx(pixels[1].mean())
    assert emd["AllTilesStats"][1]["StdDev"] == pytest.approx(pixels[1].std())
    assert "Chips: 3" in (out / "stats.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tif", "out"]  # no temporary folder left


def test_pascal_voc_boxes_cut_at_the_chip_edge(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "voc"
    export(path, out, "PASCAL_VOC_rectangles")
    boxes = []
    for n in range(3):
        root = ET.parse(out / "labels" / f"{n:09d}.xml").getroot()
        assert root.findtext("filename") == f"{n:09d}.tif"
        assert (root.findtext("size/width"), root.findtext("size/height"), root.findtext("size/depth")) == ("4", "4", "2")
        boxes.append([(o.findtext("name"), *(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")))
                      for o in root.findall("object")])
    assert boxes == [[("1", 1, 1, 4, 3)], [("2", 2, 0, 4, 3)], [("2", 0, 0, 2, 3)]]
    assert (out / "map.txt").read_text().splitlines()[0] == "images\\000000000.tif labels\\000000000.xml"
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["FeatureStats"]["NumFeaturesPerClass"] == [1, 2]
    assert stats["FeatureStats"]["NumImagesPerClass"] == [1, 2]


def test_min_overlap_ratio_drops_small_parts(raster, tmp_path):
    path, _ = raster
    # class 2 is 4 x 3 pixels: half of it in chip (4, 4), half in chip (8, 4); a ratio of 0.6 keeps neither part
    summary = export(path, tmp_path / "r", "PASCAL_VOC_rectangles", min_polygon_overlap_ratio=0.6)
    assert summary.chips == 1
    summary = export(path, tmp_path / "r2", "PASCAL_VOC_rectangles", min_polygon_overlap_ratio=0.5)
    assert summary.chips == 3


def test_stride_and_tile_size_and_chips_past_the_edge(raster, tmp_path):
    path, data = raster
    out = tmp_path / "edge"
    summary = export(path, out, "Classified_Tiles", features=[(1, pixel_rect(10, 5, 12, 8), 3)],
                     tile_x=5, tile_y=5, stride_x=5, stride_y=5)
    assert summary.chips == 1  # the chip at column 10, row 5 reaches 3 columns and 2 rows past the raster
    chip = read_raster(out / "images" / "000000000.tif")
    expected = np.zeros((2, 5, 5), np.uint8)
    expected[:, :3, :2] = data[:, 5:8, 10:12]
    assert np.array_equal(chip, expected)
    label = read_raster(out / "labels" / "000000000.tif")
    assert label.tolist() == [[3, 3, 0, 0, 0]] * 3 + [[0] * 5] * 2
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["BandStatsState"][0]["Num"] == 6  # only the raster's own pixels count
    # overlapping chips: stride 2 over tile 4
    summary = export(path, tmp_path / "stride", "Classified_Tiles", stride_x=2, stride_y=2)
    origins = [(x, y) for y in tile_origins(8, 4, 2) for x in tile_origins(12, 4, 2)]
    assert len(origins) == 5 * 3
    hits = [(x, y) for x, y in origins if (x < 4 and y < 3) or (x + 4 > 6 and y + 4 > 4 and x < 10)]
    assert summary.chips == len(hits)


def test_nofeature_tiles_mask_and_start_index(raster, tmp_path):
    path, _ = raster
    summary = export(path, tmp_path / "all", "Classified_Tiles", output_nofeature_tiles=True, start_index=7)
    assert summary.chips == 6
    assert sorted(p.name for p in (tmp_path / "all" / "images").glob("*.tif"))[0] == "000000007.tif"
    # a mask around the left half: only chips completely inside it (x 0..4 and 4..8 at both rows)
    summary = export(path, tmp_path / "masked", "Classified_Tiles", output_nofeature_tiles=True,
                     mask=[pixel_rect(0, 0, 8, 8)])
    assert summary.chips == 4


def test_points_with_a_buffer_become_circles(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "pts"
    with pytest.raises(InputDataError, match="BUFFER_RADIUS"):
        export(path, tmp_path / "nobuffer", "PASCAL_VOC_rectangles", features=[(1, point(2, 2), 5)])
    export(path, out, "PASCAL_VOC_rectangles", features=[(1, point(2, 2), 5)], buffer_radius=1.0)
    obj = ET.parse(out / "labels" / "000000000.xml").getroot().find("object")
    box = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert box == pytest.approx([1, 1, 3, 3], abs=1e-6)
    out = tmp_path / "ptmask"
    export(path, out, "Classified_Tiles", features=[(1, point(2, 2), 5)], buffer_radius=1.0)
    # the circle of radius 1 around (2, 2) covers the centres of the 4 pixels around it
    label = read_raster(out / "labels" / "000000000.tif")
    assert np.argwhere(label == 5).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]


def test_rotation_by_quarter_turns(raster, tmp_path):
    path, data = raster
    out = tmp_path / "rot"
    summary = export(path, out, "PASCAL_VOC_rectangles", features=[FEATURES[0]], rotation_angle=90)
    assert summary.chips == 4
    chip0 = data[:, 0:4, 0:4]
    for k in range(4):
        assert np.array_equal(read_raster(out / "images" / f"{k:09d}.tif"), np.rot90(chip0, k, axes=(1, 2)))
    boxes = []
    for k in range(4):
        obj = ET.parse(out / "labels" / f"{k:09d}.xml").getroot().find("object")
        boxes.append([float(obj.findtext(f"bndbox/{n}")) for n in ("xmin", "ymin", "xmax", "ymax")])
    # the box (1, 1, 4, 3) turned counter-clockwise in a 4 x 4 chip
    assert boxes == [[1, 1, 4, 3], [1, 0, 3, 3], [0, 1, 3, 3], [1, 1, 3, 4]]
    # each turned pixel keeps its place on the map: pixel (0, 0) of the 90-degree chip is the original's (3, 0)
    ds = gdal.Open(str(out / "images" / "000000001.tif"))
    gt = ds.GetGeoTransform()
    assert (gt[0] + 0.5 * gt[1] + 0.5 * gt[2], gt[3] + 0.5 * gt[4] + 0.5 * gt[5]) == (X0 + 3.5, Y0 - 0.5)
    with pytest.raises(InputDataError, match="ROTATION_ANGLE"):
        export(path, tmp_path / "r05", "PASCAL_VOC_rectangles", rotation_angle=0.5)


def _centres(ds) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of every pixel centre of a (possibly rotated) chip, from its own geotransform."""
    gt = ds.GetGeoTransform()
    j, i = np.meshgrid(np.arange(ds.RasterXSize) + 0.5, np.arange(ds.RasterYSize) + 0.5)
    return gt[0] + j * gt[1] + i * gt[2], gt[3] + j * gt[4] + i * gt[5]


def test_rotation_by_any_angle_keeps_pixels_and_labels_on_the_map(raster, tmp_path):
    path, data = raster
    out = tmp_path / "r30"
    big = [(1, pixel_rect(2, 2, 7, 6), 1)]  # a 5 x 4 polygon in the 8 x 8 chip at the origin
    summary = export(path, out, "Classified_Tiles", features=big, tile_x=8, tile_y=8, stride_x=8, stride_y=8,
                     rotation_angle=30)
    angles = summary.chips
    assert angles == 12  # 0, 30, ..., 330: the chip at the origin only (the others hold no feature)
    polygon = ogr.CreateGeometryFromWkb(big[0][1])
    for n in range(angles):
        ds = gdal.Open(str(out / "images" / f"{n:09d}.tif"))
        gt = ds.GetGeoTransform()
        assert (ds.RasterXSize, ds.RasterYSize) == (8, 8)
        assert gt[2] == pytest.approx(-np.sin(np.radians(30 * n)), abs=1e-9)  # the rotation is in the georeference
        x, y = _centres(ds)
        col, row = np.floor(x - X0).astype(int), np.floor(Y0 - y).astype(int)
        inside = (col >= 0) & (col < 12) & (row >= 0) & (row < 8)
        expected = np.where(inside, data[0][row.clip(0, 7), col.clip(0, 11)], 0)
        assert np.array_equal(ds.ReadAsArray()[0], expected), n  # each pixel is the input pixel under its centre
        label = read_raster(out / "labels" / f"{n:09d}.tif")
        point = ogr.Geometry(ogr.wkbPoint)
        want = np.zeros((8, 8), np.uint8)
        for i in range(8):
            for j in range(8):
                point.SetPoint_2D(0, float(x[i, j]), float(y[i, j]))
                want[i, j] = 1 if polygon.Contains(point) else 0
        assert np.array_equal(label, want), n  # a label pixel is the class where its centre is in the polygon
    # 90 degrees by this path equals the exact quarter turn
    assert np.array_equal(read_raster(out / "images" / "000000003.tif"), np.rot90(data[:, 0:8, 0:8], 1, axes=(1, 2)))


def test_rotated_boxes_and_labeled_tiles(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "voc45"
    export(path, out, "PASCAL_VOC_rectangles", features=[(1, pixel_rect(3, 3, 5, 5), 1)], tile_x=8, tile_y=8,
           stride_x=8, stride_y=8, rotation_angle=45)
    ds = gdal.Open(str(out / "images" / "000000001.tif"))
    inv = gdal.InvGeoTransform(ds.GetGeoTransform())
    corners = [gdal.ApplyGeoTransform(inv, X0 + c, Y0 - r) for c, r in ((3, 3), (5, 3), (5, 5), (3, 5))]
    obj = ET.parse(out / "labels" / "000000001.xml").getroot().find("object")
    box = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    assert box == pytest.approx([min(xs), min(ys), max(xs), max(ys)], abs=1e-5)
    assert box[2] - box[0] == pytest.approx(2 * np.sqrt(2), abs=1e-5)  # a 2 x 2 square turned 45 degrees
    out = tmp_path / "lab45"
    summary = export(path, out, "Labeled_Tiles", features=[FEATURES[0]], rotation_angle=45, blacken_around_feature=True)
    assert summary.chips == 8
    ds = gdal.Open(str(out / "images" / "000000001.tif"))
    x, y = _centres(ds)
    polygon = ogr.CreateGeometryFromWkb(FEATURES[0][1])
    point = ogr.Geometry(ogr.wkbPoint)
    chip = ds.ReadAsArray()
    for i in range(4):
        for j in range(4):
            point.SetPoint_2D(0, float(x[i, j]), float(y[i, j]))
            if not polygon.Contains(point):
                assert chip[:, i, j].tolist() == [0, 0]  # blackened around the feature


def test_pixel_space(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "px"
    export(path, out, "Classified_Tiles", reference_system="PIXEL_SPACE")
    ds = gdal.Open(str(out / "images" / "000000001.tif"))
    assert ds.GetGeoTransform() == (4.0, 1.0, 0.0, -4.0, 0.0, -1.0)
    assert ds.GetProjection() == ""
    assert json.loads((out / "esri_model_definition.emd").read_text())["ImageSpaceUsed"] == "PIXEL_SPACE"


def test_a_classified_raster_as_class_data(raster, tmp_path):
    path, _ = raster
    classes = np.zeros((8, 12), np.uint8)
    classes[5:7, 9:11] = 4
    classes_path = write_raster(tmp_path / "classes.tif", classes, origin=(X0, Y0))
    out = tmp_path / "cls"
    settings = ExportSettings(metadata_format="Classified_Tiles", tile_x=4, tile_y=4, stride_x=4, stride_y=4)
    summary = export_training_data(str(path), str(out), ClassData(raster=str(classes_path)), settings)
    assert (summary.chips, summary.classes) == (1, [4])
    assert np.array_equal(read_raster(out / "labels" / "000000000.tif"), classes[4:8, 8:12])
    with pytest.raises(InputDataError, match="Classified_Tiles only"):
        export_training_data(str(path), str(tmp_path / "x"), ClassData(raster=str(classes_path)),
                             ExportSettings(metadata_format="KITTI_rectangles"))


def test_an_existing_folder_is_never_written_into_and_a_cancel_leaves_nothing(raster, tmp_path):
    path, _ = raster
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        export(path, busy, "Classified_Tiles")
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]

    class CancelAfterOne:
        calls = 0

        def set_progress(self, p): pass
        def info(self, m): pass
        def warning(self, m): pass
        def debug(self, m): pass

        def is_canceled(self):
            self.calls += 1
            return self.calls > 1

    settings = ExportSettings(tile_x=4, tile_y=4, stride_x=4, stride_y=4)
    with pytest.raises(CancelledError):
        export_training_data(str(path), str(tmp_path / "cancelled"), ClassData(features=FEATURES), settings,
                             progress=CancelAfterOne())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "image.tif"]


def test_kitti_lines(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "kitti"
    export(path, out, "KITTI_rectangles")
    assert (out / "labels" / "000000000.txt").read_text() == \
        "1 0.00 0 0.00 1.00 1.00 4.00 3.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00\n"
    assert (out / "labels" / "000000002.txt").read_text() == \
        "2 0.00 0 0.00 0.00 0.00 2.00 3.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00\n"
    assert (out / "map.txt").read_text().splitlines()[1] == "images\\000000001.tif labels\\000000001.txt"
    assert json.loads((out / "esri_accumulated_stats.json").read_text())["MetaDataMode"] == "KITTI_rectangles"


def test_rcnn_masks_number_each_feature_per_class(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "rcnn"
    features = FEATURES + [(3, pixel_rect(0, 3, 2, 4), 1)]  # a second class-1 feature in the first chip
    summary = export(path, out, "RCNN_Masks", features=features)
    assert summary.chips == 3
    mask = read_raster(out / "labels" / "1" / "000000000.tif")
    expected = np.zeros((4, 4), np.uint8)
    expected[1:3, 1:4] = 1
    expected[3, 0:2] = 2
    assert np.array_equal(mask, expected)
    assert not (out / "labels" / "2" / "000000000.tif").exists()
    assert np.array_equal(read_raster(out / "labels" / "2" / "000000001.tif"), (np.arange(4)[None, :] >= 2) *
                          (np.arange(4)[:, None] < 3).astype(np.uint8))
    assert (out / "map.txt").read_text().splitlines()[:2] == [
        "images\\000000000.tif labels\\1\\000000000.tif", "images\\000000001.tif labels\\2\\000000001.tif"]
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["FeatureStats"]["NumFeaturesPerClass"] == [2, 2]


def test_labeled_tiles_fixed_size_bounding_box_and_blacken(raster, tmp_path):
    path, data = raster
    out = tmp_path / "fixed"
    summary = export(path, out, "Labeled_Tiles")
    assert summary.chips == 2  # one chip per feature
    # class 1: bounding box centre (2.5, 2) -> a 4 x 4 chip from column 1, row 0
    assert np.array_equal(read_raster(out / "images" / "000000000.tif"), data[:, 0:4, 1:5])
    obj = ET.parse(out / "labels" / "000000000.xml").getroot().findall("object")
    assert len(obj) == 1 and obj[0].findtext("name") == "1"
    assert [obj[0].findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")] == ["0", "1", "3", "3"]
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert (emd["MetaDataMode"], emd["CropTileMode"], emd["BlackenAroundFeature"]) == ("Labeled_Tiles", "FIXED_SIZE", False)
    out = tmp_path / "bbox"
    export(path, out, "Labeled_Tiles", crop_mode="BOUNDING_BOX")
    assert np.array_equal(read_raster(out / "images" / "000000000.tif"), data[:, 1:3, 1:4])
    out = tmp_path / "black"
    export(path, out, "Labeled_Tiles", features=[FEATURES[1]], blacken_around_feature=True)
    # class 2 (columns 6..10, rows 4..7): centre (8, 5.5) -> chip from column 6, row 4; row 7 is outside the polygon
    # and row 8 past the raster: both black
    expected = np.zeros((2, 4, 4), np.uint8)
    expected[:, 0:3] = data[:, 4:7, 6:10]
    assert np.array_equal(read_raster(out / "images" / "000000000.tif"), expected)


def test_yolo_labels_and_data_yaml(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "yolo"
    export(path, out, "YOLO")
    assert (out / "labels" / "000000000.txt").read_text() == "0 0.625000 0.500000 0.750000 0.500000\n"
    assert (out / "labels" / "000000001.txt").read_text() == "1 0.750000 0.375000 0.500000 0.750000\n"
    assert (out / "data.yaml").read_text() == \
        "path: .\ntrain: images\nval: images\nnc: 2\nnames:\n  0: '1'\n  1: '2'\n"
    assert not (out / "esri_model_definition.emd").exists()
    assert (out / "map.txt").read_text().splitlines()[0] == "images\\000000000.tif labels\\000000000.txt"


def test_coco_instances_json(raster, tmp_path):
    path, _ = raster
    out = tmp_path / "coco"
    export(path, out, "COCO")
    coco = json.loads((out / "labels.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["000000000.tif", "000000001.tif", "000000002.tif"]
    assert coco["images"][0] == {"id": 1, "file_name": "000000000.tif", "width": 4, "height": 4}
    first = coco["annotations"][0]
    assert (first["image_id"], first["category_id"], first["bbox"], first["area"], first["iscrowd"]) == \
        (1, 1, [1.0, 1.0, 3.0, 2.0], 6.0, 0)
    ring = first["segmentation"][0]
    assert len(ring) == 10 and set(zip(ring[0::2], ring[1::2])) == {(1.0, 1.0), (4.0, 1.0), (4.0, 3.0), (1.0, 3.0)}
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2, 2]
    assert coco["categories"] == [{"id": 1, "name": "1", "supercategory": "none"},
                                  {"id": 2, "name": "2", "supercategory": "none"}]
    assert not (out / "map.txt").exists() and not list(out.glob(".coco*"))


@pytest.mark.parametrize("fmt", ["Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles", "RCNN_Masks",
                                 "Labeled_Tiles"])
def test_arcgis_learn_finds_every_label_the_way_it_reads_them(raster, tmp_path, fmt):
    """The reading rules of arcgis.learn's prepare_data (facts from its source, not its code): the three esri files
    mark the folder; map.txt's first line gives the image and the label extension; a label is
    labels/<image stem>.<ext> (RCNN_Masks: labels/<class Name from the .emd>/<stem>.<ext>)."""
    path, _ = raster
    out = tmp_path / fmt
    export(path, out, fmt)
    assert all((out / name).is_file() for name in ("esri_model_definition.emd", "map.txt", "esri_accumulated_stats.json"))
    first = (out / "map.txt").read_text().splitlines()[0].split()
    assert (out / first[0].replace("\\", "/")).is_file()
    ext = first[-1].split(".")[-1]
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["MetaDataMode"] == fmt
    names = [c["Name"] for c in json.loads((out / "esri_model_definition.emd").read_text())["Classes"]]
    for image in sorted((out / "images").glob("*.tif")):
        if fmt == "RCNN_Masks":
            assert [n for n in names if (out / "labels" / n / f"{image.stem}.{ext}").is_file()]
        else:
            assert (out / "labels" / f"{image.stem}.{ext}").is_file()

# SPDX-License-Identifier: GPL-2.0-or-later
"""Export Training Data For Deep Learning through processing.run and qgis_process: hand-made raster and
polygons, chips and labels known exactly; the refusals name the parameter."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from builders import read_raster, write_raster

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

ALG = "dltools:exporttrainingdata"
X0, Y0 = 500000.0, 4000000.0


def rect(c0, r0, c1, r1) -> str:
    """WKT of the pixels columns c0..c1, rows r0..r1 of the test raster (1 m pixels from X0, Y0)."""
    x0, x1, y0, y1 = X0 + c0, X0 + c1, Y0 - r0, Y0 - r1
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def sample_layer(rows, geometry="Polygon", crs="EPSG:32633"):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    layer = QgsVectorLayer(f"{geometry}?crs={crs}&field=Classvalue:integer&field=Other:integer", "samples", "memory")
    feats = []
    for wkt, value in rows:
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        f.setAttributes([value, 99])
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


@pytest.fixture
def image(tmp_path):
    band = (10 * np.arange(8)[:, None] + np.arange(12)[None, :]).astype(np.uint8)
    data = np.stack([band, band + 100, band + 150])
    return write_raster(tmp_path / "image.tif", data, origin=(X0, Y0)), data


def run(context, **params):
    import processing

    return processing.run(ALG, {"TILE_SIZE_X": 4, "TILE_SIZE_Y": 4, "STRIDE_X": 4, "STRIDE_Y": 4, **params},
                          context=context)


def test_pascal_voc_through_processing_run(context, image, tmp_path):
    path, data = image
    layer = sample_layer([(rect(1, 1, 4, 3), 1), (rect(6, 4, 10, 7), 2)])
    out = tmp_path / "voc"
    result = run(context, INPUT=str(path), CLASS_DATA=layer, OUTPUT_FOLDER=str(out), BANDS=[3, 1])
    assert result["CHIPS"] == 3 and Path(result["OUTPUT_FOLDER"]) == out
    # Classvalue is found without CLASS_VALUE_FIELD; bands 3 then 1
    assert np.array_equal(read_raster(out / "images" / "000000001.tif"), data[[2, 0], 4:8, 4:8])
    obj = ET.parse(out / "labels" / "000000001.xml").getroot().find("object")
    assert obj.findtext("name") == "2"
    assert [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")] == ["2", "0", "4", "3"]
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert emd["MetaDataMode"] == "PASCAL_VOC_rectangles" and emd["ExtractBands"] == [0, 1]


def test_features_in_another_crs_and_png_classified_tiles(context, image, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry, QgsProject

    path, data = image
    to_wgs84 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32633"),
                                      QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    geom = QgsGeometry.fromWkt(rect(1.02, 1.02, 3.98, 2.98))
    geom.transform(to_wgs84)
    layer = sample_layer([(geom.asWkt(17), 3)], crs="EPSG:4326")
    out = tmp_path / "png"
    result = run(context, INPUT=str(path), CLASS_DATA=layer, OUTPUT_FOLDER=str(out), METADATA_FORMAT=0,
                 IMAGE_CHIP_FORMAT=1)
    assert result["CHIPS"] == 1
    assert np.array_equal(read_raster(out / "images" / "000000000.png"), data[:, 0:4, 0:4])
    assert (out / "images" / "000000000.pgw").is_file()
    label = read_raster(out / "labels" / "000000000.png")
    assert np.argwhere(label == 3).tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]


def test_refusals_name_what_is_wrong(context, image, tmp_path):
    from qgis.core import QgsProcessingException

    path, _ = image
    lines = sample_layer([("LINESTRING(500001 3999999, 500003 3999997)", 1)], geometry="LineString")
    with pytest.raises(QgsProcessingException, match="CLASS_DATA"):
        run(context, INPUT=str(path), CLASS_DATA=lines, OUTPUT_FOLDER=str(tmp_path / "a"))
    layer = sample_layer([(rect(1, 1, 4, 3), 1)])
    with pytest.raises(QgsProcessingException, match="no field 'Nope'"):
        run(context, INPUT=str(path), CLASS_DATA=layer, CLASS_VALUE_FIELD="Nope", OUTPUT_FOLDER=str(tmp_path / "b"))
    with pytest.raises(QgsProcessingException, match="JPEG"):
        run(context, INPUT=str(path), CLASS_DATA=layer, OUTPUT_FOLDER=str(tmp_path / "c"), IMAGE_CHIP_FORMAT=2,
            BANDS=[1, 2])
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("x")
    with pytest.raises(QgsProcessingException, match="not empty"):
        run(context, INPUT=str(path), CLASS_DATA=layer, OUTPUT_FOLDER=str(full))
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process is not installed")
def test_qgis_process_with_a_classified_raster(tmp_path, image, qgis_app):
    path, _ = image
    classes = np.zeros((8, 12), np.uint8)
    classes[0:2, 0:2] = 5
    classes_path = write_raster(tmp_path / "classes.tif", classes, origin=(X0, Y0))
    out = tmp_path / "tiles"
    answer = qgis_process_util.qgis_process_json(ALG, {
        "INPUT": str(path), "CLASS_DATA": str(classes_path), "OUTPUT_FOLDER": str(out), "METADATA_FORMAT": 0,
        "TILE_SIZE_X": 4, "TILE_SIZE_Y": 4, "STRIDE_X": 4, "STRIDE_Y": 4}, tmp_path)
    assert answer["results"]["CHIPS"] == 1
    assert np.array_equal(read_raster(out / "labels" / "000000000.tif"), classes[0:4, 0:4])
    message = qgis_process_util.qgis_process_failure(ALG, {
        "INPUT": str(path), "CLASS_DATA": str(classes_path), "OUTPUT_FOLDER": str(tmp_path / "k"),
        "METADATA_FORMAT": 2}, tmp_path)
    assert "Classified_Tiles only" in message


def test_cancel_leaves_no_folder(context, image, tmp_path):
    import processing
    from qgis.core import QgsProcessingException
    from recording_feedback import RecordingFeedback

    path, _ = image
    layer = sample_layer([(rect(1, 1, 4, 3), 1), (rect(6, 4, 10, 7), 2)])
    feedback = RecordingFeedback(cancel_at=10.0)  # after the first chips are written
    out = tmp_path / "cancelled"
    with pytest.raises(QgsProcessingException, match="cancelled. No output was kept"):
        processing.run(ALG, {"INPUT": str(path), "CLASS_DATA": layer, "OUTPUT_FOLDER": str(out), "TILE_SIZE_X": 2,
                             "TILE_SIZE_Y": 2, "STRIDE_X": 2, "STRIDE_Y": 2, "OUTPUT_NOFEATURE_TILES": True},
                       context=context, feedback=feedback)
    assert max(feedback.progress_seen) < 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tif"]


def test_a_mosaic_as_one_image_or_item_by_item(context, image, tmp_path):
    from osgeo import gdal

    _, data = image
    left = write_raster(tmp_path / "left.tif", data[:, :, :8], origin=(X0, Y0))
    right = write_raster(tmp_path / "right.tif", data[:, :, 8:], origin=(X0 + 8, Y0))
    vrt = str(tmp_path / "mosaic.vrt")
    gdal.BuildVRT(vrt, [str(left), str(right)]).FlushCache()
    layer = sample_layer([(rect(5, 1, 11, 3), 1)])  # across the seam between the items
    whole = run(context, INPUT=vrt, CLASS_DATA=layer, OUTPUT_FOLDER=str(tmp_path / "whole"), TILE_SIZE_X=8,
                STRIDE_X=8)
    # one image: chips at columns 0 and 8 of the mosaic, both holding part of the feature
    assert whole["CHIPS"] == 2
    items = run(context, INPUT=vrt, CLASS_DATA=layer, OUTPUT_FOLDER=str(tmp_path / "items"), TILE_SIZE_X=8,
                STRIDE_X=8, PROCESSING_MODE=1)
    # item by item: the left item's chip (its columns 0-7), then the right item's (its columns 0-3, 4 past its edge)
    assert items["CHIPS"] == 2
    first = read_raster(tmp_path / "items" / "images" / "000000000.tif")
    second = read_raster(tmp_path / "items" / "images" / "000000001.tif")
    assert np.array_equal(first, data[:, 0:4, 0:8])
    assert np.array_equal(second[:, :, :4], data[:, 0:4, 8:12]) and not second[:, :, 4:].any()
    stats = json.loads((tmp_path / "items" / "esri_accumulated_stats.json").read_text())
    assert stats["BandStatsState"][0]["Num"] == 32 + 16

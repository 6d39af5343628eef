# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects runs in core/pipelines/object_runs.py, driven without QGIS: features from an OGR file (any CRS),
per item of a mosaic, images as objects, and the field-name policy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from osgeo import gdal, ogr, osr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))

from builders import RecordingProgress  # noqa: E402
from co_models import EPSG, grid_raster, mean_emd, wkt_polygon, wkt_rect  # noqa: E402
from dltools.core.errors import CancelledError, InputDataError  # noqa: E402
from dltools.core.model.loader import load_model_definition  # noqa: E402
from dltools.core.tools.classify_objects.classifier import ObjectClassifier  # noqa: E402
from dltools.core.tools.classify_objects.pipeline import (
    FeaturesOnRaster,
    FeaturesPerItem,
    ImagesAsObjects,
    OgrFeatures,
    check_label_field,
    new_fields,
    per_item_input_names,
    unique_names,
)


def write_layer(path: Path, wkts: list[str | None], epsg: int = EPSG) -> Path:
    """A GeoPackage with a 'name' field; geometries given in the grid's CRS, written in ``epsg``."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    grid_srs, srs = osr.SpatialReference(), osr.SpatialReference()
    grid_srs.ImportFromEPSG(EPSG)
    srs.ImportFromEPSG(epsg)
    for s in (grid_srs, srs):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_layer = osr.CoordinateTransformation(grid_srs, srs)
    lyr = ds.CreateLayer("features", srs, ogr.wkbUnknown)
    lyr.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for i, wkt in enumerate(wkts):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("name", f"f{i}")
        if wkt is not None:
            g = ogr.CreateGeometryFromWkt(wkt)
            g.Transform(to_layer)
            f.SetGeometry(g)
        lyr.CreateFeature(f)
    ds = None
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return folder, grid_raster(folder / "grid.tif"), mean_emd(folder, band=0, tile=7)


FEATURES = [wkt_rect(10, 20, 20, 30), wkt_polygon((10, 20), (20, 30), (20, 20), (10, 30)), None,
            wkt_rect(40, 40, 44, 44)]


def labels(rows) -> list:
    return [(r.payload["name"], r.values[0]) for r in rows]


@pytest.mark.parametrize("epsg", [EPSG, 4326])
def test_features_on_raster_in_any_crs(setup, tmp_path, epsg):
    folder, grid, emd = setup
    features = OgrFeatures(str(write_layer(tmp_path / "f.gpkg", FEATURES, epsg)))
    log = RecordingProgress()
    with ObjectClassifier(load_model_definition(str(emd)), "", progress=log) as clf:
        run = FeaturesOnRaster(clf, features, str(grid), "ClassLabel", log)
        assert [(f.name, f.kind) for f in run.fields] == [("ClassLabel", "text"), ("ClassValue", "int"),
                                                          ("Confidence", "real")]
        rows = list(run.rows())
    # the bow tie is repaired (make valid) and keeps its box: the same chip as the rectangle; no geometry: no label
    # f3: a 7x7 chip centred on column 42 holds columns 39..45, whose band 1 values (column + 1) average 43
    assert labels(rows) == [("f0", "m16"), ("f1", "m16"), ("f2", None), ("f3", "m43")]
    assert rows[2].values[1:] == [None, None]
    transformed = [i for i in log.infos if i.startswith("Features are transformed")]
    assert transformed == ([] if epsg == EPSG else ["Features are transformed from EPSG:4326 to the raster's EPSG:32633"])
    assert any(i.startswith("1 invalid geometries were repaired (make valid)") for i in log.infos)
    assert "Feature 3: no label, it has no geometry" in log.warnings  # GeoPackage fids start at 1


def test_features_per_item_and_untouched(setup, tmp_path):
    folder, grid, emd = setup
    for name, x0 in (("left.tif", 0), ("right.tif", 32)):
        gdal.Translate(str(tmp_path / name), str(grid), srcWin=[x0, 0, 32, 64]).FlushCache()
    items = [str(tmp_path / "left.tif"), str(tmp_path / "right.tif")]
    feats = [wkt_rect(10, 20, 20, 30), wkt_rect(28, 20, 36, 30), wkt_rect(100, 100, 104, 104)]
    features = OgrFeatures(str(write_layer(tmp_path / "f.gpkg", feats)))
    log = RecordingProgress()
    with ObjectClassifier(load_model_definition(str(emd)), "", progress=log) as clf:
        run = FeaturesPerItem(clf, features, items, "ClassLabel", log)
        assert [f.name for f in run.fields] == ["Image", "ClassLabel", "ClassValue", "Confidence"]
        assert run.input_names == ["name"]
        rows = list(run.rows())
    got = [(r.payload["name"], r.values[0] and Path(r.values[0]).name, r.values[1]) for r in rows]
    # f1 straddles the seam at column 32: on the left its chip holds columns 29..31 (mean value 31), on the right
    # columns 32..35 (mean 34.5); f2 touches neither image
    assert got == [("f0", "left.tif", "m16"), ("f1", "left.tif", "m31"), ("f1", "right.tif", "m34.5"),
                   ("f2", None, None)]
    assert "Feature 3: no label, it does not touch any image (or has no usable geometry)" in log.warnings
    assert "1 features touch no image and have no label" in log.warnings


def test_images_as_objects(setup):
    folder, grid, emd = setup
    log = RecordingProgress()
    with ObjectClassifier(load_model_definition(str(emd)), "", progress=log) as clf:
        run = ImagesAsObjects(clf, [str(grid)], "ClassLabel", log)
        assert run.has_geometry and not run.crs_from_layer and "32633" in run.crs_wkt
        rows = list(run.rows())
    assert len(rows) == 1 and rows[0].payload is None and rows[0].values[0] == str(grid)
    extent = ogr.CreateGeometryFromWkb(rows[0].geometry_wkb)
    assert extent.GetEnvelope() == (500000.0, 500064.0, 3999936.0, 4000000.0)


def test_no_features_and_cancel(setup, tmp_path):
    folder, grid, emd = setup
    empty = OgrFeatures(str(write_layer(tmp_path / "e.gpkg", [])))
    with ObjectClassifier(load_model_definition(str(emd)), "") as clf:
        with pytest.raises(InputDataError, match="^Layer 'features' has no features: there is nothing to classify$"):
            FeaturesOnRaster(clf, empty, str(grid), "ClassLabel", RecordingProgress())
        log = RecordingProgress(cancel_after=0)
        run = FeaturesOnRaster(clf, OgrFeatures(str(write_layer(tmp_path / "f.gpkg", FEATURES))), str(grid),
                               "ClassLabel", log)
        with pytest.raises(CancelledError):
            list(run.rows())


def test_field_name_policy():
    assert unique_names(["classlabel", "Confidence", "Confidence_1"], ["ClassLabel", "ClassValue", "Confidence"]) == (
        ["ClassLabel_1", "ClassValue", "Confidence_2"], [("ClassLabel", "ClassLabel_1"), ("Confidence", "Confidence_2")])
    log = RecordingProgress()
    specs = new_fields(["ClassLabel"], "ClassLabel", True, False, log)
    assert [(s.name, s.kind) for s in specs] == [("ClassLabel_1", "text"), ("ClassValue", "text"), ("Confidence", "text")]
    assert log.warnings == ["The input already has a field 'ClassLabel': the new field is called 'ClassLabel_1'"]
    assert per_item_input_names(["FID", "input_fid", "name"], log) == ["input_fid_1", "input_fid", "name"]
    assert check_label_field("  Damage ") == "Damage"
    with pytest.raises(InputDataError, match="name is empty"):
        check_label_field(" ")
    with pytest.raises(InputDataError, match="cannot be called 'confidence'"):
        check_label_field("confidence")

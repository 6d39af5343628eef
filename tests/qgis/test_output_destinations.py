# SPDX-License-Identifier: GPL-2.0-or-later
"""Vector outputs as QGIS's own algorithms write them: "Save to GeoPackage…" (``ogr:dbname='x.gpkg' table="t"
(geom)``) adds or replaces that layer and keeps the file's others; a plain ``.gpkg`` names its layer after the
input and the tool as ArcGIS does ("dets — non maximum suppression"); reserved field names are refused before
anything is written; a shapefile's 10-character field names and its ``.qml`` agree; and no path, good or bad,
leaves a temporary file behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from builders import write_raster
from detection_models import square_scene, yolo_v8_onnx
from osgeo import ogr
from qgis.core import QgsProcessingException

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402
from test_non_maximum_suppression import CHAIN, polygon_layer  # noqa: E402

NMS = "dltools:nonmaximumsuppression"
SQUARES = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (56, 50, 16, 0, 190)]


def gpkg_layers(path: Path) -> dict[str, int]:
    ds = ogr.Open(str(path))
    return {ds.GetLayer(i).GetName(): ds.GetLayer(i).GetFeatureCount() for i in range(ds.GetLayerCount())}


def existing_gpkg(path: Path) -> Path:
    """A GeoPackage with a layer of its own ('roads', one line) that a run must keep."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("roads", None, ogr.wkbLineString)
    f = ogr.Feature(layer.GetLayerDefn())
    f.SetGeometry(ogr.CreateGeometryFromWkt("LINESTRING(0 0,1 1)"))
    layer.CreateFeature(f)
    ds = None
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def save_to_geopackage(path: Path, table: str) -> str:
    """What the dialog's "Save to GeoPackage…" puts in the output field."""
    return f"ogr:dbname='{path}' table=\"{table}\" (geom)"


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    d = tmp_path_factory.mktemp("dest_detect")
    raster = write_raster(d / "squares.tif", square_scene(120, 100, SQUARES), origin=(500000.0, 4000000.0), cell=1.0)
    yolo_v8_onnx(d / "yolo.onnx", 64, {0: "red", 1: "green"})
    emd = d / "yolo.emd"
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": "yolo.onnx", "ImageHeight": 64,
        "ImageWidth": 64, "ExtractBands": [0, 1, 2], "DataRange": [0, 1],
        "Classes": [{"Value": 10, "Name": "red roof", "Color": [230, 20, 20]},
                    {"Value": 20, "Name": "green roof", "Color": [20, 200, 20]}]}))
    return raster, emd


def test_save_to_geopackage_adds_the_layer_and_keeps_the_others(context, tmp_path):
    import processing

    gpkg = existing_gpkg(tmp_path / "project.gpkg")
    layer = polygon_layer(CHAIN)
    result = processing.run(NMS, {"INPUT": layer, "OUTPUT": save_to_geopackage(gpkg, "detections")}, context=context)
    assert result["OUTPUT"] == f"{gpkg}|layername=detections"
    assert gpkg_layers(gpkg) == {"roads": 1, "detections": 2}
    # run again with a class field: the table is replaced, not appended to, and 'roads' still stays
    processing.run(NMS, {"INPUT": layer, "CLASS_FIELD": "Class", "OUTPUT": save_to_geopackage(gpkg, "detections")},
                   context=context)
    assert gpkg_layers(gpkg) == {"roads": 1, "detections": 1}
    assert files_in(tmp_path) == ["project.gpkg"]


def test_save_to_a_new_geopackage_and_a_plain_name(context, tmp_path):
    import processing

    layer = polygon_layer(CHAIN)
    processing.run(NMS, {"INPUT": layer, "OUTPUT": save_to_geopackage(tmp_path / "new.gpkg", "kept")}, context=context)
    assert gpkg_layers(tmp_path / "new.gpkg") == {"kept": 2}
    result = processing.run(NMS, {"INPUT": layer, "OUTPUT": str(tmp_path / "survivors.gpkg")}, context=context)
    assert result["OUTPUT"] == str(tmp_path / "survivors.gpkg")
    # named as the layer loads, from the input and the tool (ArcGIS's way), never ""
    assert gpkg_layers(tmp_path / "survivors.gpkg") == {"dets — non maximum suppression": 2}
    assert files_in(tmp_path) == ["new.gpkg", "survivors.gpkg"]


def test_detect_objects_saved_into_a_geopackage_is_styled(context, detector, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    raster, emd = detector
    gpkg = existing_gpkg(tmp_path / "city.gpkg")
    result = processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "padding 8",
                                                      "OUTPUT": save_to_geopackage(gpkg, "roofs")}, context=context)
    assert gpkg_layers(gpkg) == {"roads": 1, "roofs": len(SQUARES)}
    layer = QgsVectorLayer(result["OUTPUT"], "roofs", "ogr")
    assert layer.isValid() and layer.featureCount() == len(SQUARES)
    # no city.qml: beside a GeoPackage it would be the default style of every layer in it ('roads' too); the layer
    # loaded on completion is styled by the post-processor
    assert files_in(tmp_path) == ["city.gpkg"]


def test_detect_objects_into_a_plain_geopackage_names_its_layer_after_the_input(context, detector, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    raster, emd = detector
    gpkg = tmp_path / "roofs.gpkg"
    result = processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "padding 8",
                                                      "OUTPUT": str(gpkg)}, context=context)
    assert result["OUTPUT"] == str(gpkg)
    assert gpkg_layers(gpkg) == {"squares — detected objects": len(SQUARES)}
    assert QgsVectorLayer(str(gpkg), "roofs", "ogr").featureCount() == len(SQUARES)  # the file's one layer
    assert files_in(tmp_path) == ["roofs.gpkg", "roofs.qml"]  # its style beside it, as for any file output


def test_a_shapefiles_short_field_names_and_its_style_agree(context, detector, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    raster, emd = detector
    out = tmp_path / "roofs.shp"
    processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "padding 8",
                                             "CLASS_FIELD": "RoofMaterialName", "CONFIDENCE_FIELD": "ConfidenceScore",
                                             "OUTPUT": str(out)}, context=context)
    layer = QgsVectorLayer(str(out), "roofs", "ogr")
    names = [f.name() for f in layer.fields()]
    assert names == ["RoofMateri", "ClassValue", "Confidence"]  # the shapefile cut them to 10 characters
    message, ok = layer.loadNamedStyle(str(tmp_path / "roofs.qml"))
    assert ok, message
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "RoofMateri"
    drawn = {f["RoofMateri"] for f in layer.getFeatures()}
    assert drawn <= {c.value() for c in renderer.categories()} and drawn == {"red roof", "green roof"}
    assert not [n for n in files_in(tmp_path) if "dltools" in n or n.startswith(".")]


@pytest.mark.parametrize(("param", "value"), [("CLASS_FIELD", "fid"), ("CONFIDENCE_FIELD", "FID"),
                                              ("CLASS_FIELD", "geom")])
def test_reserved_field_names_are_refused_before_anything_is_written(context, detector, tmp_path, param, value):
    import processing

    raster, emd = detector
    with pytest.raises(QgsProcessingException, match=rf"^{param} '{value}': '{value.lower()}' is reserved"):
        processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd), param: value,
                                                 "OUTPUT": str(tmp_path / "out.gpkg")}, context=context)
    assert files_in(tmp_path) == []


def test_classify_objects_refuses_fid_as_its_label_field(context, detector, tmp_path):
    import processing

    raster, emd = detector
    with pytest.raises(QgsProcessingException, match=r"^CLASS_LABEL_FIELD 'fid': 'fid' is reserved"):
        processing.run("dltools:classifyobjects", {"INPUT": str(raster), "MODEL": str(emd),
                                                   "CLASS_LABEL_FIELD": "fid",
                                                   "OUTPUT": str(tmp_path / "out.gpkg")}, context=context)
    assert files_in(tmp_path) == []


def test_a_destination_that_cannot_be_written_leaves_no_temporary_file(context, tmp_path):
    """A file that is not a GeoPackage named as the GeoPackage to add to: a clear error naming the file the user
    gave (not a hidden temporary one), the file unchanged, nothing else left."""
    import processing

    bad = tmp_path / "notes.gpkg"
    bad.write_text("not a GeoPackage")
    with pytest.raises(QgsProcessingException) as info:
        processing.run(NMS, {"INPUT": polygon_layer(CHAIN), "OUTPUT": save_to_geopackage(bad, "detections")},
                       context=context)
    assert str(info.value).startswith("OUTPUT: ") and "dltools-" not in str(info.value)
    assert files_in(tmp_path) == ["notes.gpkg"] and bad.read_text() == "not a GeoPackage"


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process is not installed")
def test_save_to_geopackage_through_qgis_process(tmp_path):
    src = tmp_path / "dets.gpkg"
    layer = polygon_layer(CHAIN)
    from qgis.core import QgsVectorFileWriter

    QgsVectorFileWriter.writeAsVectorFormat(layer, str(src), "utf-8", layer.crs(), "GPKG")
    gpkg = existing_gpkg(tmp_path / "project.gpkg")
    answer = qgis_process_util.qgis_process_json(NMS, {"INPUT": str(src),
                                                       "OUTPUT": save_to_geopackage(gpkg, "detections")}, tmp_path)
    assert answer["results"]["OUTPUT"] == f"{gpkg}|layername=detections"
    assert gpkg_layers(gpkg) == {"roads": 1, "detections": 2}

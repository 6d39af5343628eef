# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects Using Deep Learning through processing.run, qgis_process and a .model3 chaining it with
Non Maximum Suppression; the output is styled by class."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from builders import write_raster
from detection_models import expected_boxes, square_scene, torchvision_script, yolo_v8_onnx
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

W, H = 120, 100
SQUARES = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (56, 50, 16, 0, 190), (-4, 80, 10, 1, 210),
           (100, 70, 20, 0, 250)]
# two overlapping squares of different classes for NMS to review: the red (brighter) one wins
OVERLAP = [(80, 2, 12, 0, 250), (76, 6, 12, 1, 200)]  # boxes (80,2,92,18) and (76,6,92,18): IoU 0.6


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    raster = write_raster(d / "scene.tif", square_scene(W, H, SQUARES), origin=(500000.0, 4000000.0), cell=1.0)
    onnx = yolo_v8_onnx(d / "yolo.onnx", 64, {0: "red", 1: "green"})
    emd = d / "yolo.emd"
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": "yolo.onnx", "ImageHeight": 64,
        "ImageWidth": 64, "ExtractBands": [0, 1, 2], "DataRange": [0, 1],
        "Classes": [{"Value": 10, "Name": "red roof", "Color": [230, 20, 20]},
                    {"Value": 20, "Name": "green roof", "Color": [20, 200, 20]}]}))
    return d, raster, onnx, emd


def boxes_of(layer) -> list[tuple]:
    out = []
    for f in layer.getFeatures():
        bb = f.geometry().boundingBox()
        out.append((round(bb.xMinimum() - 500000.0, 6), round(4000000.0 - bb.yMaximum(), 6),
                    round(bb.xMaximum() - 500000.0, 6), round(4000000.0 - bb.yMinimum(), 6),
                    f["ClassValue"], round(f["Confidence"], 3), f["Class"]))
    return sorted(out)


def test_processing_run_styled_by_class(context, files, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    _, raster, _, emd = files
    out = tmp_path / "objects.gpkg"
    feedback = RecordingFeedback()
    result = processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd),
                                                      "ARGUMENTS": "padding 8;batch_size 4", "OUTPUT": str(out)},
                            context=context, feedback=feedback)
    layer = QgsVectorLayer(result["OUTPUT"], "objects", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    assert [f.name() for f in layer.fields()][-3:] == ["Class", "ClassValue", "Confidence"]
    names = {0: ("red roof", 10), 1: ("green roof", 20)}
    want = sorted((x1, y1, x2, y2, names[c][1], round(conf, 3), names[c][0])
                  for x1, y1, x2, y2, c, conf in expected_boxes(W, H, SQUARES))
    got = boxes_of(layer)
    assert [g[:5] + (g[6],) for g in got] == [w[:5] + (w[6],) for w in want]
    assert [g[5] for g in got] == pytest.approx([w[5] for w in want], abs=1e-3)
    assert any("after the seam merge" in line for line in feedback.infos)
    qml = tmp_path / "objects.qml"
    assert qml.is_file()
    layer.loadNamedStyle(str(qml))
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "Class"
    cats = {c.value(): c.symbol().color().getRgb()[:3] for c in renderer.categories()}
    assert cats == {"red roof": (230, 20, 20), "green roof": (20, 200, 20)}


def test_run_nms_and_fields(context, files, tmp_path):
    import processing

    d, _, onnx, _ = files
    raster = write_raster(tmp_path / "overlap.tif", square_scene(W, H, SQUARES + OVERLAP), origin=(500000.0, 4000000.0))
    params = {"INPUT": str(raster), "MODEL": str(onnx), "ARGUMENTS": "padding 8", "OUTPUT": "memory:",
              "CONFIDENCE_FIELD": "Score", "CLASS_FIELD": "Label"}
    plain = processing.run("dltools:detectobjects", params, context=context)["OUTPUT"]
    assert [f.name() for f in plain.fields()] == ["Label", "ClassValue", "Score"]
    assert plain.featureCount() == len(SQUARES) + 2
    nms = processing.run("dltools:detectobjects", {**params, "RUN_NMS": True}, context=context)["OUTPUT"]
    assert nms.featureCount() == len(SQUARES) + 1
    assert sorted(f["Score"] for f in nms.getFeatures())[-1] == pytest.approx(250 / 2.55, abs=1e-3)


def test_an_ultralytics_models_normalisation_is_explained(context, files):
    """The log says which convention scaled the pixels and what in the model said so (not "Deepness metadata")."""
    import processing

    _, raster, onnx, _ = files
    feedback = RecordingFeedback()
    processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(onnx), "ARGUMENTS": "padding 8",
                                             "OUTPUT": "memory:"}, context=context, feedback=feedback)
    assert ("Normalisation: Ultralytics YOLO convention, recognised from the ONNX metadata (imgsz, names, stride, "
            "task): RGB scaled to 0..1 as Ultralytics trains: x / 255") in feedback.infos


def test_torchvision_masks_give_multipolygons(context, files, tmp_path):
    import processing
    from qgis.core import QgsWkbTypes

    _, raster, _, _ = files
    emd = {"Framework": "PyTorch", "ModelType": "InstanceDetection", "ImageHeight": 64, "ImageWidth": 64,
           "ExtractBands": [0, 1, 2], "DataRange": [0, 1],
           "Classes": [{"Value": 1, "Name": "red", "Color": [255, 0, 0]}, {"Value": 2, "Name": "green",
                                                                             "Color": [0, 255, 0]}]}
    ts = torchvision_script(tmp_path / "tv.pt", with_masks=True, emd=emd)
    layer = processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(ts), "ALLOW_CUSTOM_CODE": True,
                                                     "ARGUMENTS": "padding 8;threshold 0.3", "OUTPUT": "memory:"},
                           context=context)["OUTPUT"]
    assert layer.wkbType() == QgsWkbTypes.MultiPolygon
    assert layer.featureCount() == len(SQUARES)
    for f in layer.getFeatures():
        assert f.geometry().area() == pytest.approx(f.geometry().boundingBox().area())


def test_clear_errors(context, files, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    _, raster, onnx, _ = files
    with pytest.raises(QgsProcessingException, match="padding 40 is too large"):
        processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(onnx), "ARGUMENTS": "padding 40",
                                                 "OUTPUT": "memory:"}, context=context)
    with pytest.raises(QgsProcessingException, match="two different names"):
        processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(onnx), "CLASS_FIELD": "ClassValue",
                                                 "OUTPUT": "memory:"}, context=context)


def test_model3_detect_then_nms(context, files, tmp_path):
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
        QgsVectorLayer,
    )

    d, _, onnx, _ = files
    raster = write_raster(tmp_path / "overlap.tif", square_scene(W, H, SQUARES + OVERLAP), origin=(500000.0, 4000000.0))
    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("detect and suppress", "dltools tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("image", "Image"), QgsProcessingModelParameter("image"))
    model.addModelParameter(QgsProcessingParameterFile("model", "Model"), QgsProcessingModelParameter("model"))
    det = QgsProcessingModelChildAlgorithm("dltools:detectobjects")
    det.setChildId("detect")
    det.addParameterSources("INPUT", [src.fromModelParameter("image")])
    det.addParameterSources("MODEL", [src.fromModelParameter("model")])
    det.addParameterSources("ARGUMENTS", [src.fromStaticValue("padding 8;batch_size 4")])
    model.addChildAlgorithm(det)
    nms = QgsProcessingModelChildAlgorithm("dltools:nonmaximumsuppression")
    nms.setChildId("nms")
    nms.addParameterSources("INPUT", [src.fromChildOutput("detect", "OUTPUT")])
    nms.addParameterSources("CONFIDENCE_FIELD", [src.fromStaticValue("Confidence")])
    nms.addParameterSources("CLASS_FIELD", [src.fromStaticValue("Class")])
    out = QgsProcessingModelOutput("kept")
    out.setChildId("nms")
    out.setChildOutputName("OUTPUT")
    nms.setModelOutputs({"kept": out})
    model.addChildAlgorithm(nms)
    path = tmp_path / "detect_nms.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    target = tmp_path / "kept.gpkg"
    result = processing.run(loaded, {"image": str(raster), "model": str(onnx), "nms:kept": str(target)},
                            context=context)
    layer = QgsVectorLayer(result["nms:kept"], "kept", "ogr")
    assert layer.isValid() and layer.featureCount() == len(SQUARES) + 1


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process is not installed")
def test_qgis_process(files, tmp_path, qgis_app):
    from qgis.core import QgsVectorLayer

    _, raster, _, emd = files
    out = tmp_path / "objects.gpkg"
    answer = qgis_process_util.qgis_process_json("dltools:detectobjects", {
        "INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "padding 8", "RUN_NMS": True, "OUTPUT": str(out)},
        tmp_path)
    assert "after the seam merge" in str(answer["log"])
    layer = QgsVectorLayer(str(out), "objects", "ogr")
    assert layer.featureCount() == len(expected_boxes(W, H, SQUARES))
    message = qgis_process_util.qgis_process_failure("dltools:detectobjects", {
        "INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "nms_overlap 3", "OUTPUT": str(tmp_path / "x.gpkg")},
        tmp_path)
    assert "nms_overlap" in message and "at most 1" in message


def test_vrt_items_separately(context, files, tmp_path):
    import processing
    from osgeo import gdal

    _, _, onnx, _ = files
    left = write_raster(tmp_path / "left.tif", square_scene(60, 50, [(5, 5, 10, 0, 200), (50, 30, 14, 1, 220)]),
                        origin=(500000.0, 4000000.0))
    right = write_raster(tmp_path / "right.tif", square_scene(60, 50, [(0, 30, 12, 1, 230)]),
                         origin=(500060.0, 4000000.0))
    vrt = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), [str(left), str(right)]).FlushCache()
    params = {"INPUT": str(vrt), "MODEL": str(onnx), "ARGUMENTS": "padding 8", "OUTPUT": "memory:"}
    feedback = RecordingFeedback()
    items = processing.run("dltools:detectobjects", {**params, "PROCESSING_MODE": 1}, context=context,
                           feedback=feedback)["OUTPUT"]
    assert any("Item 2/2" in line for line in feedback.infos)
    # each item alone: the bright area across the items' shared edge is two objects, one per item
    assert items.featureCount() == 3
    mosaic = processing.run("dltools:detectobjects", params, context=context)["OUTPUT"]
    assert mosaic.featureCount() == 2  # as one image it is one object


def test_layer_lands_in_the_project_styled_by_class(qgis_app, files):
    import processing
    from qgis.core import QgsProject

    _, raster, _, emd = files
    project = QgsProject.instance()
    before = set(project.mapLayers())
    result = processing.runAndLoadResults("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd),
                                                                    "ARGUMENTS": "padding 8",
                                                                    "OUTPUT": "TEMPORARY_OUTPUT"})
    added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
    try:
        assert result["OUTPUT"] and len(added) == 1
        renderer = added[0].renderer()
        assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "Class"
        assert {c.value() for c in renderer.categories()} == {"red roof", "green roof"}
    finally:
        project.removeMapLayers([layer.id() for layer in added])

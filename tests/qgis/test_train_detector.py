# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model, FasterRCNN and MaskRCNN, in QGIS: one .model3 (Export Training Data as
PASCAL_VOC_rectangles or RCNN_Masks from polygons -> Train -> Detect Objects on the trained folder), and qgis_process.
The runs are tiny (64-pixel
chips, one epoch, one thread): they prove the folder is one the plugin's own inference runs, not a score."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from builders import write_raster  # noqa: E402
from recording_feedback import RecordingFeedback  # noqa: E402
from training_data_builders import shape_boxes, shapes_scene, write_pascal_voc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402
from test_train_model import _child  # noqa: E402 - one .model3 step builder for the training tests

X0, Y0 = 500000.0, 4000000.0
TINY = {"MODEL_TYPE": 3, "BACKBONE": 2, "BATCH_SIZE": 2, "LEARNING_RATE": 0.001, "VALIDATION_PERCENT": 34,
        "MAX_EPOCHS": 1, "DEVICE": 1, "ARGUMENTS": "threads 1"}


def _polygons(mask, path: Path) -> Path:
    """The shapes' boxes as polygons with a Classvalue field, in the raster's coordinates (1 m pixels)."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("shapes", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("Classvalue", ogr.OFTInteger))
    for value, (c0, r0, c1, r1) in shape_boxes(mask):
        x0, x1, y0, y1 = X0 + c0, X0 + c1, Y0 - r0, Y0 - r1
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("Classvalue", value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
        layer.CreateFeature(feature)
    ds = None
    return path


def export_train_detect(context, tmp_path: Path, metadata_format: int, train: dict, detect: dict):  # noqa: ANN001, ANN201
    """Run one saved .model3 (Export Training Data from polygons -> Train -> Detect Objects on the trained folder)
    on a 128 x 192 scene of 12 shapes and a new 64-pixel scene; returns (the trained .emd, the objects layer, the
    feedback). ``train`` and ``detect`` are the two tools' own static parameters."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterVectorLayer,
        QgsVectorLayer,
    )

    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("export train detect", "dltools tests")
    for name in ("image", "scene"):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, name), QgsProcessingModelParameter(name))
    model.addModelParameter(QgsProcessingParameterVectorLayer("shapes", "shapes"), QgsProcessingModelParameter("shapes"))
    model.addChildAlgorithm(_child("dltools:exporttrainingdata", "export", {
        "INPUT": src.fromModelParameter("image"), "CLASS_DATA": src.fromModelParameter("shapes"),
        "OUTPUT_FOLDER": str(tmp_path / "chips"), "METADATA_FORMAT": metadata_format, "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64,
        "STRIDE_X": 64, "STRIDE_Y": 64}))
    model.addChildAlgorithm(_child("dltools:trainmodel", "train", {
        **train, "INPUT_FOLDER": src.fromChildOutput("export", "OUTPUT_FOLDER"), "OUTPUT_FOLDER": str(tmp_path / "boxes")}))
    child = _child("dltools:detectobjects", "detect", {
        **detect, "INPUT": src.fromModelParameter("scene"), "MODEL": src.fromChildOutput("train", "OUTPUT_MODEL")})
    out = QgsProcessingModelOutput("objects")
    out.setChildId("detect")
    out.setChildOutputName("OUTPUT")
    child.setModelOutputs({"objects": out})
    model.addChildAlgorithm(child)
    path = tmp_path / "export_train_detect.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))

    image, mask = shapes_scene(128, 192, 12, seed=11)
    scene, _ = shapes_scene(64, 64, 3, seed=12)
    params = {"image": str(write_raster(tmp_path / "image.tif", image)),
              "shapes": str(_polygons(mask, tmp_path / "shapes.gpkg")),
              "scene": str(write_raster(tmp_path / "scene.tif", scene))}
    objects_name = next(p.name() for p in loaded.destinationParameterDefinitions() if p.name().endswith("objects"))
    params[objects_name] = str(tmp_path / "objects.gpkg")
    feedback = RecordingFeedback()
    result = processing.run(loaded, params, context=context, feedback=feedback)
    emd = json.loads((tmp_path / "boxes" / "boxes.emd").read_text())
    return emd, QgsVectorLayer(result[objects_name], "objects", "ogr"), feedback


@pytest.mark.parametrize(("model_type", "metadata_format", "family"), [(3, 1, "FasterRCNN"), (4, 3, "MaskRCNN")])
def test_model3_export_train_detect(context, tmp_path, model_type, metadata_format, family):
    """PASCAL_VOC_rectangles -> FasterRCNN, RCNN_Masks -> MaskRCNN; Detect Objects runs the trained folder."""
    emd, layer, feedback = export_train_detect(context, tmp_path, metadata_format, {**TINY, "MODEL_TYPE": model_type},
                                               {"DEVICE": 1})
    # the export names a class by its value when the polygons carry no class name
    assert emd["ModelName"] == family and set(emd["average_precision_score"]) == {"1", "2"}
    assert (tmp_path / "boxes" / "boxes.dlpk").is_file()
    # ArcGIS Pro builds a FasterRCNN from the folder's ModelConfiguration.py; MaskRCNN needs none
    assert (tmp_path / "boxes" / "ModelConfiguration.py").is_file() == (family == "FasterRCNN")
    assert layer.isValid() and {"Class", "Confidence"} <= set(layer.fields().names())
    assert {f["Class"] for f in layer.getFeatures()} <= {"1", "2"}
    assert any("mAP" in line for line in feedback.infos)


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
def test_qgis_process_trains_faster_rcnn(tmp_path):
    chips = write_pascal_voc(tmp_path / "chips", count=4, chip=64, seed=5)
    answer = qgis_process_util.qgis_process_json(
        "dltools:trainmodel", {**TINY, "INPUT_FOLDER": str(chips), "OUTPUT_FOLDER": str(tmp_path / "cli"),
                               "VALIDATION_PERCENT": 50}, tmp_path, timeout=400)
    assert answer["results"]["OUTPUT_MODEL"] == str(tmp_path / "cli" / "cli.emd")
    assert json.loads((tmp_path / "cli" / "cli.emd").read_text())["ModelConfigurationFile"] == "ModelConfiguration.py"
    assert (tmp_path / "cli" / "ModelConfiguration.py").is_file()
    assert "mAP" in json.dumps(answer.get("log", answer))

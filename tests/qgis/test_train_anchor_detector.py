# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model, SingleShotDetector and RetinaNet, in QGIS: one .model3 (Export Training Data as
PASCAL_VOC_rectangles from polygons -> Train -> Detect Objects on the trained folder), processing.run and
qgis_process.  The runs are tiny (64-pixel chips, one epoch): they prove the folder is one the plugin's own
inference runs; the scores are the core tests' (tests/core/test_train_anchor_detectors.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from builders import write_raster  # noqa: E402
from recording_feedback import RecordingFeedback  # noqa: E402
from training_data_builders import shapes_scene, write_pascal_voc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402
from test_train_detector import _child, _polygons  # noqa: E402

#: MODEL_TYPE index -> (family, its ARGUMENTS)
FAMILIES = {5: ("SingleShotDetector", "grids [4];threads 2"), 6: ("RetinaNet", "scales [0.4, 0.6, 0.8];threads 2")}
TINY = {"BACKBONE": 0, "BATCH_SIZE": 4, "LEARNING_RATE": 0.001, "VALIDATION_PERCENT": 34, "MAX_EPOCHS": 1,
        "DEVICE": 1}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_model3_export_train_detect(context, tmp_path, model_type):
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

    family, arguments = FAMILIES[model_type]
    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("export train detect", "dltools tests")
    for name in ("image", "scene"):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, name), QgsProcessingModelParameter(name))
    model.addModelParameter(QgsProcessingParameterVectorLayer("shapes", "shapes"), QgsProcessingModelParameter("shapes"))
    model.addChildAlgorithm(_child("dltools:exporttrainingdata", "export", {
        "INPUT": src.fromModelParameter("image"), "CLASS_DATA": src.fromModelParameter("shapes"),
        "OUTPUT_FOLDER": str(tmp_path / "chips"), "METADATA_FORMAT": 1, "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64,
        "STRIDE_X": 64, "STRIDE_Y": 64}))
    model.addChildAlgorithm(_child("dltools:trainmodel", "train", {
        **TINY, "MODEL_TYPE": model_type, "ARGUMENTS": arguments,
        "INPUT_FOLDER": src.fromChildOutput("export", "OUTPUT_FOLDER"), "OUTPUT_FOLDER": str(tmp_path / "boxes")}))
    detect = _child("dltools:detectobjects", "detect", {
        "INPUT": src.fromModelParameter("scene"), "MODEL": src.fromChildOutput("train", "OUTPUT_MODEL"),
        "DEVICE": 1, "ARGUMENTS": "threshold 0.1"})
    out = QgsProcessingModelOutput("objects")
    out.setChildId("detect")
    out.setChildOutputName("OUTPUT")
    detect.setModelOutputs({"objects": out})
    model.addChildAlgorithm(detect)
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
    assert emd["ModelName"] == family and set(emd["average_precision_score"]) == {"1", "2"}
    assert (tmp_path / "boxes" / "boxes.dlpk").is_file()
    layer = QgsVectorLayer(result[objects_name], "objects", "ogr")
    assert layer.isValid() and {"Class", "Confidence"} <= set(layer.fields().names())
    assert {f["Class"] for f in layer.getFeatures()} <= {"1", "2"}
    assert any("mAP" in line for line in feedback.infos)
    assert any("anchors:" in line for line in feedback.infos)


def test_processing_run_refuses_an_argument_of_the_other_family(context, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    chips = write_pascal_voc(tmp_path / "chips", count=2, chip=64, seed=5)
    with pytest.raises(QgsProcessingException, match="grids is for SingleShotDetector, not RetinaNet"):
        processing.run("dltools:trainmodel", {**TINY, "MODEL_TYPE": 6, "INPUT_FOLDER": str(chips),
                                              "OUTPUT_FOLDER": str(tmp_path / "out"), "ARGUMENTS": "grids [4]"},
                       context=context, feedback=RecordingFeedback())
    assert not (tmp_path / "out" / "out.emd").exists()


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
def test_qgis_process_trains_single_shot_detector(tmp_path):
    chips = write_pascal_voc(tmp_path / "chips", count=4, chip=64, seed=5)
    answer = qgis_process_util.qgis_process_json(
        "dltools:trainmodel", {**TINY, "MODEL_TYPE": 5, "ARGUMENTS": "grids [4];threads 1",
                               "INPUT_FOLDER": str(chips), "OUTPUT_FOLDER": str(tmp_path / "cli"),
                               "VALIDATION_PERCENT": 50}, tmp_path, timeout=400)
    assert answer["results"]["OUTPUT_MODEL"] == str(tmp_path / "cli" / "cli.emd")
    emd = json.loads((tmp_path / "cli" / "cli.emd").read_text())
    assert emd["ModelName"] == "SingleShotDetector" and emd["Grids"] == [4]
    assert "mAP" in json.dumps(answer.get("log", answer))

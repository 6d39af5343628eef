# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model in QGIS: processing.run, qgis_process, and a .model3 that trains then classifies."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from builders import read_raster, write_raster  # noqa: E402
from recording_feedback import RecordingFeedback  # noqa: E402
from training_data_builders import shapes_scene, write_classified_tiles  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

FAST = {"MODEL_TYPE": 0, "BACKBONE": 0, "BATCH_SIZE": 8, "LEARNING_RATE": 0.003, "VALIDATION_PERCENT": 20,
        "DEVICE": 1, "ARGUMENTS": "threads 1"}


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    return write_classified_tiles(tmp_path_factory.mktemp("qgis_chips") / "chips", count=40, chip=32, seed=1)


def test_model3_trains_then_classifies_a_new_scene(context, tmp_path, chips):
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )

    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("train and classify", "dltools tests")
    model.addModelParameter(QgsProcessingParameterFile("chips", "Training data", QgsProcessingParameterFile.Folder),
                            QgsProcessingModelParameter("chips"))
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    train = QgsProcessingModelChildAlgorithm("dltools:trainmodel")
    train.setChildId("train")
    train.addParameterSources("INPUT_FOLDER", [src.fromModelParameter("chips")])
    train.addParameterSources("OUTPUT_FOLDER", [src.fromStaticValue(str(tmp_path / "shapes"))])
    for name, value in {**FAST, "MAX_EPOCHS": 6}.items():
        train.addParameterSources(name, [src.fromStaticValue(value)])
    model.addChildAlgorithm(train)
    classify = QgsProcessingModelChildAlgorithm("dltools:classifypixels")
    classify.setChildId("classify")
    classify.addParameterSources("INPUT", [src.fromModelParameter("scene")])
    classify.addParameterSources("MODEL", [src.fromChildOutput("train", "OUTPUT_MODEL")])
    out = QgsProcessingModelOutput("classes")
    out.setChildId("classify")
    out.setChildOutputName("OUTPUT")
    classify.setModelOutputs({"classes": out})
    model.addChildAlgorithm(classify)
    path = tmp_path / "train_classify.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))

    image, truth = shapes_scene(96, 128, 8, seed=4242)
    scene = write_raster(tmp_path / "scene.tif", image)
    out_name = next(p.name() for p in loaded.destinationParameterDefinitions())
    feedback = RecordingFeedback()
    result = processing.run(loaded, {"chips": str(chips), "scene": str(scene), out_name: str(tmp_path / "c.tif")},
                            context=context, feedback=feedback)
    got = read_raster(result[out_name])
    assert float((got == truth).mean()) >= 0.93
    assert (tmp_path / "shapes" / "shapes.emd").is_file() and (tmp_path / "shapes" / "shapes.dlpk").is_file()


def test_processing_run_refuses_clearly(context, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QgsProcessingException, match="is empty: expected map.txt"):
        processing.run("dltools:trainmodel", {**FAST, "INPUT_FOLDER": str(empty), "OUTPUT_FOLDER": str(tmp_path / "m"),
                                              "MAX_EPOCHS": 1}, context=context, feedback=RecordingFeedback())
    assert not (tmp_path / "m" / "m.emd").exists()


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
def test_qgis_process_trains(tmp_path, chips):
    answer = qgis_process_util.qgis_process_json(
        "dltools:trainmodel", {**FAST, "INPUT_FOLDER": str(chips), "OUTPUT_FOLDER": str(tmp_path / "cli"),
                               "MAX_EPOCHS": 1}, tmp_path, timeout=400)
    assert answer["results"]["OUTPUT_MODEL"] == str(tmp_path / "cli" / "cli.emd")
    assert Path(answer["results"]["OUTPUT_PACKAGE"]).is_file()
    log = answer["log"]["info"] if isinstance(answer.get("log"), dict) else str(answer)
    assert "epoch 1/1" in str(log)

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
from training_data_builders import shapes_scene, write_classified_tiles, write_labeled_tiles  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

FAST = {"MODEL_TYPE": 0, "BACKBONE": 0, "BATCH_SIZE": 8, "LEARNING_RATE": 0.003, "VALIDATION_PERCENT": 20,
        "DEVICE": 1, "ARGUMENTS": "threads 1"}


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    return write_classified_tiles(tmp_path_factory.mktemp("qgis_chips") / "chips", count=40, chip=32, seed=1)


def _child(alg: str, child_id: str, sources: dict):  # noqa: ANN202
    from qgis.core import QgsProcessingModelChildAlgorithm, QgsProcessingModelChildParameterSource

    child = QgsProcessingModelChildAlgorithm(alg)
    child.setChildId(child_id)
    for name, source in sources.items():
        if not isinstance(source, QgsProcessingModelChildParameterSource):
            source = QgsProcessingModelChildParameterSource.fromStaticValue(source)
        child.addParameterSources(name, [source])
    return child


def test_model3_export_train_classify_accuracy(context, tmp_path):
    """One .model3: Export Training Data (Classified_Tiles from a class raster) -> Train -> Classify Pixels on a new
    scene -> Compute Accuracy against that scene's truth."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("export train classify assess", "dltools tests")
    for name in ("image", "truth", "scene", "scene_truth"):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, name), QgsProcessingModelParameter(name))
    model.addChildAlgorithm(_child("dltools:exporttrainingdata", "export", {
        "INPUT": src.fromModelParameter("image"), "CLASS_DATA": src.fromModelParameter("truth"),
        "OUTPUT_FOLDER": str(tmp_path / "chips"), "METADATA_FORMAT": 0, "TILE_SIZE_X": 32, "TILE_SIZE_Y": 32,
        "STRIDE_X": 32, "STRIDE_Y": 32, "OUTPUT_NOFEATURE_TILES": True}))
    model.addChildAlgorithm(_child("dltools:trainmodel", "train", {
        **FAST, "INPUT_FOLDER": src.fromChildOutput("export", "OUTPUT_FOLDER"),
        "OUTPUT_FOLDER": str(tmp_path / "shapes"), "MAX_EPOCHS": 6}))
    classify = _child("dltools:classifypixels", "classify", {
        "INPUT": src.fromModelParameter("scene"), "MODEL": src.fromChildOutput("train", "OUTPUT_MODEL")})
    out = QgsProcessingModelOutput("classes")
    out.setChildId("classify")
    out.setChildOutputName("OUTPUT")
    classify.setModelOutputs({"classes": out})
    model.addChildAlgorithm(classify)
    assess = _child("dltools:computeaccuracypixelclassification", "assess", {
        "INPUT": src.fromChildOutput("classify", "OUTPUT"), "REFERENCE": src.fromModelParameter("scene_truth")})
    matrix = QgsProcessingModelOutput("matrix")
    matrix.setChildId("assess")
    matrix.setChildOutputName("OUTPUT")
    assess.setModelOutputs({"matrix": matrix})
    model.addChildAlgorithm(assess)
    path = tmp_path / "export_train_classify_assess.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    assert sorted(c.algorithmId() for c in loaded.childAlgorithms().values()) == [
        "dltools:classifypixels", "dltools:computeaccuracypixelclassification", "dltools:exporttrainingdata",
        "dltools:trainmodel"]

    image, truth = shapes_scene(192, 192, 26, seed=7)
    scene, scene_truth = shapes_scene(96, 128, 8, seed=4242)
    params = {"image": str(write_raster(tmp_path / "image.tif", image)),
              "truth": str(write_raster(tmp_path / "truth.tif", truth)),
              "scene": str(write_raster(tmp_path / "scene.tif", scene)),
              "scene_truth": str(write_raster(tmp_path / "scene_truth.tif", scene_truth))}
    names = {p.name(): p for p in loaded.destinationParameterDefinitions()}
    classes_name = next(n for n in names if n.endswith("classes"))
    matrix_name = next(n for n in names if n.endswith("matrix"))
    params[classes_name] = str(tmp_path / "classes.tif")
    params[matrix_name] = str(tmp_path / "confusion.csv")
    result = processing.run(loaded, params, context=context, feedback=RecordingFeedback())
    got = read_raster(result[classes_name])
    assert float((got == scene_truth).mean()) >= 0.93
    assert (tmp_path / "shapes" / "shapes.emd").is_file() and (tmp_path / "shapes" / "shapes.dlpk").is_file()
    rows = (tmp_path / "confusion.csv").read_text().splitlines()
    assert any(row.startswith("Kappa") or ",Kappa" in row or "Kappa," in row for row in rows), rows


def test_processing_run_feature_classifier_into_a_temporary_folder(context, tmp_path):
    """FeatureClassifier on Labeled_Tiles through processing.run, OUTPUT_FOLDER left to Processing's temporary
    folder: the model files are named after it and Describe Model reads the result."""
    import processing

    chips = write_labeled_tiles(tmp_path / "labeled", count=16, chip=32, seed=2)
    feedback = RecordingFeedback()
    result = processing.run("dltools:trainmodel", {
        **FAST, "MODEL_TYPE": 2, "INPUT_FOLDER": str(chips), "OUTPUT_FOLDER": "TEMPORARY_OUTPUT", "MAX_EPOCHS": 1,
        "VALIDATION_PERCENT": 25}, context=context, feedback=feedback)
    folder = Path(result["OUTPUT_FOLDER"])
    assert folder.is_dir() and folder.name != "TEMPORARY_OUTPUT"
    assert result["OUTPUT_MODEL"] == str(folder / f"{folder.name}.emd") and Path(result["OUTPUT_MODEL"]).is_file()
    described = processing.run("dltools:describemodel", {"MODEL": result["OUTPUT_PACKAGE"],
                                                        "OUTPUT_JSON": str(tmp_path / "d.json")}, context=context)
    assert "FeatureClassifier" in Path(described["OUTPUT_JSON"]).read_text()


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

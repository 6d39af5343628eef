# SPDX-License-Identifier: GPL-2.0-or-later
"""dltools:modeltoecd through processing.run and qgis_process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx
from recording_feedback import RecordingFeedback


def qgis_process_util():
    """tests/qgis is not on sys.path (pytest --import-mode=importlib): import the helper by path."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import qgis_process_util as util

    return util


SEED_CLASSES = [{"Value": 100, "Name": "Impervious", "Color": [204, 204, 204]},
                {"Value": 200, "Name": " Other (Pervious)", "Color": [56, 168, 0]}]


def class_info(path: Path, **changes) -> Path:
    data = {"ImportDeepLearningModelToEsriExtraInfo": 0, "Version": 1, "Classifier": "ONNX", "NumberRasterBands": 3,
            "MiniBatchSize": 16, "Classes": SEED_CLASSES}
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    weight = np.zeros((2, 3, 1, 1), np.float32)
    weight[0, 0, 0, 0] = 1.0
    weight[1, 1, 0, 0] = 1.0
    return export_onnx(conv_module(3, 2, 1, weight=weight), tmp_path / "seg.onnx", 3, 16)


def test_algorithm_metadata(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("dltools:modeltoecd")
    assert alg is not None
    assert alg.displayName() == "Deep Learning Model To Ecd"
    assert alg.group() == "" and alg.groupId() == ""
    assert "deprecated" in alg.shortHelpString()
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert list(params) == ["MODEL_FILE", "CLASS_INFO", "OUTPUT"]
    assert all(p.help() for p in params.values())
    assert params["OUTPUT"].defaultFileExtension() == "ecd"


def test_writes_ecd_and_reports(qgis_context, tmp_path: Path, onnx_model: Path):
    import processing

    feedback = RecordingFeedback()
    out = tmp_path / "out" / "seg.ecd"
    result = processing.run("dltools:modeltoecd", {
        "MODEL_FILE": str(onnx_model), "CLASS_INFO": str(class_info(tmp_path / "classInfo.json")), "OUTPUT": str(out),
    }, context=qgis_context, feedback=feedback)
    assert result == {"OUTPUT": str(out)}
    assert json.loads(out.read_text(encoding="utf-8")) == {
        "EsriClassifierDefinitionFile": 0, "FileVersion": 3, "NumberDefinitions": 1,
        "Definitions": [{
            "Classifier": "ONNX", "ClassifierType": "DeepLearning", "ModelFile": "../seg.onnx", "NumberBands": 3,
            "MiniBatchSize": 16, "NumberClasses": 2,
            "Classes": [{"ClassValue": 100, "ClassName": "Impervious", "Red": 204, "Green": 204, "Blue": 204},
                        {"ClassValue": 200, "ClassName": " Other (Pervious)", "Red": 56, "Green": 168, "Blue": 0}],
            "ModelType": "ImageClassification", "ImageHeight": 16, "ImageWidth": 16, "ExtractBands": [0, 1, 2],
        }],
    }
    assert f"Wrote {out}" in feedback.infos
    assert ("ImageClassification, ONNX model ../seg.onnx, 16x16 tiles, 3 bands, 2 classes: 100 Impervious, "
            "200 Other (Pervious)") in feedback.infos
    assert feedback.errors == []


def test_ecd_works_as_model(qgis_context, tmp_path: Path, onnx_model: Path):
    import processing

    ecd = tmp_path / "seg.ecd"
    processing.run("dltools:modeltoecd", {"MODEL_FILE": str(onnx_model), "CLASS_INFO": str(class_info(tmp_path / "c.json")),
                                          "OUTPUT": str(ecd)}, context=qgis_context)
    report_path = tmp_path / "report.json"
    processing.run("dltools:describemodel", {"MODEL": str(ecd), "OUTPUT_JSON": str(report_path),
                                             "OUTPUT_HTML": str(tmp_path / "report.html")}, context=qgis_context)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["origin"] == "ecd"
    assert report["model_file"] == str(onnx_model.resolve())
    assert report["model_format_kind"] == "onnx"
    assert (report["tile"]["height"], report["tile"]["width"], report["tile"]["batch_size"]) == (16, 16, 16)
    assert report["bands"]["indexes"] == [0, 1, 2]
    assert [(c["value"], c["name"], c["color"]) for c in report["classes"]] == [
        (100, "Impervious", [204, 204, 204]), (200, "Other (Pervious)", [56, 168, 0])]


def test_cntk_model_is_written_with_a_warning(qgis_context, tmp_path: Path):
    import processing

    model = tmp_path / "cntk.model"
    model.write_bytes(b"cntk")
    feedback = RecordingFeedback()
    out = tmp_path / "cntk.ecd"
    processing.run("dltools:modeltoecd", {
        "MODEL_FILE": str(model), "CLASS_INFO": str(class_info(tmp_path / "c.json", Classifier="CNTK", ImageHeight=64,
                                                                ImageWidth=64)),
        "OUTPUT": str(out)}, context=qgis_context, feedback=feedback)
    assert json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]["ModelFile"] == "cntk.model"
    assert feedback.errors == [
        "The .ecd was written, but this plugin's inference tools cannot use it as a model: Framework 'CNTK' is not "
        "supported: export the model to ONNX (CNTK's Function.save with format=C.ModelFormat.ONNX) and set Framework to "
        "ONNX (in an .ecd the framework is the definition's 'Classifier')"]


@pytest.mark.parametrize("changes, message", [
    ({"ImportDeepLearningModelToEsriExtraInfo": None},
     "Class info 'c.json' has no 'ImportDeepLearningModelToEsriExtraInfo' key"),
    ({"Classes": [SEED_CLASSES[0], dict(SEED_CLASSES[1], Color=[56, 168, 256])]},
     r"Class info 'c.json': Classes\[1\] \(' Other \(Pervious\)'\) 'Color' blue is 256: colour values must be 0-255"),
    ({"NumberRasterBands": 4}, r"ONNX model 'seg.onnx' takes 3 bands .* but the class info says NumberRasterBands 4"),
])
def test_errors_reach_the_user(qgis_context, tmp_path: Path, onnx_model: Path, changes, message):
    import processing
    from qgis.core import QgsProcessingException

    out = tmp_path / "out.ecd"
    with pytest.raises(QgsProcessingException, match=f"^{message}"):
        processing.run("dltools:modeltoecd", {"MODEL_FILE": str(onnx_model),
                                              "CLASS_INFO": str(class_info(tmp_path / "c.json", **changes)),
                                              "OUTPUT": str(out)}, context=qgis_context)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "seg.onnx"]


def test_qgis_process(tmp_path: Path, onnx_model: Path):
    util = qgis_process_util()
    if not util.available():
        pytest.skip("qgis_process is not installed")
    out = tmp_path / "qp.ecd"
    answer = util.qgis_process_json("dltools:modeltoecd", {
        "MODEL_FILE": onnx_model, "CLASS_INFO": class_info(tmp_path / "c.json"), "OUTPUT": out}, tmp_path)
    assert answer["results"] == {"OUTPUT": str(out)}
    assert f"Wrote {out}" in answer["log"]["info"]
    definition = json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]
    assert (definition["ModelFile"], definition["ImageHeight"], definition["NumberClasses"]) == ("seg.onnx", 16, 2)
    message = util.qgis_process_failure("dltools:modeltoecd", {
        "MODEL_FILE": onnx_model, "CLASS_INFO": class_info(tmp_path / "bad.json", Classes=None),
        "OUTPUT": tmp_path / "bad.ecd"}, tmp_path)
    assert "Class info 'bad.json': key 'Classes' is missing (a list of {Value, Name, Color})" in message
    assert not (tmp_path / "bad.ecd").exists()


def test_ecd_classifies_pixels(qgis_context, tmp_path: Path, onnx_model: Path):
    """The .ecd as MODEL of Classify Pixels: channel i of the model output is Classes[i] of the class info."""
    import processing
    from builders import read_raster, write_raster

    rng = np.random.default_rng(5)
    image = rng.integers(0, 200, size=(3, 40, 36)).astype(np.uint8)
    image[1] = image[0] + rng.choice(np.array([-1, 1], np.int16), size=(40, 36))  # never a tie between bands 1 and 2
    image[1][image[0] == 0] = 1
    raster = write_raster(tmp_path / "image.tif", image)
    ecd = tmp_path / "seg.ecd"
    processing.run("dltools:modeltoecd", {"MODEL_FILE": str(onnx_model), "CLASS_INFO": str(class_info(tmp_path / "c.json")),
                                          "OUTPUT": str(ecd)}, context=qgis_context)
    out = tmp_path / "classes.tif"
    processing.run("dltools:classifypixels", {"INPUT": str(raster), "MODEL": str(ecd), "OUTPUT": str(out)},
                   context=qgis_context)
    expected = np.where(image[0] > image[1], 100, 200)
    np.testing.assert_array_equal(read_raster(out), expected)

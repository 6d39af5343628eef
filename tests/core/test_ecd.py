# SPDX-License-Identifier: GPL-2.0-or-later
"""Deep Learning Model To Ecd: class info validation, the .ecd layout, and .ecd files as models."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, export_torchscript
from dltools.core.errors import ModelDefinitionError, OutputError
from dltools.core.model.definition import ClassInfo
from dltools.core.model.ecd import definition_from_ecd_data, emd_data_from_ecd_file
from dltools.core.model.ecd_writer import emd_data_from_class_info, validate_class_info, write_ecd
from dltools.core.model.loader import load_model_definition

#: The "Esri Extra Info" example of the ArcGIS documentation (esri-compat.md section 7.1).
SEED = {
    "ImportDeepLearningModelToEsriExtraInfo": 0, "Version": 1, "Classifier": "CNTK", "NumberRasterBands": 4,
    "MiniBatchSize": 16,
    "Classes": [{"Value": 100, "Name": "Impervious", "Color": [204, 204, 204]},
                {"Value": 200, "Name": " Other (Pervious)", "Color": [56, 168, 0]}],
}


def seed(**changes) -> dict:
    data = copy.deepcopy(SEED)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """Three bands in, two class scores out, fixed 16x16 tiles."""
    weight = np.zeros((2, 3, 1, 1), np.float32)
    weight[0, 0, 0, 0] = 1.0  # class 0 score = band 1
    weight[1, 1, 0, 0] = 1.0  # class 1 score = band 2
    folder = tmp_path / "models"
    folder.mkdir()
    return export_onnx(conv_module(3, 2, 1, weight=weight), folder / "seg.onnx", 3, 16)


# ------------------------------------------------------------------------------------- validation
def test_seed_class_info_is_valid():
    info = validate_class_info(seed())
    assert info.classifier == "CNTK"
    assert info.number_raster_bands == 4
    assert info.mini_batch_size == 16
    assert info.version == 1
    assert info.model_type == "ImageClassification"
    assert info.image_height is None and info.image_width is None
    assert info.classes == [ClassInfo(100, "Impervious", (204, 204, 204)),
                            ClassInfo(200, " Other (Pervious)", (56, 168, 0))]


@pytest.mark.parametrize("data, message", [
    (seed(ImportDeepLearningModelToEsriExtraInfo=None),
     "class info has no 'ImportDeepLearningModelToEsriExtraInfo' key: it is not an Esri Extra Info class info file"),
    (seed(Classes=None), "class info: key 'Classes' is missing (a list of {Value, Name, Color})"),
    (seed(Classes=[]), "class info: key 'Classes' must be a non-empty list of {Value, Name, Color} objects"),
    (seed(Classifier=None), "class info: key 'Classifier' is missing"),
    (seed(NumberRasterBands=None), "class info: key 'NumberRasterBands' is missing"),
    (seed(NumberRasterBands=4.5), "class info: key 'NumberRasterBands' must be an integer, not 4.5"),
    (seed(NumberRasterBands="4"), "class info: key 'NumberRasterBands' must be an integer, not \"4\""),
    (seed(NumberRasterBands=0), "class info: key 'NumberRasterBands' must be at least 1, not 0"),
    (seed(MiniBatchSize=True), "class info: key 'MiniBatchSize' must be an integer, not true"),
    (seed(Classes=[SEED["Classes"][0], {"Value": 200, "Name": " Other (Pervious)", "Color": [56, 256, 0]}]),
     "class info: Classes[1] (' Other (Pervious)') 'Color' green is 256: colour values must be 0-255"),
    (seed(Classes=[{"Value": 100, "Name": "Impervious", "Color": [-1, 0, 0]}]),
     "class info: Classes[0] ('Impervious') 'Color' red is -1: colour values must be 0-255"),
    (seed(Classes=[{"Value": 100, "Name": "Impervious", "Color": "#cccccc"}]),
     "class info: Classes[0] ('Impervious') 'Color' must be a list [red, green, blue], not \"#cccccc\""),
    (seed(Classes=[{"Value": 100, "Name": "Impervious", "Color": [1, 2]}]),
     "class info: Classes[0] ('Impervious') 'Color' must be a list [red, green, blue], not [1, 2]"),
    (seed(Classes=[{"Value": 100, "Name": "Impervious", "Color": [1, 2, 3.5]}]),
     "class info: Classes[0] ('Impervious') 'Color' blue must be an integer, not 3.5"),
    (seed(Classes=[{"Value": 100, "Name": "Impervious"}]),
     "class info: Classes[0] ('Impervious') has no 'Color' ([red, green, blue], each 0-255)"),
    (seed(Classes=[SEED["Classes"][0], {"Value": 100, "Name": " Other (Pervious)", "Color": [56, 168, 0]}]),
     "class info: Classes[1] (' Other (Pervious)') repeats Value 100 of Classes[0] ('Impervious'): "
     "class values must be unique"),
    (seed(Classes=[{"Value": 1.5, "Name": "Impervious", "Color": [1, 2, 3]}]),
     "class info: Classes[0] ('Impervious') 'Value' must be an integer, not 1.5"),
    (seed(Classes=[{"Value": "100", "Name": "Impervious", "Color": [1, 2, 3]}]),
     "class info: Classes[0] ('Impervious') 'Value' must be an integer, not \"100\""),
    (seed(Classes=[{"Name": "Impervious", "Color": [1, 2, 3]}]), "class info: Classes[0] ('Impervious') has no 'Value'"),
    (seed(Classes=[{"Value": 100, "Color": [1, 2, 3]}]), "class info: Classes[0] has no 'Name'"),
    (seed(Classes=[{"Value": 100, "Name": "  ", "Color": [1, 2, 3]}]), "class info: Classes[0] 'Name' is empty"),
    (seed(Classes=["Impervious"]), "class info: Classes[0] must be an object with Value, Name and Color"),
    (seed(ModelType="Segmentation"), "class info: key 'ModelType' \"Segmentation\" is unknown"),
    (seed(ImageHeight=256), "class info gives 'ImageHeight' but not 'ImageWidth': give both"),
    (seed(ImageHeight=0, ImageWidth=256), "class info: key 'ImageHeight' must be at least 1, not 0"),
    (seed(DataRange=[1, 0]), "class info: key 'DataRange' must be [min, max] with min < max, not [1, 0]"),
    (seed(ImageHeight=16, ImageWidth=16, ModelPadding=8),
     "class info: key 'ModelPadding' 8 leaves no centre in a 16x16 tile: it must be less than half the tile"),
])
def test_class_info_errors_name_key_and_class(data, message):
    with pytest.raises(ModelDefinitionError) as exc:
        validate_class_info(data)
    assert str(exc.value).startswith(message), str(exc.value)


def test_class_info_must_be_an_object():
    with pytest.raises(ModelDefinitionError, match=r"^class info must be a JSON object \(\{\.\.\.\}\), not list$"):
        validate_class_info([SEED])  # type: ignore[arg-type]


def test_class_info_file_errors_name_the_file(tmp_path: Path):
    model = tmp_path / "cntk.model"
    model.write_bytes(b"cntk")
    bad = tmp_path / "classInfo.json"
    bad.write_text('{"ImportDeepLearningModelToEsriExtraInfo": 0,\n "Classes": [}', encoding="utf-8")
    with pytest.raises(ModelDefinitionError, match=r"^Class info file 'classInfo.json' is not valid JSON: .* at line 2"):
        write_ecd(model, bad, tmp_path / "out.ecd")
    bad.write_text(json.dumps(seed(NumberRasterBands=None)), encoding="utf-8")
    with pytest.raises(ModelDefinitionError, match=r"^Class info 'classInfo.json': key 'NumberRasterBands' is missing"):
        write_ecd(model, bad, tmp_path / "out.ecd")
    with pytest.raises(ModelDefinitionError, match=r"^Class info file '.*missing.json' does not exist$"):
        write_ecd(model, tmp_path / "missing.json", tmp_path / "out.ecd")
    with pytest.raises(ModelDefinitionError, match=r"^Model file '.*nomodel.model' does not exist$"):
        write_ecd(tmp_path / "nomodel.model", seed(ImageHeight=8, ImageWidth=8), tmp_path / "out.ecd")
    definition = tmp_path / "model.emd"
    definition.write_text("{}", encoding="utf-8")
    with pytest.raises(ModelDefinitionError, match=r"^'model.emd' is a model definition, not a trained model file"):
        write_ecd(definition, seed(ImageHeight=8, ImageWidth=8), tmp_path / "out.ecd")
    definition.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classInfo.json", "cntk.model"]


# ------------------------------------------------------------------------------------- writing
def test_seed_example_writes_exact_ecd(tmp_path: Path):
    model = tmp_path / "models" / "cntk.model"
    model.parent.mkdir()
    model.write_bytes(b"not really CNTK")
    class_info = tmp_path / "classInfo.json"
    class_info.write_text(json.dumps(seed(ImageHeight=256, ImageWidth=256)), encoding="utf-8")
    out = write_ecd(model, class_info, tmp_path / "ecd" / "cntk.ecd")
    assert out == tmp_path / "ecd" / "cntk.ecd"
    expected = {
        "EsriClassifierDefinitionFile": 0, "FileVersion": 3, "NumberDefinitions": 1,
        "Definitions": [{
            "Classifier": "CNTK", "ClassifierType": "DeepLearning", "ModelFile": "../models/cntk.model",
            "NumberBands": 4, "MiniBatchSize": 16, "NumberClasses": 2,
            "Classes": [{"ClassValue": 100, "ClassName": "Impervious", "Red": 204, "Green": 204, "Blue": 204},
                        {"ClassValue": 200, "ClassName": " Other (Pervious)", "Red": 56, "Green": 168, "Blue": 0}],
            "ModelType": "ImageClassification", "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [0, 1, 2, 3],
        }],
    }
    text = out.read_text(encoding="utf-8")
    assert json.loads(text) == expected
    assert text == json.dumps(expected, indent=4) + "\n"  # key order as documented
    assert sorted(p.name for p in out.parent.iterdir()) == ["cntk.ecd"]  # no temporary file left


def test_optional_plugin_keys_are_copied(tmp_path: Path):
    model = tmp_path / "net.pt"
    model.write_bytes(b"x")
    out = write_ecd(model, seed(Classifier="PyTorch", MiniBatchSize=None, ModelType="ImageClassification",
                                ImageHeight=64, ImageWidth=32, DataRange=[0, 1], ModelPadding=4),
                    tmp_path / "net")  # no extension: .ecd is added
    assert out == tmp_path / "net.ecd"
    definition = json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]
    assert list(definition) == ["Classifier", "ClassifierType", "ModelFile", "NumberBands", "NumberClasses", "Classes",
                                "ModelType", "ImageHeight", "ImageWidth", "ExtractBands", "DataRange", "ModelPadding"]
    assert definition["ModelFile"] == "net.pt"
    assert (definition["ImageHeight"], definition["ImageWidth"]) == (64, 32)
    assert definition["DataRange"] == [0, 1]
    assert definition["ModelPadding"] == 4


def test_tile_size_is_read_from_onnx(tmp_path: Path, onnx_model: Path):
    info = seed(Classifier="ONNX", NumberRasterBands=3)
    out = write_ecd(onnx_model, info, tmp_path / "seg.ecd")
    definition = json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]
    assert (definition["ImageHeight"], definition["ImageWidth"]) == (16, 16)
    assert definition["ModelFile"] == "models/seg.onnx"
    assert definition["ExtractBands"] == [0, 1, 2]
    assert "ModelFormat" not in definition


def test_onnx_band_count_must_match(tmp_path: Path, onnx_model: Path):
    with pytest.raises(ModelDefinitionError) as exc:
        write_ecd(onnx_model, seed(Classifier="ONNX"), tmp_path / "seg.ecd")
    assert str(exc.value) == ("ONNX model 'seg.onnx' takes 3 bands (input shape ['batch', 3, 16, 16]) but the class info "
                              "says NumberRasterBands 4")
    assert not (tmp_path / "seg.ecd").exists()


def test_dynamic_onnx_needs_tile_size(tmp_path: Path):
    model = export_onnx(conv_module(3, 2, 1), tmp_path / "dyn.onnx", 3, 16, dynamic_hw=True)
    with pytest.raises(ModelDefinitionError) as exc:
        write_ecd(model, seed(Classifier="ONNX", NumberRasterBands=3), tmp_path / "dyn.ecd")
    assert str(exc.value) == ("The tile size of model 'dyn.onnx' is unknown (it takes any tile size): add \"ImageHeight\" "
                              "and \"ImageWidth\" (the model's input tile size in pixels) to the class info JSON")
    out = write_ecd(model, seed(Classifier="ONNX", NumberRasterBands=3, ImageHeight=24, ImageWidth=24), tmp_path / "dyn.ecd")
    assert json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]["ImageHeight"] == 24


def test_unknown_model_kind_needs_tile_size(tmp_path: Path):
    model = tmp_path / "cntk.model"
    model.write_bytes(b"x")
    with pytest.raises(ModelDefinitionError, match=r"^The tile size of model 'cntk.model' is unknown \(the plugin cannot "
                                                   r"read it from this kind of file\): add \"ImageHeight\""):
        write_ecd(model, SEED, tmp_path / "cntk.ecd")
    assert list(tmp_path.iterdir()) == [model]


def test_torchscript_declared_tile_size(tmp_path: Path):
    model = export_torchscript(conv_module(4, 2, 1), tmp_path / "net.pt", emd={"ImageHeight": 48, "ImageWidth": 40})
    out = write_ecd(model, seed(Classifier="PyTorch"), tmp_path / "net.ecd")
    definition = json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]
    assert (definition["ImageHeight"], definition["ImageWidth"]) == (48, 40)


def test_failed_write_leaves_previous_file(tmp_path: Path, monkeypatch):
    model = tmp_path / "m.model"
    model.write_bytes(b"x")
    out = tmp_path / "m.ecd"
    out.write_text("previous", encoding="utf-8")

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("dltools.core.model.ecd.json.dump", broken_dump)
    with pytest.raises(OutputError, match=r"^Cannot write the output '.*m.ecd': disk full$"):
        write_ecd(model, seed(ImageHeight=8, ImageWidth=8), out)
    assert out.read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ecd", "m.model"]


def test_model_path_is_absolute_when_no_relative_path_exists(tmp_path: Path, monkeypatch):
    model = tmp_path / "m.model"
    model.write_bytes(b"x")

    def other_drive(path, start=None):
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr("dltools.core.model.ecd.os.path.relpath", other_drive)
    out = write_ecd(model, seed(ImageHeight=8, ImageWidth=8), tmp_path / "m.ecd")
    assert json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]["ModelFile"] == model.resolve().as_posix()


# ------------------------------------------------------------------------------------- reading
def test_round_trip_through_load_model_definition(tmp_path: Path, onnx_model: Path):
    info = seed(Classifier="ONNX", NumberRasterBands=3, MiniBatchSize=9, DataRange=[0, 255])
    ecd = write_ecd(onnx_model, info, tmp_path / "out" / "seg.ecd")
    md = load_model_definition(ecd)
    assert md.origin == "ecd"
    assert md.source == str(ecd)
    assert md.framework == "ONNX"
    assert md.model_format_kind == "onnx"
    assert md.model_file == onnx_model.resolve()
    assert md.model_file_text == "../models/seg.onnx"
    assert md.model_type == "ImageClassification"
    assert (md.image_height, md.image_width) == (16, 16)
    assert md.extract_bands == [0, 1, 2]
    assert md.batch_size == 9
    assert md.data_range == (0.0, 255.0)
    assert md.classes == [ClassInfo(100, "Impervious", (204, 204, 204)), ClassInfo(200, "Other (Pervious)", (56, 168, 0))]
    assert md.warnings == []


def test_ecd_model_runs_in_onnx_backend(tmp_path: Path, onnx_model: Path):
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.backends.onnx_backend import OnnxBackend

    md = load_model_definition(write_ecd(onnx_model, seed(Classifier="ONNX", NumberRasterBands=3), tmp_path / "seg.ecd"))
    backend = OnnxBackend(md.require_model_file(), DeviceRequest("cpu", threads=1))
    try:
        batch = np.arange(2 * 3 * 16 * 16, dtype=np.float32).reshape(2, 3, 16, 16)
        out = backend.run(batch)[0]
    finally:
        backend.close()
    np.testing.assert_array_equal(out[:, 0], batch[:, 0])
    np.testing.assert_array_equal(out[:, 1], batch[:, 1])


def test_ecd_given_as_json_text(onnx_model: Path):
    definition = {"Classifier": "ONNX", "ClassifierType": "DeepLearning", "ModelFile": str(onnx_model), "NumberBands": 3,
                  "NumberClasses": 1, "Classes": [{"ClassValue": 1, "ClassName": "Tree", "Red": 0, "Green": 255, "Blue": 0}],
                  "ImageHeight": 16, "ImageWidth": 16}
    text = json.dumps({"EsriClassifierDefinitionFile": 0, "FileVersion": 3, "NumberDefinitions": 1,
                       "Definitions": [definition]})
    md = load_model_definition(text)
    assert md.origin == "ecd"
    assert md.model_file == onnx_model
    assert md.model_type == "ImageClassification"
    assert md.extract_bands == [0, 1, 2]
    assert md.classes == [ClassInfo(1, "Tree", (0, 255, 0))]


def envelope(**definition_changes) -> dict:
    definition = {"Classifier": "ONNX", "ClassifierType": "DeepLearning", "ModelFile": "seg.onnx", "NumberBands": 3,
                  "NumberClasses": 2,
                  "Classes": [{"ClassValue": 1, "ClassName": "Tree", "Red": 0, "Green": 255, "Blue": 0},
                              {"ClassValue": 2, "ClassName": "Road", "Red": 90, "Green": 90, "Blue": 90}],
                  "ModelType": "ImageClassification", "ImageHeight": 16, "ImageWidth": 16, "ExtractBands": [0, 1, 2]}
    for key, value in definition_changes.items():
        if value is None:
            definition.pop(key)
        else:
            definition[key] = value
    return {"EsriClassifierDefinitionFile": 0, "FileVersion": 3, "NumberDefinitions": 1, "Definitions": [definition]}


def test_emd_style_classes_are_accepted(onnx_model: Path):
    data = envelope(Classes=[{"Value": 5, "Name": "Water", "Color": [0, 0, 255]}, {"Value": 6, "Name": 7}], NumberClasses=2)
    md = definition_from_ecd_data(data, source="x.ecd", base_dir=onnx_model.parent)
    assert md.classes == [ClassInfo(5, "Water", (0, 0, 255)), ClassInfo(6, "7", None)]


@pytest.mark.parametrize("data, message", [
    ({"FileVersion": 3, "Definitions": []},
     "'x.ecd' has no 'EsriClassifierDefinitionFile' key: it is not an Esri classifier definition (.ecd)"),
    ({"EsriClassifierDefinitionFile": 0, "Definitions": []},
     "'x.ecd': key 'Definitions' must be a non-empty list of classifier definitions"),
    ({"EsriClassifierDefinitionFile": 0}, "'x.ecd': key 'Definitions' must be a non-empty list of classifier definitions"),
    ({"EsriClassifierDefinitionFile": 0, "Definitions": [3]}, "'x.ecd': Definitions[0] must be an object, not 3"),
    ({**envelope(), "NumberDefinitions": 2}, "'x.ecd': 'NumberDefinitions' is 2 but 'Definitions' holds 1"),
    ({"EsriClassifierDefinitionFile": 0, "FileVersion": 1, "NumberDefinitions": 1,
      "Definitions": [{"Classifier": "MaximumLikelihood", "NumberClasses": 0, "Classes": []}]},
     "'x.ecd' holds no deep learning definition (ClassifierType \"DeepLearning\"), only MaximumLikelihood: it is a "
     "classifier for Classify Raster, not a deep learning model"),
    (envelope(NumberClasses=3), "'x.ecd' Definitions[0]: 'NumberClasses' is 3 but 'Classes' lists 2"),
    (envelope(ExtractBands=[0, 1]), "'x.ecd' Definitions[0]: 'ExtractBands' lists 2 bands but 'NumberBands' is 3"),
    (envelope(ImageHeight=None), "'x.ecd' Definitions[0] has no 'ImageHeight': the model's tile size is unknown."),
    (envelope(Classes=[{"ClassValue": 1, "ClassName": "Tree", "Red": 0}], NumberClasses=1),
     "'x.ecd' Definitions[0]: Classes[0] ('Tree') needs all of Red, Green and Blue, not only Red"),
    (envelope(Classes=[{"Name": "Tree"}], NumberClasses=1),
     "'x.ecd' Definitions[0]: Classes[0] has neither 'ClassValue' (.ecd classes) nor 'Value' (.emd classes)"),
    (envelope(Classes=[{"ClassValue": 1, "ClassName": "Tree", "Red": 0, "Green": 300, "Blue": 0}], NumberClasses=1),
     "Classes[0] ('Tree') 'Color' values must be 0-255, not [0, 300, 0]"),
    (envelope(ModelType="Segmenter"), "ModelType 'Segmenter' is unknown"),
    (envelope(ModelFile="missing.onnx"), "ModelFile 'missing.onnx' not found at that path"),
])
def test_ecd_errors(data, message, onnx_model: Path):
    with pytest.raises(ModelDefinitionError) as exc:
        definition_from_ecd_data(data, source="x.ecd", base_dir=onnx_model.parent)
    assert str(exc.value).startswith(message), str(exc.value)


def test_cntk_ecd_fails_with_the_cntk_message(tmp_path: Path):
    model = tmp_path / "cntk.model"
    model.write_bytes(b"x")
    ecd = write_ecd(model, seed(ImageHeight=256, ImageWidth=256), tmp_path / "cntk.ecd")
    with pytest.raises(ModelDefinitionError) as exc:
        load_model_definition(ecd)
    assert str(exc.value) == (
        "Framework 'CNTK' is not supported: export the model to ONNX (CNTK's Function.save with "
        "format=C.ModelFormat.ONNX) and set Framework to ONNX (in an .ecd the framework is the definition's 'Classifier')")


def test_second_deep_learning_definition_is_reported(onnx_model: Path):
    data = envelope()
    mlc = {"Classifier": "MaximumLikelihood", "NumberClasses": 0, "Classes": []}
    data["Definitions"] = [mlc, data["Definitions"][0], dict(data["Definitions"][0], ImageHeight=8, ImageWidth=8)]
    data["NumberDefinitions"] = 3
    md = definition_from_ecd_data(data, source="x.ecd", base_dir=onnx_model.parent)
    assert (md.image_height, md.image_width) == (16, 16)
    assert md.warnings == ["'x.ecd' holds 2 deep learning definitions: using the first (Definitions[1])"]


def test_emd_data_for_packaging(tmp_path: Path, onnx_model: Path):
    ecd = write_ecd(onnx_model, seed(Classifier="ONNX", NumberRasterBands=3), tmp_path / "seg.ecd")
    emd = emd_data_from_ecd_file(ecd)
    expected = {
        "ModelFile": onnx_model.resolve().as_posix(), "ModelType": "ImageClassification", "ImageHeight": 16,
        "ImageWidth": 16, "ExtractBands": [0, 1, 2], "Framework": "ONNX", "BatchSize": 16,
        "Classes": [{"Value": 100, "Name": "Impervious", "Color": [204, 204, 204]},
                    {"Value": 200, "Name": " Other (Pervious)", "Color": [56, 168, 0]}],
    }
    assert emd == expected
    assert emd_data_from_class_info(onnx_model, seed(Classifier="ONNX", NumberRasterBands=3)) == expected
    assert os.path.isabs(emd["ModelFile"])


def _nhwc_onnx(path: Path) -> Path:
    """A channels-last ONNX model: [B, 16, 16, 3] in, [B, 16, 16, 2] out."""
    import warnings

    import torch

    conv = conv_module(3, 2, 1)

    class ChannelsLast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ChannelsLast().eval(), torch.zeros(1, 16, 16, 3), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"], opset_version=13,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


def test_onnx_layout_is_read_even_when_the_class_info_gives_the_tile_size(tmp_path: Path):
    """The layout is the model file's (the one NCHW/NHWC rule), whether or not ImageHeight/ImageWidth are given; a
    channels-last model described as NCHW would be fed its tiles the wrong way round."""
    model = _nhwc_onnx(tmp_path / "nhwc.onnx")
    for sizes in ({}, {"ImageHeight": 16, "ImageWidth": 16}):
        out = write_ecd(model, seed(Classifier="ONNX", NumberRasterBands=3, **sizes), tmp_path / "nhwc.ecd")
        definition = json.loads(out.read_text(encoding="utf-8"))["Definitions"][0]
        assert (definition["ImageHeight"], definition["ImageWidth"], definition.get("ModelFormat")) == (16, 16, "NHWC")
    with pytest.raises(ModelDefinitionError, match=r"^ONNX model 'nhwc.onnx' takes 3 bands .* NumberRasterBands 4"):
        write_ecd(model, seed(Classifier="ONNX", ImageHeight=16, ImageWidth=16), tmp_path / "bad.ecd")

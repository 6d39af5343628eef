# SPDX-License-Identifier: GPL-2.0-or-later
"""Model definitions: real Esri .emd files, the JSON text form and every malformed input a user can hand in."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from builders import conv_module, export_onnx, export_torchscript, write_emd
from dltools.core.errors import ModelDefinitionError
from dltools.core.model.definition import ClassInfo
from dltools.core.model.loader import load_model_definition
from dltools.core.trust import CodeTrust

TRUSTED = CodeTrust.all()  # these tests' own TorchScript files

_KERAS = ("Framework 'Keras' is not supported: convert the model to ONNX (tf2onnx, which reads Keras .h5) "
          "and set Framework to ONNX")
_CNTK = ("Framework 'CNTK' is not supported: export the model to ONNX (CNTK's Function.save with "
         "format=C.ModelFormat.ONNX) and set Framework to ONNX")
_TF = "Framework 'TensorFlow' is not supported: convert the model to ONNX (tf2onnx) and set Framework to ONNX"


def _no_model_file(function: str) -> str:
    return (f"The model definition has no ModelFile, and its Python raster function '{function}' is not beside it: add "
            "\"ModelFile\" (an ONNX or TorchScript model file) and \"Framework\", or put the model's own Python raster "
            "function (InferenceFunction) next to the .emd")


#: What each real .emd in ../shared/testdata/esri/emd gives: the exact error message ({dir} = the emd folder).
ESRI_EMD_ERRORS = {
    "DraftTemplateEMD.emd": "ModelFile 'frozen_inference_graph.pb' is a TensorFlow graph, which is not supported: "
                            "convert the model to ONNX (tf2onnx) and set Framework to ONNX",
    "GroundingDINO.emd": _no_model_file("GroundingDINO.py"),
    "HouseDamageClassifier_ProBuiltin.emd": _KERAS,
    "TextSAM.emd": _no_model_file("TextSAM.py"),
    "UTMCarsV3_FasterRCNN_RN50_TS416.emd":
        "ModelFile 'UTMCarsV3_FasterRCNN_RN50_TS416.pth' not found next to the .emd "
        "({dir}/UTMCarsV3_FasterRCNN_RN50_TS416.pth)",
    "azure_pixel_level_land_classification.emd": _CNTK,
    "cntk_fasterrcnn_coconut_tree.emd": _CNTK,
    "mask_rcnn.emd": _KERAS,
    "pytorch_fastai_ssd.emd": "ModelFile '.\\9.h5' is a Keras/HDF5 file, which is not supported: convert the model to "
                              "ONNX (tf2onnx) and set Framework to ONNX",
    "tensorflow_deeplab_landclassification.emd": _TF,
    "tensorflow_objectdetectionapi_coconuttree.emd": _TF,
    "woolseyFire_600_50.emd": "ModelFile 'woolseyFire_600_50.pth' not found next to the .emd ({dir}/woolseyFire_600_50.pth)",
    "xview_onnx.emd": "ModelFile 'saved_model.onnx' not found next to the .emd ({dir}/saved_model.onnx)",
}


def test_every_real_esri_emd_is_covered(testdata):
    folder = testdata("esri", "emd")
    assert sorted(p.name for p in folder.glob("*.emd")) == sorted(ESRI_EMD_ERRORS)


@pytest.mark.parametrize("name", sorted(ESRI_EMD_ERRORS))
def test_real_esri_emd_fails_with_its_specific_message(testdata, name):
    path = testdata("esri", "emd", name)
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(path, trust=TRUSTED)
    assert str(info.value) == ESRI_EMD_ERRORS[name].format(dir=path.parent.resolve())


@pytest.mark.parametrize("name", sorted(n for n, m in ESRI_EMD_ERRORS.items() if "not found" in m or "no ModelFile" in m))
def test_real_esri_emd_parses_without_the_file_check(testdata, name):
    """Where only the model file is at fault, the rest of the definition is read."""
    path = testdata("esri", "emd", name)
    md = load_model_definition(path, check_file=False, trust=TRUSTED)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert md.model_type == raw["ModelType"]
    assert md.image_height == raw["ImageHeight"]
    assert [c.value for c in md.classes] == [c["Value"] for c in raw["Classes"]]


def test_woolsey_fire_object_classifier_keys(testdata):
    md = load_model_definition(testdata("esri", "emd", "woolseyFire_600_50.emd"), check_file=False, trust=TRUSTED)
    assert (md.model_type, md.crop_size_fixed, md.blacken_around_feature) == ("ObjectClassification", 1, 0)
    assert md.classes == [ClassInfo(1, "Damaged", (17, 157, 34)), ClassInfo(2, "Undamaged", (158, 187, 171))]
    assert md.extra["ModelParameters"] == {"backbone": "resnet34"}
    # an older arcgis.learn .emd: ModelName is the user's, ModelConfiguration names the class that is rebuilt
    assert md.model_format_kind == "arcgis_learn"
    assert (md.arcgis_family.model_name, md.arcgis_family.backbone) == ("FeatureClassifier", "resnet34")


def test_esri_landcover_emd_loads(testdata):
    emd = testdata("esri", "landcover", "trained.emd")
    md = load_model_definition(emd, trust=TRUSTED)
    assert md.origin == "emd"
    assert md.framework == "Onnx"
    assert md.model_format_kind == "onnx"
    assert md.model_file == emd.parent.resolve() / "trained.onnx"
    assert (md.image_height, md.image_width, md.model_padding) == (256, 256, 64)
    assert md.data_range == (0.0, 1.0)
    assert md.extract_bands == [0, 1, 2, 3]
    assert md.classes == [
        ClassInfo(0, "Evergreen Forest", (0, 51, 0)),
        ClassInfo(1, "Grassland/Herbaceous", (241, 185, 137)),
        ClassInfo(2, "Bare Land", (236, 236, 0)),
        ClassInfo(3, "Open Water", (0, 0, 117)),
        ClassInfo(4, "Scrub/Shrub", (102, 102, 0)),
        ClassInfo(5, "Impervious Surface", (236, 236, 236)),
    ]
    assert md.warnings == []


# ------------------------------------------------------------------------------------------ synthetic
def _emd(**overrides) -> dict:
    data = {"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "model.onnx",
            "ImageHeight": 32, "ImageWidth": 32, "ExtractBands": [0, 1, 2],
            "Classes": [{"Value": 1, "Name": "Tree", "Color": [0, 255, 0]}]}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(conv_module(3, 2, 3), path, 3, 32)


def _write(tmp_path: Path, data: dict | str, name: str = "model.emd", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding=encoding)
    return path


def _error(model, **kwargs) -> str:
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(model, **kwargs, trust=TRUSTED)
    return str(info.value)


def test_json_text_with_absolute_model_file(onnx_file):
    md = load_model_definition(json.dumps(_emd(ModelFile=str(onnx_file))), trust=TRUSTED)
    assert (md.origin, md.source, md.model_file, md.base_dir) == ("json", "JSON text", onnx_file, None)
    assert md.classes == [ClassInfo(1, "Tree", (0, 255, 0))]


def test_json_text_with_relative_model_file_is_refused():
    assert _error(json.dumps(_emd())) == (
        "ModelFile 'model.onnx' is relative, and a model definition given as JSON text has no folder to resolve it "
        "against: give an absolute path in ModelFile, or pass the .emd file")


def test_json_text_with_relative_model_file_without_file_check():
    md = load_model_definition("  " + json.dumps(_emd()), check_file=False, trust=TRUSTED)
    assert (md.model_file, md.model_file_text, md.model_format_kind) == (None, "model.onnx", "onnx")
    with pytest.raises(ModelDefinitionError, match="is relative, and a model definition given as JSON text"):
        md.require_model_file()


def test_utf8_bom_is_accepted(tmp_path, onnx_file):
    (tmp_path / "model.onnx").write_bytes(onnx_file.read_bytes())
    path = _write(tmp_path, _emd(), encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    md = load_model_definition(path, trust=TRUSTED)
    assert md.model_file == (tmp_path / "model.onnx").resolve()


def test_windows_backslash_model_file(tmp_path, onnx_file):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.onnx").write_bytes(onnx_file.read_bytes())
    path = _write(tmp_path, _emd(ModelFile=".\\sub\\model.onnx"))
    md = load_model_definition(path, trust=TRUSTED)
    assert md.model_file == (tmp_path / "sub" / "model.onnx").resolve()
    assert md.model_file_text == ".\\sub\\model.onnx"


def test_class_name_given_as_a_number(tmp_path):
    data = _emd(Classes=[{"Value": 1, "Name": 1, "Color": [1, 2, 3]}, {"Value": 2, "Name": 2.5}])
    md = load_model_definition(json.dumps(data), check_file=False, trust=TRUSTED)
    assert md.classes == [ClassInfo(1, "1", (1, 2, 3)), ClassInfo(2, "2.5", None)]


def test_unknown_keys_are_kept_in_extra():
    data = _emd(Kwargs={"pretrained_backbone": True}, LearningRate="1e-3", MyOwnKey=[1, 2])
    md = load_model_definition(json.dumps(data), check_file=False, trust=TRUSTED)
    assert md.extra == {"Kwargs": {"pretrained_backbone": True}, "LearningRate": "1e-3", "MyOwnKey": [1, 2]}


def test_malformed_json_names_line_and_column(tmp_path):
    path = _write(tmp_path, '{\n  "ModelType": "ImageClassification",\n  "ImageHeight": 32,,\n}')
    assert _error(path) == "model definition 'model.emd' is not valid JSON: Expecting property name enclosed in " \
                           "double quotes at line 3, column 21"


def test_malformed_json_text():
    assert _error('{"ModelType":') == ("the model definition JSON text is not valid JSON: Expecting value at line 1, "
                                       "column 14")


def test_json_that_is_not_an_object(tmp_path):
    assert _error(_write(tmp_path, "[1, 2]")) == "model definition 'model.emd' must be a JSON object ({...}), not list"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ModelType": None}, "Key 'ModelType' is missing from the model definition (e.g. \"ImageClassification\")"),
    ({"ImageHeight": None}, "Key 'ImageHeight' is missing from the model definition"),
    ({"ImageWidth": None}, "Key 'ImageWidth' is missing from the model definition"),
    ({"ImageHeight": "abc"}, "Key 'ImageHeight' must be an integer, not \"abc\""),
    ({"ImageHeight": 12.5}, "Key 'ImageHeight' must be an integer, not 12.5"),
    ({"ImageHeight": True}, "Key 'ImageHeight' must be an integer, not true"),
    ({"ImageWidth": 0}, "Key 'ImageWidth' must be at least 1, not 0"),
    ({"ModelType": "Segmentation"}, "ModelType 'Segmentation' is unknown; known types: ImageClassification, "
                                    "ObjectDetection, InstanceDetection, ObjectClassification, ImageCaptioner, "
                                    "PanopticSegmenter, CycleGAN, Pix2Pix, SuperResolution, Regression"),
    ({"ModelType": 3}, "Key 'ModelType' must be text, not 3"),
    ({"Classes": {"Value": 1}}, "Key 'Classes' must be a list of {Value, Name, Color} objects"),
    ({"Classes": ["Tree"]}, "Classes[0] must be an object with Value, Name and Color"),
    ({"Classes": [{"Name": "Tree"}]}, "Classes[0] has no 'Value'"),
    ({"Classes": [{"Value": 1, "Name": "Tree", "Color": [0, 256, 0]}]},
     "Classes[0] ('Tree') 'Color' values must be 0-255, not [0, 256, 0]"),
    ({"Classes": [{"Value": 1, "Name": "Tree", "Color": [0, -1, 0]}]},
     "Classes[0] ('Tree') 'Color' values must be 0-255, not [0, -1, 0]"),
    ({"Classes": [{"Value": 1, "Name": "Tree", "Color": "green"}]}, "Classes[0] ('Tree') 'Color' must be [red, green, blue]"),
    ({"Classes": [{"Value": 1, "Name": "Tree"}, {"Value": 1, "Name": "Grass"}]},
     "Classes: Value 1 is used twice ('Tree' and 'Grass')"),
    ({"ExtractBands": []}, "Key 'ExtractBands' must be a non-empty list of 0-based band indexes or band names"),
    ({"ExtractBands": [0, -1]}, "ExtractBands entry -1 is negative: indexes are 0-based"),
    ({"ExtractBands": [0, "red"]}, "ExtractBands entry \"red\" is not a band index"),
    ({"DataRange": [1, 0]}, "Key 'DataRange' must be [min, max] with min < max, not [1, 0]"),
    ({"ModelPadding": 16}, "ModelPadding 16 leaves no centre in a 32x32 tile: it must be less than half the tile"),
    ({"ModelFormat": "CHW"}, "Key 'ModelFormat' must be NCHW or NHWC, not 'CHW'"),
    ({"Framework": "Caffe"}, "Framework 'Caffe' with ModelFile 'model.onnx' is not supported"),
])
def test_bad_definition_values(overrides, message):
    if overrides.get("Framework") == "Caffe":
        overrides = {"Framework": "Caffe", "ModelFile": "model.caffemodel"}
        message = ("Framework 'Caffe' with ModelFile 'model.caffemodel' is not supported: the plugin runs ONNX (.onnx) "
                   "and PyTorch TorchScript (.pt/.pth/.torchscript) or torch.export (.pt2) models")
    data = _emd(**overrides)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
    assert _error(json.dumps(data), check_file=False) == message


def test_extract_bands_by_name():
    md = load_model_definition(json.dumps(_emd(ExtractBands=["red", " nir ", "green"])), check_file=False, trust=TRUSTED)
    assert (md.extract_bands, md.extract_band_names) == (None, ["red", "nir", "green"])


def test_extract_bands_as_digit_strings_are_indexes():
    md = load_model_definition(json.dumps(_emd(ExtractBands=["2", 0, 1.0])), check_file=False, trust=TRUSTED)
    assert (md.extract_bands, md.extract_band_names) == ([2, 0, 1], None)


def test_misspelt_objection_detection_is_accepted():
    md = load_model_definition(json.dumps(_emd(ModelType="ObjectionDetection")), check_file=False, trust=TRUSTED)
    assert md.model_type == "ObjectDetection"


@pytest.mark.parametrize(("model", "message"), [
    ("", "No model was given: pass an .emd, .dlpk, .onnx or TorchScript file, or the .emd JSON text"),
    ("/nonexistent/dir/model.emd", "Model file '/nonexistent/dir/model.emd' does not exist"),
])
def test_missing_model(model, message):
    assert _error(model) == message


def test_folder_and_unknown_extension(tmp_path):
    assert _error(tmp_path) == f"Model '{tmp_path}' is a folder: pass the .emd or .dlpk file inside it"
    other = tmp_path / "model.h5"
    other.write_bytes(b"\x89HDF")
    assert _error(other) == ("Model 'model.h5' has an unknown extension '.h5': expected .emd, .dlpk, .ecd, .onnx, "
                             ".pt/.pth/.torchscript (TorchScript) or .pt2 (torch.export)")


def test_not_utf8(tmp_path):
    path = tmp_path / "model.emd"
    path.write_bytes(b'{"ModelType": "\xff"}')
    assert _error(path) == "'model.emd' is not UTF-8 text (byte 15): an .emd is a UTF-8 JSON file"


# ------------------------------------------------------------------------------------------ PyTorch files
@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "model_cpu.pt"
    return export_torchscript(conv_module(3, 2, 3), path)


def test_arcgis_learn_torchscript_key_is_preferred_over_pth(tmp_path, torchscript_file):
    (tmp_path / "torch_scripts").mkdir()
    (tmp_path / "torch_scripts" / "model_cpu.pt").write_bytes(torchscript_file.read_bytes())
    (tmp_path / "model.pth").write_bytes(b"never read")
    emd = _write(tmp_path, _emd(Framework="arcgis.learn.models._inferencing", ModelFile="model.pth",
                                TorchScript={"CPU": "torch_scripts/model_cpu.pt", "GPU": "torch_scripts/model_gpu.pt"},
                                ArcGISLearnVersion="2.2.0"))
    md = load_model_definition(emd, trust=TRUSTED)
    assert md.model_file == (tmp_path / "torch_scripts" / "model_cpu.pt").resolve()
    assert md.model_format_kind == "torchscript"
    assert md.is_arcgis_learn
    assert md.warnings == ["Using the TorchScript file 'torch_scripts/model_cpu.pt' the definition lists instead of "
                           "'model.pth'"]


class _Canary:
    """Unpickling this creates a file: proof that something unpickled the weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _forbid_unpickling(monkeypatch):
    import torch

    def boom(*args, **kwargs):
        raise AssertionError("the model file was unpickled")

    monkeypatch.setattr(torch, "load", boom)
    monkeypatch.setattr(torch.jit, "load", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_state_dict_is_refused_without_unpickling(tmp_path, monkeypatch, zip_format):
    import torch

    marker = tmp_path / "unpickled.txt"
    weights = tmp_path / "weights.pth"
    state = dict(conv_module(3, 2, 3).state_dict())
    state["canary"] = _Canary(marker)
    torch.save(state, weights, _use_new_zipfile_serialization=zip_format)
    assert not marker.exists()
    _forbid_unpickling(monkeypatch)
    emd = _write(tmp_path, _emd(Framework="PyTorch", ModelFile="weights.pth"))
    if zip_format:
        expected = ("ModelFile 'weights.pth' is a PyTorch weights file (state dict or pickled model), not TorchScript: "
                    "it needs the Python code of the network to run. Save it with torch.jit.save(torch.jit.script(model)) "
                    "or export it to ONNX. Pickled files are never loaded, since loading them can run arbitrary code")
    else:
        expected = ("ModelFile 'weights.pth' is not a TorchScript archive: save the model with torch.jit.save (or "
                    "export it to ONNX). Pickled PyTorch files are never loaded, since loading them can run arbitrary "
                    "code")
    assert _error(emd) == expected
    assert _error(weights) == expected  # the plain file, without an .emd
    assert not marker.exists()


def test_torchscript_emd_loads(tmp_path, torchscript_file):
    (tmp_path / "net.pt").write_bytes(torchscript_file.read_bytes())
    md = load_model_definition(write_emd(tmp_path / "net.emd", "net.pt", framework="PyTorch",
                                         classes=[(0, "a", (1, 1, 1)), (1, "b", (2, 2, 2))]), trust=TRUSTED)
    assert (md.model_format_kind, md.model_file) == ("torchscript", (tmp_path / "net.pt").resolve())


def test_plain_torchscript_with_embedded_definition(tmp_path):
    emd = _emd(ExtractBands=[2, 1, 0], Classes=[{"Value": 0, "Name": "bg"}, {"Value": 1, "Name": "fg"}], DataRange=[0, 1])
    del emd["ModelFile"], emd["Framework"]
    path = export_torchscript(conv_module(3, 2, 3), tmp_path / "embedded.pt", emd=emd)
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.origin, md.framework, md.model_format_kind) == ("torchscript", "PyTorch", "torchscript")
    assert (md.extract_bands, md.data_range, [c.name for c in md.classes]) == ([2, 1, 0], (0.0, 1.0), ["bg", "fg"])
    assert md.model_file == path.resolve()


def test_plain_torchscript_probe(tmp_path):
    path = export_torchscript(conv_module(4, 5, 1), tmp_path / "probe.pt")
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.model_type, md.extract_bands, len(md.classes)) == ("ImageClassification", [0, 1, 2, 3], 5)
    assert (md.image_height, md.supports_variable_tile_size) == (256, True)
    assert md.warnings == ["No input shape declared: a probe found 4 bands; tiles of 256 pixels are used. "
                           "Pixel values are passed unchanged"]


def test_classes_without_colours_get_one_fixed_colour_blind_safe_palette():
    from dltools.core.model.definition import COLOUR_BLIND_SAFE, ClassInfo, colours_from_palette, palette

    assert palette(3) == [(204, 102, 119), (51, 34, 136), (221, 204, 119)]  # Paul Tol's muted scheme, in order
    assert palette(9) == COLOUR_BLIND_SAFE and palette(30) == palette(30)  # the same for every model and run
    many = palette(30)
    assert len(set(many)) == 30  # past the nine, lighter then darker rounds: still all different
    assert many[9] == (222, 156, 167) and many[18] == (133, 66, 77)
    assert colours_from_palette([ClassInfo(0, "a", palette(2)[0]), ClassInfo(1, "b", palette(2)[1])])
    assert colours_from_palette([ClassInfo(0, "a", None), ClassInfo(1, "b", (1, 2, 3))])
    assert not colours_from_palette([ClassInfo(0, "a", (1, 2, 3)), ClassInfo(1, "b", (4, 5, 6))])
    assert not colours_from_palette([])

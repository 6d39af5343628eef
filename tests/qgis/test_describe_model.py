# SPDX-License-Identifier: GPL-2.0-or-later
"""Describe Model: the core report (core/describe.py), dltools:describemodel through processing.run, a Graphical
Modeler .model3 that runs it, and qgis_process."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from builders import conv_module, export_onnx, export_torchscript, write_emd
from dltools.core.backends.base import DeviceRequest
from dltools.core.errors import ModelDefinitionError
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.describe.report import (
    backend_info,
    describe_model,
    load_for_description,
    render_html,
    report_lines,
)
from qgis.core import QgsProcessingException
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

ALG = "dltools:describemodel"
LANDCOVER_CLASSES = [
    {"value": 0, "name": "Evergreen Forest", "color": [0, 51, 0], "hex": "#003300"},
    {"value": 1, "name": "Grassland/Herbaceous", "color": [241, 185, 137], "hex": "#f1b989"},
    {"value": 2, "name": "Bare Land", "color": [236, 236, 0], "hex": "#ecec00"},
    {"value": 3, "name": "Open Water", "color": [0, 0, 117], "hex": "#000075"},
    {"value": 4, "name": "Scrub/Shrub", "color": [102, 102, 0], "hex": "#666600"},
    {"value": 5, "name": "Impervious Surface", "color": [236, 236, 236], "hex": "#ececec"},
]
CPU = DeviceRequest("cpu", threads=1)




def describe(model, tmp_path: Path, context, **params) -> tuple[dict, str, RecordingFeedback]:
    import processing

    feedback = RecordingFeedback()
    out_json, out_html = tmp_path / "report.json", tmp_path / "report.html"
    result = processing.run(ALG, {"MODEL": str(model), "OUTPUT_JSON": str(out_json), "OUTPUT_HTML": str(out_html),
                                  **params}, context=context, feedback=feedback)
    assert result == {"OUTPUT_JSON": str(out_json), "OUTPUT_HTML": str(out_html)}
    return json.loads(out_json.read_text(encoding="utf-8")), out_html.read_text(encoding="utf-8"), feedback


def describe_error(model, tmp_path: Path, context, **params) -> str:
    import processing

    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, {"MODEL": str(model), "OUTPUT_JSON": str(tmp_path / "r.json"),
                             "OUTPUT_HTML": str(tmp_path / "r.html"), **params}, context=context)
    assert not (tmp_path / "r.json").exists()
    return str(info.value)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("describe")
    export_onnx(conv_module(3, 2, 3), folder / "net.onnx", 3, 32)
    write_emd(folder / "net.emd", "net.onnx", classes=[(0, "water", (0, 0, 255)), (1, "land <b>", (0, 128, 0))])
    return folder / "net.emd"


def _landcover_checks(report: dict) -> None:
    assert report["model_type"] == "ImageClassification"
    assert report["framework"] == "Onnx"
    assert report["model_format_kind"] == "onnx"
    assert report["model_file_status"] == "found"
    backend = report["backend"]
    assert (backend["opened"], backend["kind"], backend["device"], backend["fixed_batch"]) == (True, "onnxruntime", "cpu", 1)
    assert backend["inputs"] == [{"name": "Input3", "shape": [1, 4, 256, 256], "shape_text": "[1, 4, 256, 256]",
                                  "dtype": "float32"}]
    assert [o["shape"] for o in backend["outputs"]] == [[1, 6, 128, 128]]
    assert report["expected_input"] == {"layout": "NCHW", "shape": [None, 4, 256, 256]}
    assert report["tile"] == {"height": 256, "width": 256, "variable": False, "model_padding": 64, "batch_size": None}
    assert report["bands"] == {"indexes": [0, 1, 2, 3], "names": None, "count": 4,
                               "text": "raster bands 1, 2, 3, 4 (ExtractBands [0, 1, 2, 3], 0-based)"}
    assert report["normalization"]["rule"] == "DataRange"
    assert report["classes"] == LANDCOVER_CLASSES
    cp = {a["name"]: a for a in report["arguments"]["classify_pixels"]}
    assert (cp["padding"]["default"], cp["padding"]["fixed"], cp["batch_size"]["default"]) == (64, True, 4)
    # what a run really uses: the model's batch dimension is fixed at 1
    assert (cp["batch_size"]["used"], cp["padding"]["used"]) == ("1", "64")
    assert "fixed at 1" in cp["batch_size"]["note"]
    assert sorted(report["arguments"]) == ["classify_objects", "classify_pixels", "detect_change", "detect_objects"]
    assert report["warnings"] == []


# ------------------------------------------------------------------------------------------ through processing.run
def test_describe_esri_emd(testdata, tmp_path, context):
    emd = testdata("esri", "landcover", "trained.emd")
    report, page, feedback = describe(emd, tmp_path, context)
    _landcover_checks(report)
    assert (report["origin"], report["source"]) == ("emd", str(emd))
    assert report["model_file"] == str(emd.parent.resolve() / "trained.onnx")
    for c in LANDCOVER_CLASSES:
        assert f'<span class="swatch" style="background:{c["hex"]}"></span>' in page
        assert f"<td>{c['name']}</td>" in page
    assert "<title>Describe Model: trained.emd</title>" in page
    assert "Model type: ImageClassification" in feedback.infos
    assert "Origin: emd (Esri model definition (.emd))" in feedback.infos
    assert "Input 'Input3': [1, 4, 256, 256] float32" in feedback.infos
    assert "  3: Open Water #000075" in feedback.infos
    assert "Backend: onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 2 threads)" in feedback.infos


def test_describe_dlpk(testdata, tmp_path, context):
    folder = testdata("esri", "landcover")
    dlpk = tmp_path / "landcover.dlpk"
    with zipfile.ZipFile(dlpk, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(folder / "trained.emd", "landcover.emd")
        zf.write(folder / "trained.onnx", "trained.onnx")
    report, page, _ = describe(dlpk, tmp_path, context)
    _landcover_checks(report)
    assert (report["origin"], report["package"]) == ("dlpk", str(dlpk.resolve()))
    assert Path(report["model_file"]).name == "trained.onnx"
    assert Path(report["model_file"]).read_bytes() == (folder / "trained.onnx").read_bytes()
    assert "deep learning package (.dlpk)" in page


def test_describe_json_text_with_absolute_model_file(testdata, tmp_path, context):
    emd = testdata("esri", "landcover", "trained.emd")
    data = json.loads(emd.read_text(encoding="utf-8"))
    data["ModelFile"] = str(emd.parent.resolve() / "trained.onnx")
    report, page, _ = describe(json.dumps(data), tmp_path, context)
    _landcover_checks(report)
    assert (report["origin"], report["source"]) == ("json", "JSON text")
    assert "<title>Describe Model: model definition JSON text</title>" in page


def test_describe_json_text_whose_file_cannot_be_resolved(small_onnx, tmp_path, context):
    data = json.loads(small_onnx.read_text(encoding="utf-8"))
    report, page, feedback = describe(json.dumps(data), tmp_path, context)
    assert (report["origin"], report["model_file"], report["model_file_text"]) == ("json", None, "net.onnx")
    assert report["model_file_status"] == "cannot be resolved (relative path in a definition given as JSON text)"
    assert report["backend"] == {"opened": False, "reason": "the model file cannot be resolved"}
    assert report["warnings"] == [
        "ModelFile 'net.onnx' cannot be resolved: it is a relative path and a definition given as JSON text has no "
        "folder to resolve it against. The tools will refuse it; give an absolute path in ModelFile, or pass the .emd file"]
    assert "Backend: not opened: the model file cannot be resolved" in feedback.infos
    assert '<li class="warning">ModelFile &#x27;net.onnx&#x27; cannot be resolved' in page


def test_describe_deepness_onnx(testdata, tmp_path, context):
    onnx = testdata("deepness", "models", "dummy_segmentation_models__two_outputs_softmax_bsx2x512x512.onnx")
    report, _, _ = describe(onnx, tmp_path, context)
    assert (report["origin"], report["framework"], report["model_type"]) == ("onnx", "ONNX", "ImageClassification")
    assert [(c["value"], c["name"]) for c in report["classes"]] == [(0, "Coffee"), (1, "Tea")]
    assert report["normalization"] == {"rule": "Deepness", "text": "Deepness convention, recognised from the ONNX "
                                       "metadata (class_names, model_type): pixel values are divided by 255"}
    assert [i["shape"] for i in report["backend"]["inputs"]] == [[None, 3, 512, 512]]
    assert [o["name"] for o in report["backend"]["outputs"]] == ["output", "output2"]
    assert report["backend"]["fixed_batch"] is None


def test_describe_torchscript(tmp_path, context):
    from dltools.algorithms.trust import forget_model, trust_model
    from dltools.core.trust import file_sha256

    model = export_torchscript(conv_module(4, 3, 1), tmp_path / "net.pt")
    trust_model(file_sha256(model))  # a program: described (probed) only when trusted (test_model_trust.py)
    try:
        report, _, feedback = describe(model, tmp_path, context, DEVICE=1)
    finally:
        forget_model(file_sha256(model))
    assert (report["origin"], report["framework"], report["model_format_kind"]) == ("torchscript", "PyTorch", "torchscript")
    assert (report["backend"]["kind"], report["backend"]["device"]) == ("torch", "cpu")
    assert report["backend"]["inputs"][0]["shape"] == [None, None, None, None]
    assert report["expected_input"] == {"layout": "NCHW", "shape": [None, 4, 256, 256]}
    assert [c["name"] for c in report["classes"]] == ["class 0", "class 1", "class 2"]
    assert report["normalization"]["rule"] == "raw"
    assert report["tile"]["variable"] is True
    cp = {a["name"]: a["default"] for a in report["arguments"]["classify_pixels"]}
    assert (cp["tile_size"], cp["padding"]) == (256, 32)
    assert any(line.startswith("Backend: torch on cpu (PyTorch ") for line in feedback.infos)


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "Model file '{tmp}/none.emd' does not exist"),
    ("keras", "Framework 'Keras' is not supported: convert the model to ONNX (tf2onnx, which reads Keras .h5) and set "
              "Framework to ONNX"),
    ("no-model-type", "Key 'ModelType' is missing from the model definition (e.g. \"ImageClassification\")"),
    ("bad-json", "the model definition JSON text is not valid JSON: Expecting ',' delimiter at line 1, column 37"),
    ("missing-next-to-emd", "ModelFile 'gone.onnx' not found next to the .emd ({tmp}/gone.onnx)"),
    ("json-absolute-missing", "ModelFile '/nonexistent/gone.onnx' not found at that path (/nonexistent/gone.onnx)"),
    ("json-relative-unsupported", "Framework 'TensorFlow' is not supported: convert the model to ONNX (tf2onnx) and set "
                                  "Framework to ONNX"),
])
def test_bad_inputs(case, message, tmp_path, context):
    base = {"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "gone.onnx", "ImageHeight": 8,
            "ImageWidth": 8}
    if case == "missing":
        model = tmp_path / "none.emd"
    elif case == "keras":
        model = tmp_path / "keras.emd"
        model.write_text(json.dumps({**base, "Framework": "Keras", "ModelFile": "m.h5"}), encoding="utf-8")
    elif case == "no-model-type":
        model = json.dumps({k: v for k, v in base.items() if k != "ModelType"})
    elif case == "bad-json":
        model = '{"ModelType": "ImageClassification" "ImageHeight": 8}'
    elif case == "missing-next-to-emd":
        model = tmp_path / "gone.emd"
        model.write_text(json.dumps(base), encoding="utf-8")
    elif case == "json-absolute-missing":
        model = json.dumps({**base, "ModelFile": "/nonexistent/gone.onnx"})
    else:
        model = json.dumps({**base, "Framework": "TensorFlow", "ModelFile": "frozen.pb"})
    assert describe_error(model, tmp_path, context) == message.format(tmp=tmp_path)


def test_gpu_requested_without_gpu(small_onnx, tmp_path, context):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("ONNX Runtime has a CUDA provider here")
    message = describe_error(small_onnx, tmp_path, context, DEVICE=2)
    assert message.startswith("A GPU was requested but ONNX Runtime has no CUDA provider here (available: ")
    assert message.endswith("install 'ONNX Runtime for NVIDIA GPUs' with Install Inference Libraries "
                            "(dltools:installlibraries) and a matching CUDA, or choose CPU/Auto")


def test_temporary_outputs_when_none_are_given(small_onnx, context):
    import processing

    result = processing.run(ALG, {"MODEL": str(small_onnx)}, context=context)
    assert sorted(result) == ["OUTPUT_HTML", "OUTPUT_JSON"]
    assert Path(result["OUTPUT_HTML"]).suffix == ".html"
    report = json.loads(Path(result["OUTPUT_JSON"]).read_text(encoding="utf-8"))
    assert report["classes"][1]["name"] == "land <b>"


# ------------------------------------------------------------------------------------------ core/describe.py
def test_html_escapes_names(small_onnx):
    md = load_model_definition(small_onnx)
    page = render_html(describe_model(md, backend_info(md, CPU)))
    assert "<td>land &lt;b&gt;</td>" in page
    assert "land <b>" not in page
    assert page.count('<span class="swatch"') == 2


def test_report_is_json_ready_and_round_trips(small_onnx):
    md = load_model_definition(small_onnx)
    report = describe_model(md, backend_info(md, CPU))
    assert json.loads(json.dumps(report)) == report
    assert report["backend"]["description"] == "onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads)"
    assert report["classes"] == [{"value": 0, "name": "water", "color": [0, 0, 255], "hex": "#0000ff"},
                                 {"value": 1, "name": "land <b>", "color": [0, 128, 0], "hex": "#008000"}]
    assert report["normalization"] == {"rule": "raw", "text": "Raw values: pixel values are passed to the model unchanged"}
    assert report["extra_keys"] == []
    lines = report_lines(report)
    assert lines[:5] == ["Model type: ImageClassification", "Framework: ONNX", "Origin: emd (Esri model definition (.emd))",
                         f"Model file: {small_onnx.parent / 'net.onnx'} [found]",
                         "Backend: onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads)"]
    assert ("Arguments for Detect Change: padding 4; batch_size 4; edge_fill mirror; block_size 0; threads 0; "
            "half_precision False") in lines


def _md(**keys):
    data = {"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "m.onnx", "ImageHeight": 64,
            "ImageWidth": 48, "ExtractBands": [0, 1, 2]}
    data.update(keys)
    return load_model_definition(json.dumps(data), check_file=False)


@pytest.mark.parametrize(("keys", "rule", "text"), [
    ({"NormalizationStats": {"band_min_values": [0, 0, 0], "band_max_values": [255, 255, 1000],
                             "scaled_mean_values": [0.5, 0.5, 0.25], "scaled_std_values": [0.2, 0.2, 0.1]}},
     "NormalizationStats",
     "NormalizationStats: each band is scaled with (x - band_min) / (band_max - band_min) using band_min_values "
     "[0, 0, 0] and band_max_values [255, 255, 1000], then standardised with (x - mean) / std using scaled_mean_values "
     "[0.5, 0.5, 0.25] and scaled_std_values [0.2, 0.2, 0.1]; the lists are indexed by ExtractBands"),
    ({"DataRange": [0, 1]}, "DataRange",
     "DataRange: each band is stretched linearly to [0, 1] from 0..255 on 8-bit rasters, else from the band's "
     "minimum..maximum (GDAL statistics, NoData excluded)"),
    ({"QGISPlugin": {"divide_by_255": True, "standardization_mean": [0.4, 0.4, 0.4],
                     "standardization_std": [0.2, 0.2, 0.2]}}, "Deepness",
     "QGISPlugin.divide_by_255 / standardization_mean in the model definition: pixel values are divided by 255, "
     "then standardised with (x - mean) / std using mean [0.4, 0.4, 0.4] "
     "and std [0.2, 0.2, 0.2]"),
    ({"Framework": "arcgis.learn.models._inferencing", "ModelFile": "m.pt"}, "ImageNet",
     "ImageNet (arcgis.learn default for 3 bands without NormalizationStats): (x - 255 * mean) / (255 * std) with mean "
     "[0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225]"),
    ({"Framework": "arcgis.learn.models._inferencing", "ModelFile": "m.pt", "ExtractBands": [0, 1, 2, 3]}, "raw",
     "Raw values: pixel values are passed to the model unchanged"),
    ({}, "raw", "Raw values: pixel values are passed to the model unchanged"),
])
def test_normalisation_rule_in_words(keys, rule, text):
    report = describe_model(_md(**keys), None)
    assert report["normalization"] == {"rule": rule, "text": text}
    assert report["backend"] == {"opened": False, "reason": "the backend was not opened"}


def test_bands_by_name_and_variable_tiles():
    report = describe_model(_md(ExtractBands=["red", "nir"], SupportsVariableTileSize=True, BatchSize=2), None)
    assert report["bands"] == {"indexes": None, "names": ["red", "nir"], "count": 2,
                               "text": "raster bands named red, nir (ExtractBands by name)"}
    assert report["expected_input"] == {"layout": "NCHW", "shape": [2, 2, 64, 48]}
    lines = report_lines(report)
    assert "Tile size: 48 x 64 pixels (the model accepts other sizes: tile_size argument); batch size fixed to 2" in lines
    assert "Classes: none" in lines
    assert "<p>The definition lists no classes.</p>" in render_html(report)


def test_load_for_description_keeps_other_errors(tmp_path):
    with pytest.raises(ModelDefinitionError, match="^ModelFile '/abs/none.onnx' not found at that path"):
        load_for_description(json.dumps({"ModelType": "ImageClassification", "ModelFile": "/abs/none.onnx",
                                         "ImageHeight": 8, "ImageWidth": 8}))
    with pytest.raises(ModelDefinitionError, match="^The model definition has no ModelFile"):
        load_for_description(json.dumps({"ModelType": "ImageClassification", "ImageHeight": 8, "ImageWidth": 8}))
    md = load_for_description(json.dumps({"ModelType": "ImageClassification", "ModelFile": "rel.onnx",
                                          "ImageHeight": 8, "ImageWidth": 8}))
    assert (md.model_file, md.model_file_text, len(md.warnings)) == (None, "rel.onnx", 1)


# ------------------------------------------------------------------------------------------ Graphical Modeler
def _build_model3(path: Path) -> Path:
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
    )

    model = QgsProcessingModelAlgorithm("Describe a model", "Deep learning tests")
    model.addModelParameter(QgsProcessingParameterFile("model_definition", "Model definition"),
                            QgsProcessingModelParameter("model_definition"))
    child = QgsProcessingModelChildAlgorithm(ALG)
    child.setChildId("describe")
    child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromModelParameter("model_definition")])
    child.addParameterSources("DEVICE", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    outputs = {}
    for name, child_output in (("report_json", "OUTPUT_JSON"), ("report_html", "OUTPUT_HTML")):
        out = QgsProcessingModelOutput(name)
        out.setChildId("describe")
        out.setChildOutputName(child_output)
        outputs[name] = out
    child.setModelOutputs(outputs)
    model.addChildAlgorithm(child)
    assert model.toFile(str(path))
    return path


def test_model3_runs_describe_model(qgis_app, small_onnx, tmp_path, context):
    import processing
    from qgis.core import QgsProcessingModelAlgorithm

    path = _build_model3(tmp_path / "describe.model3")
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    assert loaded.name() == "Describe a model"
    assert [c.algorithmId() for c in loaded.childAlgorithms().values()] == [ALG]
    out_json, out_html = tmp_path / "m.json", tmp_path / "m.html"
    result = processing.run(loaded, {"model_definition": str(small_onnx), "describe:report_json": str(out_json),
                                     "describe:report_html": str(out_html)}, context=context)
    assert (result["describe:report_json"], result["describe:report_html"]) == (str(out_json), str(out_html))
    report = json.loads(out_json.read_text(encoding="utf-8"))
    assert (report["origin"], report["source"], report["model_type"]) == ("emd", str(small_onnx), "ImageClassification")
    assert report["backend"]["device"] == "cpu"
    assert report["backend"]["inputs"] == [{"name": "input", "shape": [None, 3, 32, 32], "shape_text": "[?, 3, 32, 32]",
                                            "dtype": "float32"}]
    assert [c["name"] for c in report["classes"]] == ["water", "land <b>"]
    assert out_html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------------------------------ qgis_process
needs_qgis_process = pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")


@needs_qgis_process
def test_qgis_process_plugins_enable_and_list(tmp_path):
    profile = tmp_path / "fresh-profile"
    proc = qgis_process_util.run_qgis_process(["plugins"], tmp_path, profile=profile)
    assert proc.returncode == 0, proc.stderr
    assert "  dltools" in proc.stdout.splitlines()  # found on QGIS_PLUGINPATH, but off in a new profile
    proc = qgis_process_util.run_qgis_process(["plugins", "enable", "dltools"], tmp_path, profile=profile)
    assert proc.returncode == 0, proc.stderr
    assert "* dltools" in proc.stdout.splitlines()
    ini = (profile / "profiles" / "default" / "QGIS" / "QGIS3.ini").read_text(encoding="utf-8")
    assert "dltools=true" in ini
    proc = qgis_process_util.run_qgis_process(["list"], tmp_path, profile=profile)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("Deep Learning Tools")
    assert "\tdltools:describemodel\tDescribe Model" in lines[start:]


@needs_qgis_process
def test_qgis_process_runs_describe_model_on_the_esri_emd(testdata, tmp_path):
    emd = testdata("esri", "landcover", "trained.emd")
    out_json = tmp_path / "qp.json"
    answer = qgis_process_util.qgis_process_json(ALG, {"MODEL": emd, "OUTPUT_JSON": out_json,
                                                       "OUTPUT_HTML": tmp_path / "qp.html", "DEVICE": 1}, tmp_path)
    assert answer["results"] == {"OUTPUT_JSON": str(out_json), "OUTPUT_HTML": str(tmp_path / "qp.html")}
    assert answer["algorithm_details"]["id"] == ALG
    assert answer["provider_details"]["name"] == "Deep Learning Tools"
    assert "Model type: ImageClassification" in answer["log"]["info"]
    report = json.loads(out_json.read_text(encoding="utf-8"))
    _landcover_checks(report)
    assert report["backend"]["description"] == "onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 2 threads)"


@needs_qgis_process
def test_qgis_process_error_message(tmp_path):
    bad = tmp_path / "bad.emd"
    bad.write_text('{"ModelType": "ImageClassification", "ImageHeight": "abc", "ImageWidth": 8}', encoding="utf-8")
    message = qgis_process_util.qgis_process_failure(ALG, {"MODEL": bad, "OUTPUT_JSON": tmp_path / "x.json",
                                                           "OUTPUT_HTML": tmp_path / "x.html"}, tmp_path)
    assert "Key 'ImageHeight' must be an integer, not \"abc\"" in message.splitlines()
    assert not (tmp_path / "x.json").exists()


@needs_qgis_process
def test_qgis_process_runs_a_model3_and_json_text(small_onnx, tmp_path):
    path = _build_model3(tmp_path / "describe.model3")
    out_json = tmp_path / "flow.json"
    proc = qgis_process_util.run_qgis_process(
        ["run", path, "--", f"model_definition={small_onnx}", f"describe:report_json={out_json}",
         f"describe:report_html={tmp_path / 'flow.html'}"], tmp_path)
    assert proc.returncode == 0, qgis_process_util.stderr_message(proc)
    assert json.loads(out_json.read_text(encoding="utf-8"))["classes"][0]["name"] == "water"

    data = json.loads(small_onnx.read_text(encoding="utf-8"))
    data["ModelFile"] = str(small_onnx.parent / "net.onnx")
    answer = qgis_process_util.qgis_process_json(ALG, {"MODEL": json.dumps(data), "OUTPUT_JSON": tmp_path / "t.json",
                                                       "OUTPUT_HTML": tmp_path / "t.html"}, tmp_path)
    assert "Origin: json (model definition JSON text)" in answer["log"]["info"]
    assert json.loads((tmp_path / "t.json").read_text())["backend"]["inputs"][0]["shape"] == [None, 3, 32, 32]


def test_describe_reports_the_arguments_a_run_uses(testdata, tmp_path, context):
    emd = testdata("esri", "landcover", "trained.emd")
    report, page, feedback = describe(emd, tmp_path, context, ARGUMENTS="batch_size 9;padding 10")
    cp = {a["name"]: a for a in report["arguments"]["classify_pixels"]}
    assert (cp["batch_size"]["used"], cp["padding"]["used"]) == ("1", "64")
    assert "fixed by the model; 10 would be ignored" in cp["padding"]["note"]
    assert any("batch_size 1 (the model's batch dimension is fixed at 1)" in line for line in feedback.infos)


def test_describe_custom_function_model_without_running_it(tmp_path, context):
    import prf_functions as prf

    marker = tmp_path / "ran.txt"
    emd = prf.write_function(tmp_path / "m", "NeighbourClassifier",
                             f"open({str(marker)!r}, 'w').write('ran')\n" + prf.NEIGHBOUR_CLASSIFIER)
    report, _, _ = describe(emd, tmp_path, context, ARGUMENTS="threshold 7")
    cp = {a["name"]: a for a in report["arguments"]["classify_pixels"]}
    assert list(cp) == ["threshold", "invert", "mode"]
    assert (cp["threshold"]["default"], cp["threshold"]["used"], cp["mode"]["choices"]) == ("100", "7", ["right", "left"])
    assert report["backend"]["opened"] is False and "own Python function" in report["backend"]["reason"]
    assert not marker.exists()


def test_describe_names_the_ultralytics_convention(tmp_path, context):
    """An Ultralytics YOLO export: Describe Model says what the run's log says, and from which metadata."""
    from detection_models import yolo_v8_onnx

    onnx = yolo_v8_onnx(tmp_path / "yolo.onnx", 64, {0: "car", 1: "truck"})
    report, _, _ = describe(onnx, tmp_path, context)
    assert report["normalization"] == {
        "rule": "Ultralytics", "text": "Ultralytics YOLO convention, recognised from the ONNX metadata (imgsz, names, "
                                       "stride, task): RGB scaled to 0..1 as Ultralytics trains: pixel values are "
                                       "divided by 255"}

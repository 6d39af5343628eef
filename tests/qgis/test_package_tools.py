# SPDX-License-Identifier: GPL-2.0-or-later
"""dltools:packagemodel and dltools:extractpackage through processing.run and qgis_process."""

from __future__ import annotations

import json
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, write_emd
from dltools.core.model.definition import ClassInfo
from dltools.core.model.loader import load_model_definition
from qgis.core import QgsProcessing, QgsProcessingException
from recording_feedback import RecordingFeedback

CLASSES = [(1, "Tree", (0, 255, 0)), (2, "Road", (90, 90, 90))]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An .emd whose model file lies in a sub-folder, with an inference function next to it."""
    folder = tmp_path / "model"
    (folder / "weights").mkdir(parents=True)
    weight = np.zeros((2, 3, 1, 1), np.float32)
    weight[0, 2, 0, 0] = 1.0
    weight[1, 0, 0, 0] = 1.0
    export_onnx(conv_module(3, 2, 1, weight=weight), folder / "weights" / "trees.onnx", 3, 16)
    (folder / "TreeClassifier.py").write_text("# inference function\n", encoding="utf-8")
    write_emd(folder / "trees.emd", "weights/trees.onnx", tile=16, classes=CLASSES,
              InferenceFunction="TreeClassifier.py")
    return folder


def snapshot(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def run(alg: str, params: dict, context, feedback=None) -> dict:
    import processing

    return processing.run(f"dltools:{alg}", params, context=context, feedback=feedback)


# ------------------------------------------------------------------------------------------- metadata
def test_algorithm_metadata(qgis_app):
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    package = registry.algorithmById("dltools:packagemodel")
    extract = registry.algorithmById("dltools:extractpackage")
    assert package.displayName() == "Create Deep Learning Package"
    assert extract.displayName() == "Extract Deep Learning Package"
    assert [p.name() for p in package.parameterDefinitions()] == [
        "MODEL_DEFINITION", "CLASS_INFO", "MODEL_FILE", "EXTRA_FILES", "DESCRIPTION", "SUMMARY", "TAGS", "OUTPUT"]
    assert [p.name() for p in extract.parameterDefinitions()] == ["INPUT", "OUTPUT_FOLDER"]
    assert sorted(o.name() for o in extract.outputDefinitions()) == [
        "DESCRIPTION", "EMD", "FRAMEWORK", "MODEL_FILE", "MODEL_TYPE", "OUTPUT_FOLDER", "SUMMARY", "TAGS"]
    for alg in (package, extract):
        assert alg.group() == "" and alg.groupId() == ""
        assert all(p.help() for p in alg.parameterDefinitions())
    assert package.parameterDefinition("EXTRA_FILES").layerType() == QgsProcessing.TypeFile
    assert package.parameterDefinition("OUTPUT").defaultFileExtension() == "dlpk"


# ------------------------------------------------------------------------------------------- round trip
def test_package_then_extract(qgis_context, tmp_path: Path, model_dir: Path):
    readme = tmp_path / "README.txt"
    readme.write_text("read me", encoding="utf-8")
    samples = tmp_path / "samples"
    (samples / "a").mkdir(parents=True)
    (samples / "a" / "one.png").write_bytes(b"png")
    feedback = RecordingFeedback()
    dlpk = tmp_path / "out" / "trees.dlpk"
    result = run("packagemodel", {
        "MODEL_DEFINITION": str(model_dir / "trees.emd"), "EXTRA_FILES": [str(readme), str(samples)],
        "DESCRIPTION": "Trees and roads", "SUMMARY": "A test model", "TAGS": "trees, roads", "OUTPUT": str(dlpk),
    }, qgis_context, feedback)
    assert result == {"OUTPUT": str(dlpk)}
    with zipfile.ZipFile(dlpk) as zf:
        assert sorted(zf.namelist()) == ["README.txt", "TreeClassifier.py", "samples/a/one.png", "trees.emd", "trees.onnx"]
        packaged = json.loads(zf.read("trees.emd"))
    assert packaged["ModelFile"] == "trees.onnx"
    assert packaged["InferenceFunction"] == "TreeClassifier.py"
    assert packaged["QGISPlugin"] == {"description": "Trees and roads", "summary": "A test model", "tags": "trees, roads"}
    assert feedback.errors == []
    assert "Packaging model definition trees.emd" in feedback.infos
    assert "  trees.emd (" in "\n".join(feedback.infos)
    assert sorted(p.name for p in dlpk.parent.iterdir()) == ["trees.dlpk"]  # no temporary file left

    folder = tmp_path / "extracted"
    feedback = RecordingFeedback()
    out = run("extractpackage", {"INPUT": str(dlpk), "OUTPUT_FOLDER": str(folder)}, qgis_context, feedback)
    assert out == {
        "OUTPUT_FOLDER": str(folder), "EMD": str(folder / "trees.emd"), "MODEL_FILE": str(folder / "trees.onnx"),
        "FRAMEWORK": "ONNX", "MODEL_TYPE": "ImageClassification", "DESCRIPTION": "Trees and roads",
        "SUMMARY": "A test model", "TAGS": "trees, roads",
    }
    assert snapshot(folder) == ["README.txt", "TreeClassifier.py", "samples", "samples/a", "samples/a/one.png",
                                "trees.emd", "trees.onnx"]
    assert feedback.errors == []
    assert "Framework: ONNX" in feedback.infos
    assert "Tags: trees, roads" in feedback.infos
    md = load_model_definition(folder / "trees.emd")
    assert md.model_file == (folder / "trees.onnx").resolve()
    assert md.model_file.read_bytes() == (model_dir / "weights" / "trees.onnx").read_bytes()
    assert md.classes == [ClassInfo(1, "Tree", (0, 255, 0)), ClassInfo(2, "Road", (90, 90, 90))]
    assert (md.image_height, md.extract_bands) == (16, [0, 1, 2])


def test_package_from_model_file_and_class_info(qgis_context, tmp_path: Path, model_dir: Path):
    info = tmp_path / "classInfo.json"
    info.write_text(json.dumps({"ImportDeepLearningModelToEsriExtraInfo": 0, "Classifier": "ONNX", "NumberRasterBands": 3,
                                "MiniBatchSize": 4, "Classes": [{"Value": 7, "Name": "Water", "Color": [0, 0, 255]}]}),
                    encoding="utf-8")
    dlpk = tmp_path / "water.dlpk"
    run("packagemodel", {"MODEL_FILE": str(model_dir / "weights" / "trees.onnx"), "CLASS_INFO": str(info),
                         "OUTPUT": str(dlpk)}, qgis_context)
    # the dialog's way: the model file in the one Model field (MODEL_DEFINITION) gives the same package
    same = tmp_path / "same" / "water.dlpk"
    same.parent.mkdir()
    run("packagemodel", {"MODEL_DEFINITION": str(model_dir / "weights" / "trees.onnx"), "CLASS_INFO": str(info),
                         "OUTPUT": str(same)}, qgis_context)
    with zipfile.ZipFile(dlpk) as zf, zipfile.ZipFile(same) as zs:
        assert {n: zs.read(n) for n in zs.namelist()} == {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(dlpk) as zf:
        assert sorted(zf.namelist()) == ["trees.onnx", "water.emd"]
        assert json.loads(zf.read("water.emd")) == {
            "ModelFile": "trees.onnx", "ModelType": "ImageClassification", "ImageHeight": 16, "ImageWidth": 16,
            "ExtractBands": [0, 1, 2], "Framework": "ONNX", "BatchSize": 4,
            "Classes": [{"Value": 7, "Name": "Water", "Color": [0, 0, 255]}]}
    md = load_model_definition(dlpk)
    assert md.origin == "dlpk"
    assert md.model_file.name == "trees.onnx" and md.model_file.is_file()
    assert md.classes == [ClassInfo(7, "Water", (0, 0, 255))]


def test_package_from_ecd(qgis_context, tmp_path: Path, model_dir: Path):
    from dltools.core.model.ecd_writer import write_ecd

    ecd = write_ecd(model_dir / "weights" / "trees.onnx",
                    {"ImportDeepLearningModelToEsriExtraInfo": 0, "Classifier": "ONNX", "NumberRasterBands": 3,
                     "Classes": [{"Value": 1, "Name": "Tree", "Color": [0, 255, 0]}]}, tmp_path / "ecd" / "trees.ecd")
    dlpk = tmp_path / "from_ecd.dlpk"
    feedback = RecordingFeedback()
    run("packagemodel", {"MODEL_DEFINITION": str(ecd), "EXTRA_FILES": "", "OUTPUT": str(dlpk)}, qgis_context, feedback)
    assert "Packaging classifier definition trees.ecd" in feedback.infos
    md = load_model_definition(dlpk)
    assert md.model_file.read_bytes() == (model_dir / "weights" / "trees.onnx").read_bytes()
    assert md.classes == [ClassInfo(1, "Tree", (0, 255, 0))]
    assert md.framework == "ONNX"


def test_extra_files_as_semicolon_separated_text(qgis_context, tmp_path: Path, model_dir: Path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a", encoding="utf-8")
    b.write_text("b", encoding="utf-8")
    dlpk = tmp_path / "x.dlpk"
    run("packagemodel", {"MODEL_DEFINITION": str(model_dir / "trees.emd"), "EXTRA_FILES": [f"{a};{b}"],
                         "OUTPUT": str(dlpk)}, qgis_context)
    with zipfile.ZipFile(dlpk) as zf:
        assert sorted(zf.namelist()) == ["TreeClassifier.py", "a.txt", "b.txt", "trees.onnx", "x.emd"]


def test_unrunnable_model_is_packaged_with_a_warning(qgis_context, tmp_path: Path):
    (tmp_path / "frozen.pb").write_bytes(b"tf")
    emd = write_emd(tmp_path / "tf.emd", "frozen.pb", framework="TensorFlow")
    feedback = RecordingFeedback()
    run("packagemodel", {"MODEL_DEFINITION": str(emd), "OUTPUT": str(tmp_path / "tf.dlpk")}, qgis_context, feedback)
    assert feedback.errors == [
        "The package was written, but this plugin's inference tools cannot run its model: Framework 'TensorFlow' is not "
        "supported: convert the model to ONNX (tf2onnx) and set Framework to ONNX"]
    with zipfile.ZipFile(tmp_path / "tf.dlpk") as zf:
        assert sorted(zf.namelist()) == ["frozen.pb", "tf.emd"]


# ------------------------------------------------------------------------------------------- refused packaging
@pytest.mark.parametrize("params, message", [
    ({}, "No model definition (.emd), or a model file with its class info JSON given"),
    ({"MODEL_FILE": "{model}"}, "No class info JSON given: the model file 'trees.onnx' needs one (CLASS_INFO)"),
    ({"MODEL_DEFINITION": "{emd}", "MODEL_FILE": "{model}"},
     "Give either a model definition, or a model file with its class info JSON, not both"),
    ({"MODEL_DEFINITION": "{model}"}, "No class info JSON given: the model file 'trees.onnx' needs one (CLASS_INFO)"),
    ({"MODEL_DEFINITION": "{info}"}, "'classInfo.json' is a class info JSON, not a model definition"),
    ({"MODEL_DEFINITION": "{broken}"}, "Cannot read model definition '{broken}': Expecting value"),
    ({"MODEL_DEFINITION": "{emd}", "EXTRA_FILES": ["{missing}"]}, "Extra file '{missing}' not found"),
    ({"MODEL_DEFINITION": "{emd}", "EXTRA_FILES": ["{emd}"]},
     "Extra file 'trees.emd' is a second .emd: a package holds exactly one"),
])
def test_refused_package_inputs(qgis_context, tmp_path: Path, model_dir: Path, params, message):
    values = {"emd": str(model_dir / "trees.emd"), "model": str(model_dir / "weights" / "trees.onnx"),
              "missing": str(tmp_path / "nothing.txt"), "info": str(tmp_path / "classInfo.json"),
              "broken": str(tmp_path / "broken.emd")}
    (tmp_path / "classInfo.json").write_text('{"ImportDeepLearningModelToEsriExtraInfo": 0}', encoding="utf-8")
    (tmp_path / "broken.emd").write_text("not json", encoding="utf-8")

    def fill(v):
        return [fill(x) for x in v] if isinstance(v, list) else v.format(**values)

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException) as exc:
        run("packagemodel", dict({k: fill(v) for k, v in params.items()}, OUTPUT=str(out / "m.dlpk")), qgis_context)
    assert str(exc.value).startswith(message.format(**values)), str(exc.value)
    assert list(out.iterdir()) == []


def test_missing_referenced_file_is_refused(qgis_context, tmp_path: Path, model_dir: Path):
    (model_dir / "TreeClassifier.py").unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException) as exc:
        run("packagemodel", {"MODEL_DEFINITION": str(model_dir / "trees.emd"), "OUTPUT": str(out / "m.dlpk")}, qgis_context)
    assert str(exc.value) == (f"InferenceFunction 'TreeClassifier.py' referenced by 'trees.emd' not found "
                              f"({model_dir / 'TreeClassifier.py'}): the package would be incomplete")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------- refused extraction
def _zip(path: Path, members: list[tuple[str, bytes]], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.emd", json.dumps({"ModelType": "ImageClassification", "ModelFile": "m.onnx",
                                         "ImageHeight": 8, "ImageWidth": 8}))
        for name, data in members:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("kind, message", [
    ("slip", "Package 'bad.dlpk' contains a path leaving its folder ('../escaped.txt'): refused"),
    ("absolute", "Package 'bad.dlpk' contains an absolute path '/tmp/dltools-absolute.txt': refused"),
    ("symlink", "Package 'bad.dlpk' contains a symbolic link 'link': refused"),
    ("bomb", "Package 'bad.dlpk' would unpack to 80 MB from 0.1 MB (ratio over 200): refused as a possible zip bomb"),
])
def test_unsafe_packages_are_refused(qgis_context, tmp_path: Path, kind, message):
    work = tmp_path / "work"
    work.mkdir()
    members = {"slip": [("../escaped.txt", b"x")], "absolute": [("/tmp/dltools-absolute.txt", b"x")],
               "symlink": [], "bomb": [("zeros.bin", bytes(80 * 1024**2))]}[kind]
    bad = _zip(tmp_path / "bad.dlpk", members, symlink="link" if kind == "symlink" else None)
    before = snapshot(tmp_path)
    with pytest.raises(QgsProcessingException) as exc:
        run("extractpackage", {"INPUT": str(bad), "OUTPUT_FOLDER": str(work / "out")}, qgis_context)
    assert str(exc.value) == message
    assert snapshot(tmp_path) == before
    assert not Path("/tmp/dltools-absolute.txt").exists()


def test_extract_refuses_a_non_empty_folder(qgis_context, tmp_path: Path):
    dlpk = _zip(tmp_path / "ok.dlpk", [("m.onnx", b"x")])
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(QgsProcessingException) as exc:
        run("extractpackage", {"INPUT": str(dlpk), "OUTPUT_FOLDER": str(folder)}, qgis_context)
    assert str(exc.value) == f"Output folder '{folder}' is not empty: choose an empty or new folder"
    assert snapshot(folder) == ["keep.txt"]


def test_extract_to_temporary_folder_reports_unrunnable_model(qgis_context, tmp_path: Path):
    dlpk = _zip(tmp_path / "ok.dlpk", [("m.onnx", b"not onnx")])
    feedback = RecordingFeedback()
    out = run("extractpackage", {"INPUT": str(dlpk), "OUTPUT_FOLDER": QgsProcessing.TEMPORARY_OUTPUT}, qgis_context,
              feedback)
    folder = Path(out["OUTPUT_FOLDER"])
    assert snapshot(folder) == ["m.emd", "m.onnx"]
    assert out["EMD"] == str(folder / "m.emd")
    assert out["MODEL_FILE"] == str((folder / "m.onnx").resolve())
    assert (out["FRAMEWORK"], out["MODEL_TYPE"], out["DESCRIPTION"], out["TAGS"]) == ("", "ImageClassification", "", "")
    assert feedback.errors == []


# ------------------------------------------------------------------------------------------- qgis_process
def test_qgis_process_package_and_extract(tmp_path: Path, model_dir: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
    import qgis_process_util as util

    if not util.available():
        pytest.skip("qgis_process is not installed")
    dlpk = tmp_path / "qp.dlpk"
    notes, more = tmp_path / "notes.txt", tmp_path / "more.txt"
    notes.write_text("notes", encoding="utf-8")
    more.write_text("more", encoding="utf-8")
    answer = util.qgis_process_json("dltools:packagemodel", {
        "MODEL_DEFINITION": model_dir / "trees.emd", "EXTRA_FILES": [notes, more], "TAGS": "qp", "OUTPUT": dlpk},
        tmp_path)
    assert answer["results"] == {"OUTPUT": str(dlpk)}
    with zipfile.ZipFile(dlpk) as zf:
        assert sorted(zf.namelist()) == ["TreeClassifier.py", "more.txt", "notes.txt", "qp.emd", "trees.onnx"]

    folder = tmp_path / "qp"
    answer = util.qgis_process_json("dltools:extractpackage", {"INPUT": dlpk, "OUTPUT_FOLDER": folder}, tmp_path)
    assert answer["results"] == {
        "OUTPUT_FOLDER": str(folder), "EMD": str(folder / "qp.emd"), "MODEL_FILE": str(folder / "trees.onnx"),
        "FRAMEWORK": "ONNX", "MODEL_TYPE": "ImageClassification", "DESCRIPTION": "", "SUMMARY": "", "TAGS": "qp"}
    assert "Tags: qp" in answer["log"]["info"]
    assert snapshot(folder) == ["TreeClassifier.py", "more.txt", "notes.txt", "qp.emd", "trees.onnx"]

    info = tmp_path / "classInfo.json"  # the dialog's way through qgis_process: a model file in MODEL_DEFINITION
    info.write_text(json.dumps({"ImportDeepLearningModelToEsriExtraInfo": 0, "Classifier": "ONNX",
                                "NumberRasterBands": 3,
                                "Classes": [{"Value": 7, "Name": "Water", "Color": [0, 0, 255]}]}), encoding="utf-8")
    bare = tmp_path / "bare.dlpk"
    answer = util.qgis_process_json("dltools:packagemodel", {
        "MODEL_DEFINITION": model_dir / "weights" / "trees.onnx", "CLASS_INFO": info, "OUTPUT": bare}, tmp_path)
    assert answer["results"] == {"OUTPUT": str(bare)}
    with zipfile.ZipFile(bare) as zf:
        assert sorted(zf.namelist()) == ["bare.emd", "trees.onnx"]

    slip = _zip(tmp_path / "slip.dlpk", [("../escaped.txt", b"x")])
    def outside_profile() -> list[str]:
        return [p for p in snapshot(tmp_path) if not p.startswith("qgis-profile")]

    before = outside_profile()
    message = util.qgis_process_failure("dltools:extractpackage", {"INPUT": slip, "OUTPUT_FOLDER": tmp_path / "slip"},
                                        tmp_path)
    assert "Package 'slip.dlpk' contains a path leaving its folder ('../escaped.txt'): refused" in message
    assert outside_profile() == before


# ------------------------------------------------------------------------------------------- cancel
def test_cancelled_packaging_and_extraction_leave_nothing(qgis_context, tmp_path: Path, model_dir: Path):
    out = tmp_path / "out"
    out.mkdir()
    feedback = RecordingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException) as exc:
        run("packagemodel", {"MODEL_DEFINITION": str(model_dir / "trees.emd"), "OUTPUT": str(out / "m.dlpk")},
            qgis_context, feedback)
    assert str(exc.value) == "The run was cancelled. No output was kept."
    assert list(out.iterdir()) == []

    dlpk = run("packagemodel", {"MODEL_DEFINITION": str(model_dir / "trees.emd"), "OUTPUT": str(out / "m.dlpk")},
               qgis_context)["OUTPUT"]
    feedback = RecordingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException) as exc:
        run("extractpackage", {"INPUT": dlpk, "OUTPUT_FOLDER": str(out / "folder")}, qgis_context, feedback)
    assert str(exc.value) == "The run was cancelled. No output was kept."
    assert snapshot(out) == ["m.dlpk"]


def test_progress_reaches_the_feedback(qgis_context, tmp_path: Path, model_dir: Path):
    seen: list[float] = []
    feedback = RecordingFeedback()
    feedback.progressChanged.connect(seen.append)
    dlpk = tmp_path / "m.dlpk"
    run("packagemodel", {"MODEL_DEFINITION": str(model_dir / "trees.emd"), "OUTPUT": str(dlpk)}, qgis_context, feedback)
    assert seen[0] == 10 and seen[-1] == 100
    assert 90 in seen  # the last byte written maps to 90 (the read-back check follows)
    assert seen == sorted(seen)

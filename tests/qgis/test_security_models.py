# SPDX-License-Identifier: GPL-2.0-or-later
"""Untrusted model content never runs: hostile .pt2, TorchScript and .dlpk files through processing.run.

Each hostile file would write or read a marker file outside the run if the plugin trusted it; every test asserts
the clear refusal, that the marker is untouched, that no output was written and that the inputs are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import evil_models
import numpy as np
import pytest
from builders import read_raster, write_emd, write_raster
from qgis.core import QgsProcessingException
from recording_feedback import RecordingFeedback

ALG = "dltools:classifypixels"
CLASSES = [(0, "zero", (255, 0, 0)), (1, "one", (0, 255, 0))]


def digest(*paths: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def raster(tmp_path) -> Path:
    image = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8) % 7
    return write_raster(tmp_path / "in.tif", image)


def classify(context, **params):
    """Classify Pixels with the model's code allowed: these files are refused by the second layer (the archive
    pre-check and the operator walk), which holds for trusted files too (tests/qgis/test_model_trust.py: untrusted
    they are never opened at all)."""
    import processing

    return processing.run(ALG, {"ALLOW_CUSTOM_CODE": True, **params}, context=context, feedback=RecordingFeedback())


def refused(context, raster: Path, model: Path, out: Path, *watch: Path) -> str:
    before = digest(raster, model, *watch)
    with pytest.raises(QgsProcessingException) as info:
        classify(context, INPUT=str(raster), MODEL=str(model), OUTPUT=str(out))
    assert digest(raster, model, *watch) == before
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.stem}")]
    return str(info.value)


def torch_emd(folder: Path, model_file: str) -> Path:
    return write_emd(folder / "model.emd", model_file, framework="PyTorch", tile=8, bands=(0, 1), classes=CLASSES)


def test_pt2_with_pickled_sample_inputs_is_refused_without_unpickling(context, tmp_path, raster):
    marker = tmp_path / "marker.txt"
    evil_models.pt2_with_pickled_sample_inputs(tmp_path / "evil.pt2", marker)
    message = refused(context, raster, torch_emd(tmp_path, "evil.pt2"), tmp_path / "out.tif", tmp_path / "evil.pt2")
    assert not marker.exists()
    assert message.startswith("torch.export program 'evil.pt2' is refused: its sample inputs ")
    assert "would be unpickled to load it, and unpickling runs arbitrary code from the file" in message


def test_pt2_with_pickled_weights_is_refused_without_unpickling(context, tmp_path, raster):
    marker = tmp_path / "marker.txt"
    evil_models.pt2_with_pickled_weights(tmp_path / "evil.pt2", marker)
    message = refused(context, raster, torch_emd(tmp_path, "evil.pt2"), tmp_path / "out.tif")
    assert not marker.exists()
    assert message.startswith("torch.export program 'evil.pt2' is refused: 'scale' (")
    assert "would be unpickled" in message


def test_pt2_given_directly_as_model_is_refused_too(context, tmp_path, raster):
    marker = tmp_path / "marker.txt"
    model = evil_models.pt2_with_pickled_sample_inputs(tmp_path / "direct.pt2", marker)
    message = refused(context, raster, model, tmp_path / "out.tif")
    assert not marker.exists() and "would be unpickled" in message


def test_clean_pt2_still_runs(context, tmp_path, raster):
    evil_models.exported_program(tmp_path / "good.pt2")
    out = tmp_path / "out.tif"
    classify(context, INPUT=str(raster), MODEL=str(torch_emd(tmp_path, "good.pt2")), OUTPUT=str(out))
    image = read_raster(raster).astype(np.float32)
    assert np.array_equal(read_raster(out), np.argmax(image[:2] * np.array([1, 2]).reshape(2, 1, 1), axis=0))


def test_torchscript_reading_a_file_is_refused_before_it_runs(context, tmp_path, raster):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x07\x09")
    evil_models.torchscript_reading(tmp_path / "reader.pt", secret)
    message = refused(context, raster, torch_emd(tmp_path, "reader.pt"), tmp_path / "out.tif", secret)
    assert message == ("Model 'reader.pt' is refused: method '_Reader.forward' uses the operator 'aten::from_file', "
                       "and it reads (and with shared=True writes) a file on disk. Models may only compute on tensors; "
                       "export the network again without it (see 'Security and safety' in the README)")


def test_torchscript_saving_in_a_helper_method_is_refused(context, tmp_path, raster):
    marker = tmp_path / "marker.bin"
    evil_models.torchscript_saving(tmp_path / "saver.pt", marker)
    message = refused(context, raster, torch_emd(tmp_path, "saver.pt"), tmp_path / "out.tif")
    assert "uses the operator 'aten::save', and it writes a file on disk" in message
    assert "'saver.pt'" in message and not marker.exists()


def test_torchscript_with_setstate_is_refused_before_loading(context, tmp_path, raster):
    marker = tmp_path / "marker.bin"
    evil_models.torchscript_with_setstate(tmp_path / "state.pt", marker)
    marker.unlink(missing_ok=True)  # torch.jit.script itself does not run __setstate__; saving might
    message = refused(context, raster, torch_emd(tmp_path, "state.pt"), tmp_path / "out.tif")
    assert message.startswith("Model 'state.pt' is refused: its TorchScript code ")
    assert "defines __setstate__, which TorchScript runs while loading the file" in message
    assert not marker.exists()


def test_operator_allow_list():
    from dltools.core.backends.torch_safety import check_operator
    from dltools.core.errors import BackendError

    for ok in ("aten::conv2d", "prim::GetAttr", "prims::add", "quantized::conv2d", "torchvision::nms"):
        check_operator(ok, "forward", Path("m.pt"))
    for bad, why in (("c10d::allreduce_", "namespace 'c10d' is not one of the tensor-math namespaces"),
                     ("prim::rpc_async", "network"), ("prim::PythonOp", "runs Python code"),
                     ("python::os.system", "namespace 'python'")):
        with pytest.raises(BackendError, match=why):
            check_operator(bad, "forward", Path("m.pt"))


# ---------------------------------------------------------------------------------------------- packages
def _package(path: Path, emd: dict, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{path.stem}.emd", json.dumps(emd))
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("key,value", [
    ("ModelFile", "../outside.onnx"),
    ("ModelFile", "ABSOLUTE"),
    ("ModelFile", "sub/../../outside.onnx"),
    ("InferenceFunction", "../outside.py"),
    ("TorchScript", {"CPU": "../outside.pt"}),
])
def test_package_reference_outside_the_package_is_refused(context, tmp_path, raster, key, value):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"not read")
    if value == "ABSOLUTE":
        value = str(outside)
    emd = {"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "inside.onnx", "ImageHeight": 8,
           "ImageWidth": 8, "ExtractBands": [0, 1], "Classes": [{"Value": 0, "Name": "a"}, {"Value": 1, "Name": "b"}]}
    emd[key] = value
    package = _package(tmp_path / "evil.dlpk", emd, {"inside.onnx": b"x"})
    message = refused(context, raster, package, tmp_path / "out.tif", outside)
    shown = key if key != "TorchScript" else "TorchScript.CPU"
    shown_value = value if not isinstance(value, dict) else value["CPU"]
    assert message.startswith(f"Package 'evil.dlpk': {shown} '{shown_value}' ")
    assert message.endswith("must be inside the package: refused") or message.endswith("must be inside it: refused")


def test_create_package_refuses_a_link_out_of_an_extra_folder(context, tmp_path):
    import processing

    folder = tmp_path / "extras"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")
    private = tmp_path / "private.txt"
    private.write_text("secret")
    os.symlink(private, folder / "leak.txt")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=CLASSES)
    out = tmp_path / "out.dlpk"
    with pytest.raises(QgsProcessingException) as info:
        processing.run("dltools:packagemodel",
                       {"MODEL_DEFINITION": str(emd), "EXTRA_FILES": [str(folder)], "OUTPUT": str(out)},
                       context=context, feedback=RecordingFeedback())
    assert str(info.value).startswith(f"Extra folder '{folder}' holds the symbolic link 'leak.txt' pointing outside "
                                      f"the folder (to '{private}'): refused")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_create_package_stores_an_inside_link_as_a_copy_and_says_so(context, tmp_path):
    import processing

    folder = tmp_path / "extras"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("kept")
    os.symlink("notes.txt", folder / "alias.txt")
    os.symlink("sub", folder / "subalias")
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=CLASSES)
    out = tmp_path / "out.dlpk"
    feedback = RecordingFeedback()
    processing.run("dltools:packagemodel",
                   {"MODEL_DEFINITION": str(emd), "EXTRA_FILES": [str(folder)], "OUTPUT": str(out)},
                   context=context, feedback=feedback)
    with zipfile.ZipFile(out) as zf:
        assert zf.read("extras/alias.txt") == b"kept" and zf.read("extras/notes.txt") == b"kept"
        assert not [n for n in zf.namelist() if "subalias" in n]
        assert all((i.external_attr >> 16) & 0o170000 != 0o120000 for i in zf.infolist())
    assert "Stored the symbolic link 'extras/alias.txt' as a copy of 'notes.txt' (links are not kept in a package)" \
        in feedback.errors
    assert any("Skipped the symbolic link 'extras/subalias'" in m for m in feedback.errors)


def test_real_networks_pass_the_inspection(tmp_path):
    """No false alarms: torchvision networks (detection post-processing included) and overloaded methods pass."""
    import torch
    import torchvision
    from dltools.core.backends.torch_safety import check_torchscript_module

    for name, net in (("resnet18", torchvision.models.resnet18()), ("lstm", torch.nn.LSTM(4, 8)),
                      ("ssdlite", torchvision.models.detection.ssdlite320_mobilenet_v3_large(
                          weights=None, weights_backbone=None))):
        path = tmp_path / f"{name}.pt"
        torch.jit.save(torch.jit.script(net.eval()), str(path))
        check_torchscript_module(torch.jit.load(str(path)), path)


def test_a_module_that_cannot_be_inspected_is_refused():
    from dltools.core.backends.torch_safety import check_torchscript_module
    from dltools.core.errors import BackendError

    class Odd:
        def modules(self):
            raise RuntimeError("unreadable graph")

    with pytest.raises(BackendError, match=r"^Model 'odd.pt' is refused: its TorchScript graphs could not be "
                                           r"inspected \(RuntimeError: unreadable graph\), so it is not run$"):
        check_torchscript_module(Odd(), Path("odd.pt"))


def test_extract_package_refuses_a_reference_outside_and_leaves_nothing(context, tmp_path):
    import processing

    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"not returned")
    emd = {"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "../outside.onnx",
           "ImageHeight": 8, "ImageWidth": 8}
    package = _package(tmp_path / "evil.dlpk", emd, {"inside.onnx": b"x"})
    target = tmp_path / "extracted"
    with pytest.raises(QgsProcessingException) as info:
        processing.run("dltools:extractpackage", {"INPUT": str(package), "OUTPUT_FOLDER": str(target)},
                       context=context, feedback=RecordingFeedback())
    assert str(info.value) == ("Package 'evil.dlpk': ModelFile '../outside.onnx' points outside the package; every "
                               "file a package references must be inside it: refused")
    assert not target.exists() and outside.read_bytes() == b"not returned"


def test_pt2_calling_an_operator_outside_the_tensor_namespaces_is_refused(context, tmp_path, raster, monkeypatch):
    """A torch.export graph is inspected like TorchScript: an op from another namespace never runs. In-process:
    the test's operator is registered in this Python only (a child process could not even load the program)."""
    import torch

    monkeypatch.setenv("DLTOOLS_IN_PROCESS", "1")

    marker = tmp_path / "marker.txt"

    @torch.library.custom_op("dltoolstest::touch", mutates_args=(), schema="(Tensor x) -> Tensor")
    def touch(x):
        marker.write_text("ran")
        return x.clone()

    @touch.register_fake
    def _(x):
        return torch.empty_like(x)

    class Toucher(torch.nn.Module):
        def forward(self, x):
            return torch.ops.dltoolstest.touch(x[:, :2])

    program = torch.export.export(Toucher(), (torch.zeros(1, 2, 8, 8),))
    torch.export.save(program, str(tmp_path / "touch.pt2"))
    marker.unlink(missing_ok=True)
    message = refused(context, raster, torch_emd(tmp_path, "touch.pt2"), tmp_path / "out.tif")
    assert message.startswith("Model 'touch.pt2' is refused: node ")
    assert "uses the operator 'dltoolstest::touch', and its namespace 'dltoolstest' is not one of the tensor-math " \
           "namespaces" in message
    assert not marker.exists()

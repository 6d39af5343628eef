# SPDX-License-Identifier: GPL-2.0-or-later
"""Code-bearing models (TorchScript, .pt2) run only when the user trusts them.

Each hostile file is built here and first proven hostile outside the plugin (a bare ``torch.jit.load`` in a child
Python writes the marker, or crashes); then the plugin, untrusted, refuses it before torch opens it, through
processing.run, Describe Model and the dialog's summary and argument table, and the marker never appears.
Trusted, the operator walk and the archive pre-check still stop the ones that touch files (the second layer).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import evil_torchscript
import numpy as np
import pytest
from builders import export_torchscript, read_raster, write_emd, write_raster
from qgis.core import QgsProcessingException, QgsSettings
from recording_feedback import RecordingFeedback

CLASSES = [(0, "zero", (255, 0, 0)), (1, "one", (0, 255, 0))]
HOSTILE = {
    "class_in_list": evil_torchscript.torchscript_class_in_list,
    "forward_hook": evil_torchscript.torchscript_forward_hook,
    "setstate_split_def": evil_torchscript.torchscript_setstate_split_def,
}
TRUST_SAYS = "it contains code, which runs with your permissions when it is loaded"


@pytest.fixture(autouse=True)
def _no_saved_trust(qgis_app):
    """Every test starts with no model trusted and the provider setting off, and leaves them so."""
    from dltools.algorithms.trust import ALLOW_CUSTOM_CODE_SETTING, TRUSTED_MODELS_KEY

    settings = QgsSettings()
    keys = (TRUSTED_MODELS_KEY, f"Processing/Configuration/{ALLOW_CUSTOM_CODE_SETTING}")
    saved = {k: settings.value(k) for k in keys}
    for k in keys:
        settings.remove(k)
    yield
    for k, v in saved.items():
        settings.remove(k) if v is None else settings.setValue(k, v)


@pytest.fixture
def raster(tmp_path) -> Path:
    return write_raster(tmp_path / "in.tif", (np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8) % 7))


def torch_emd(folder: Path, model_file: str) -> Path:
    return write_emd(folder / "model.emd", model_file, framework="PyTorch", tile=8, bands=(0, 1), classes=CLASSES)


def loaded_by_torch(path: Path) -> subprocess.CompletedProcess:
    """torch.jit.load and one call in a child Python, as a careless loader would: proves a file hostile."""
    code = f"import torch; torch.jit.load({str(path)!r})(torch.zeros(1, 2, 8, 8))"
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)


def classify(context, **params) -> dict:
    import processing

    return processing.run("dltools:classifypixels", params, context=context, feedback=RecordingFeedback())


def refusal(context, raster: Path, model: Path, out: Path, **params) -> str:
    with pytest.raises(QgsProcessingException) as info:
        classify(context, INPUT=str(raster), MODEL=str(model), OUTPUT=str(out), **params)
    assert not out.exists() and not list(out.parent.glob(f".{out.stem}*"))
    return str(info.value)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_torchscript_is_refused_untrusted_before_torch_opens_it(context, tmp_path, raster, name):
    marker = tmp_path / "marker.bin"
    model = HOSTILE[name](tmp_path / "evil.pt", marker)
    marker.unlink(missing_ok=True)
    result = loaded_by_torch(model)
    assert result.returncode == 0 and marker.exists(), result.stderr[-500:]  # the file is hostile
    marker.unlink()
    for given in (torch_emd(tmp_path, "evil.pt"), model):  # named by an .emd, or given directly
        message = refusal(context, raster, given, tmp_path / "out.tif")
        assert message.startswith("Model 'evil.pt' is a TorchScript program: " + TRUST_SAYS), message
        assert "ALLOW_CUSTOM_CODE=true" in message and "SHA-256 " in message
        assert not marker.exists()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_trusted_hostile_torchscript_is_still_stopped_by_the_second_layer(context, tmp_path, raster, name):
    marker = tmp_path / "marker.bin"
    HOSTILE[name](tmp_path / "evil.pt", marker)
    marker.unlink(missing_ok=True)
    message = refusal(context, raster, torch_emd(tmp_path, "evil.pt"), tmp_path / "out.tif", ALLOW_CUSTOM_CODE=True)
    assert message.startswith("Model 'evil.pt' is refused: "), message
    assert ("aten::save" in message) if name != "setstate_split_def" else ("defines __setstate__" in message)
    assert not marker.exists()


def test_setstate_in_a_code_file_over_64_mib_is_refused_trusted_or_not(context, tmp_path, raster):
    marker = tmp_path / "marker.bin"
    evil_torchscript.torchscript_setstate_in_large_code(tmp_path / "big.pt", marker)
    marker.unlink(missing_ok=True)
    emd = torch_emd(tmp_path, "big.pt")
    assert TRUST_SAYS in refusal(context, raster, emd, tmp_path / "out.tif")
    message = refusal(context, raster, emd, tmp_path / "out.tif", ALLOW_CUSTOM_CODE=True)
    assert message.startswith("Model 'big.pt' is refused: its TorchScript code ") and "__setstate__" in message
    assert not marker.exists()


def test_an_archive_that_crashes_torch_jit_load_is_never_opened_untrusted(context, tmp_path, raster):
    model = evil_torchscript.torchscript_blank_lines(tmp_path / "crash.pt")
    assert loaded_by_torch(model).returncode < 0  # torch.jit.load dies of a signal
    assert TRUST_SAYS in refusal(context, raster, model, tmp_path / "out.tif")


def _clean_model(tmp_path: Path) -> Path:
    import torch

    class Pointwise(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2] * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)

    return export_torchscript(Pointwise(), tmp_path / "good.pt")


def test_trust_by_sha256_runs_that_file_only(context, tmp_path, raster):
    from dltools.algorithms.trust import trust_model
    from dltools.core.trust import file_sha256

    model = _clean_model(tmp_path)
    emd = torch_emd(tmp_path, "good.pt")
    assert TRUST_SAYS in refusal(context, raster, emd, tmp_path / "out.tif")
    trust_model(file_sha256(model))
    out = tmp_path / "out.tif"
    classify(context, INPUT=str(raster), MODEL=str(emd), OUTPUT=str(out))
    image = read_raster(raster).astype(np.float32)
    assert np.array_equal(read_raster(out), np.argmax(image[:2] * np.array([1, 2]).reshape(2, 1, 1), axis=0))
    with open(model, "ab") as f:  # one byte more: another program, not trusted
        f.write(b"\0")
    assert TRUST_SAYS in refusal(context, raster, emd, tmp_path / "out2.tif")


def test_provider_setting_trusts_every_model(context, tmp_path, raster):
    from dltools.algorithms.trust import ALLOW_CUSTOM_CODE_SETTING

    _clean_model(tmp_path)
    QgsSettings().setValue(f"Processing/Configuration/{ALLOW_CUSTOM_CODE_SETTING}", True)
    out = tmp_path / "out.tif"
    classify(context, INPUT=str(raster), MODEL=str(torch_emd(tmp_path, "good.pt")), OUTPUT=str(out))
    assert out.exists()


def test_allow_custom_code_is_relabelled_not_renamed(qgis_app):
    from qgis.core import QgsApplication

    for name in ("classifypixels", "detectobjects", "detectchange", "classifyobjects"):
        alg = QgsApplication.processingRegistry().algorithmById(f"dltools:{name}")
        param = alg.parameterDefinition("ALLOW_CUSTOM_CODE")
        assert param.description() == "Allow the model's own code (Python or TorchScript)", name
        assert "TorchScript" in param.help() and "SHA-256" in param.help()


# ------------------------------------------------------------------------------- Describe Model, the dialog
def test_describe_model_never_opens_an_untrusted_program(context, tmp_path):
    import json

    import processing

    marker = tmp_path / "marker.bin"
    model = evil_torchscript.torchscript_forward_hook(tmp_path / "evil.pt", marker)
    marker.unlink(missing_ok=True)
    with pytest.raises(QgsProcessingException) as info:  # a plain file without dltools.json: would need a probe run
        processing.run("dltools:describemodel", {"MODEL": str(model), "OUTPUT_JSON": str(tmp_path / "r.json"),
                                                 "OUTPUT_HTML": str(tmp_path / "r.html")}, context=context)
    assert TRUST_SAYS in str(info.value) and "code files" in str(info.value) and "it was not opened" in str(info.value)
    out_json = tmp_path / "r2.json"
    processing.run("dltools:describemodel", {"MODEL": str(torch_emd(tmp_path, "evil.pt")), "OUTPUT_JSON": str(out_json),
                                             "OUTPUT_HTML": str(tmp_path / "r2.html")}, context=context)
    backend = json.loads(out_json.read_text())["backend"]
    assert backend["opened"] is False and "opened only when you trust it" in backend["reason"]
    assert not marker.exists()


def test_dialog_summary_and_argument_table_never_open_an_untrusted_program(qgis_app, tmp_path):
    from dltools.algorithms.model_summary import model_summary, table_definition
    from dltools.algorithms.trust import trust_model

    marker = tmp_path / "marker.bin"
    model = evil_torchscript.torchscript_forward_hook(tmp_path / "evil.pt", marker)
    marker.unlink(missing_ok=True)
    text, md, untrusted = model_summary(str(model))
    assert md is None and TRUST_SAYS in text and untrusted[0] == str(model) and len(untrusted[1]) == 64
    md, note = table_definition(str(model))
    assert md is None and note == "are read from the model once you trust its code"
    text, md, untrusted = model_summary(str(torch_emd(tmp_path, "evil.pt")))  # the .emd is data: shown, not run
    assert md is not None and "This model contains code" in text and len(untrusted[1]) == 64
    assert not marker.exists()
    trust_model(untrusted[1])
    text, md, untrusted = model_summary(str(torch_emd(tmp_path, "evil.pt")))
    assert untrusted is None and "This model contains code" not in text
    assert not marker.exists()  # trusting shows the model; it still does not run it


# ------------------------------------------------------------------------------------------ a model's Python function
def _function_case(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A model whose own Python function (NeighbourClassifier.py) labels each pixel by its right neighbour."""
    import prf_functions as prf

    rng = np.random.default_rng(3)
    arr = np.stack([rng.integers(1, 50, (19, 23)), rng.integers(1, 250, (19, 23))]).astype(np.uint16)
    raster = write_raster(tmp_path / "in.tif", arr)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    right = np.zeros((19, 23))
    right[:, :-1] = arr[1][:, 1:]
    right[:, -1] = arr[1][:, -2]  # the engine mirrors past the raster's edge
    return raster, emd, (1 + (right > 150)).astype(np.uint8)


def test_a_models_python_function_is_trusted_by_the_digest_of_its_py_files(context, tmp_path):
    """The dialog offers "This model contains code. Run it?" for a model's own function as for TorchScript; the
    answer (the SHA-256 of the .py files in the function's folder) lets processing.run run it without
    ALLOW_CUSTOM_CODE, in the child process; a changed or added .py there is untrusted again."""
    from dltools.algorithms.model_summary import model_summary
    from dltools.algorithms.trust import forget_model, trust_model

    raster, emd, expected = _function_case(tmp_path)
    params = {"INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "threshold 150"}
    text, md, untrusted = model_summary(str(emd))
    assert md is not None and "This model contains code (its own Python function, NeighbourClassifier.py" in text
    assert untrusted[0].endswith("NeighbourClassifier.py") and len(untrusted[1]) == 64
    with pytest.raises(QgsProcessingException, match="trust this model's code in the tool's dialog") as info:
        classify(context, **params, OUTPUT=str(tmp_path / "a.tif"))
    assert "ALLOW_CUSTOM_CODE" in str(info.value) and not (tmp_path / "a.tif").exists()
    trust_model(untrusted[1])
    try:
        text, md, again = model_summary(str(emd))
        assert again is None and "This model contains code" not in text
        result = classify(context, **params, OUTPUT=str(tmp_path / "b.tif"))
        assert np.array_equal(read_raster(result["OUTPUT"]), expected)
        (emd.parent / "helper.py").write_text("X = 1\n", encoding="utf-8")  # new code beside the function
        text, md, changed = model_summary(str(emd))
        assert changed is not None and changed[1] != untrusted[1] and "This model contains code" in text
        with pytest.raises(QgsProcessingException, match="ALLOW_CUSTOM_CODE"):
            classify(context, **params, OUTPUT=str(tmp_path / "c.tif"))
    finally:
        forget_model(untrusted[1])


def test_a_trusted_torchscript_digest_does_not_trust_a_function(context, tmp_path):
    """Trust is per digest: trusting some other file's SHA-256 lets no function run."""
    from dltools.algorithms.trust import trust_model

    raster, emd, _ = _function_case(tmp_path)
    trust_model("0" * 64)
    with pytest.raises(QgsProcessingException, match="ALLOW_CUSTOM_CODE"):
        classify(context, INPUT=str(raster), MODEL=str(emd), ARGUMENTS="threshold 150", OUTPUT=str(tmp_path / "a.tif"))


# ------------------------------------------------------------------------------------------ allowed operators that crash
def test_sparse_to_dense_out_of_bounds_is_refused_untrusted_and_costs_only_the_child_trusted(context, tmp_path,
                                                                                               raster):
    """sparse_coo_tensor with an index 10^8 rows out, then to_dense: two operators the walk allows, and a write out
    of bounds that kills the process (proven first in a bare Python). Untrusted, it is refused before torch opens
    it, even in QGIS's own process; trusted, it crashes the run's child process only, and the next run works."""
    model = evil_torchscript.torchscript_sparse_out_of_bounds(tmp_path / "sparse.pt")
    assert loaded_by_torch(model).returncode == -11  # SIGSEGV: the file is hostile
    emd = torch_emd(tmp_path, "sparse.pt")
    key = "Processing/Configuration/DLTOOLS_RUN_IN_CHILD"
    QgsSettings().setValue(key, False)  # in QGIS's process: opening it would end this test run
    try:
        message = refusal(context, raster, emd, tmp_path / "out.tif")
    finally:
        QgsSettings().remove(key)
    assert message.startswith("Model 'sparse.pt' is a TorchScript program: " + TRUST_SAYS), message
    message = refusal(context, raster, emd, tmp_path / "out.tif", ALLOW_CUSTOM_CODE=True)
    assert message.startswith("The model's runtime crashed (SIGSEGV) while running the model; QGIS is unaffected "
                              "and no output was written."), message
    _clean_model(tmp_path)
    out = tmp_path / "good.tif"
    classify(context, INPUT=str(raster), MODEL=str(torch_emd(tmp_path, "good.pt")), OUTPUT=str(out),
             ALLOW_CUSTOM_CODE=True)
    image = read_raster(raster).astype(np.float32)
    assert np.array_equal(read_raster(out), np.argmax(image[:2] * np.array([1, 2]).reshape(2, 1, 1), axis=0))

# SPDX-License-Identifier: GPL-2.0-or-later
"""Backends: real ONNX Runtime and torch sessions on tiny models whose outputs numpy predicts exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, export_torchscript, numpy_conv_same
from dltools.core.backends import open_backend
from dltools.core.backends.base import DeviceRequest, TensorInfo
from dltools.core.backends.onnx_backend import OnnxBackend
from dltools.core.backends.torch_backend import TorchBackend
from dltools.core.errors import BackendError, ModelDefinitionError
from dltools.core.model.loader import load_model_definition
from dltools.core.progress import NullProgress
from dltools.core.trust import CodeTrust

TRUSTED = CodeTrust.all()  # these tests' own TorchScript files

IN_CH, OUT_CH, K, TILE = 3, 2, 3, 16
RNG = np.random.default_rng(42)
BATCH = RNG.integers(0, 5, size=(5, IN_CH, TILE, TILE)).astype(np.float32)


@pytest.fixture(scope="module")
def conv():
    return conv_module(IN_CH, OUT_CH, K, seed=3)


def _weights(conv) -> tuple[np.ndarray, np.ndarray]:
    return conv.weight.detach().numpy().astype(np.float64), conv.bias.detach().numpy().astype(np.float64)


def _expected(conv, batch: np.ndarray) -> np.ndarray:
    w, b = _weights(conv)
    return np.stack([numpy_conv_same(img, w, b) for img in batch])


@pytest.fixture(scope="module")
def models(conv, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backends")
    return {
        "dynamic": export_onnx(conv, folder / "dynamic.onnx", IN_CH, TILE),
        "fixed1": export_onnx(conv, folder / "fixed1.onnx", IN_CH, TILE, fixed_batch=1),
        "fixed3": export_onnx(conv, folder / "fixed3.onnx", IN_CH, TILE, fixed_batch=3),
        "torchscript": export_torchscript(conv, folder / "model.pt"),
    }


CPU = DeviceRequest("cpu", threads=1)


def test_onnx_dynamic_batch(conv, models):
    with OnnxBackend(models["dynamic"], CPU) as backend:
        assert backend.inputs == [TensorInfo("input", (None, IN_CH, TILE, TILE), "float32")]
        assert backend.outputs == [TensorInfo("output", (None, OUT_CH, TILE, TILE), "float32")]
        assert backend.fixed_batch is None
        assert backend.describe() == "onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads)"
        (out,) = backend.run(BATCH)
        assert backend.calls == 1
    assert out.shape == (5, OUT_CH, TILE, TILE)
    np.testing.assert_array_equal(out, _expected(conv, BATCH))


@pytest.mark.parametrize(("name", "fixed", "calls"), [("fixed1", 1, 5), ("fixed3", 3, 2)])
def test_onnx_fixed_batch_is_split_and_padded(conv, models, name, fixed, calls):
    with OnnxBackend(models[name], CPU) as backend:
        assert backend.fixed_batch == fixed
        assert backend.inputs[0].shape_text() == f"[{fixed}, {IN_CH}, {TILE}, {TILE}]"
        (together,) = backend.run(BATCH)
        assert backend.calls == calls
        one_by_one = np.concatenate([backend.run(BATCH[i:i + 1])[0] for i in range(len(BATCH))])
    assert together.shape == (5, OUT_CH, TILE, TILE)
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_array_equal(together, _expected(conv, BATCH))


def test_onnx_wrong_input_is_a_clear_error(models):
    with OnnxBackend(models["dynamic"], CPU) as backend:
        with pytest.raises(BackendError) as info:
            backend.run(np.zeros((1, 4, TILE, TILE), np.float32))
        assert str(info.value).startswith(f"The model failed on input of shape (1, 4, {TILE}, {TILE}) "
                                          f"(it expects [?, {IN_CH}, {TILE}, {TILE}]): ")
        with pytest.raises(BackendError) as info:
            backend.run([BATCH, BATCH])
        assert str(info.value) == "The model has 1 inputs but 2 arrays were given"


def test_onnx_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="^ONNX Runtime cannot load 'bad.onnx': "):
        OnnxBackend(bad, CPU)


def test_model_seconds_accumulate(models):
    with OnnxBackend(models["fixed3"], CPU) as backend:
        assert (backend.model_seconds, backend.calls) == (0.0, 0)
        backend.run(BATCH[:3])
        first = backend.model_seconds
        assert first > 0.0
        backend.run(BATCH[:3])
        assert backend.model_seconds > first
        assert backend.calls == 2


def test_torchscript_backend(conv, models):
    with TorchBackend(models["torchscript"], CPU, trust=TRUSTED) as backend:
        assert backend.describe().startswith("torch on cpu (PyTorch ")
        assert backend.fixed_batch is None
        (out,) = backend.run(BATCH)
        first = backend.model_seconds
        backend.run(BATCH[:1])
        assert backend.model_seconds > first and backend.calls == 2
    np.testing.assert_array_equal(out, _expected(conv, BATCH))


def test_open_backend_picks_by_kind(models):
    class Recording(NullProgress):
        def __init__(self):
            self.infos = []

        def info(self, message):
            self.infos.append(message)

    progress = Recording()
    backend = open_backend(models["dynamic"], "onnx", CPU, progress, trust=TRUSTED)
    assert isinstance(backend, OnnxBackend)
    backend.close()
    backend = open_backend(models["torchscript"], "torchscript", CPU, progress, trust=TRUSTED)
    assert isinstance(backend, TorchBackend)
    backend.close()
    assert progress.infos[0] == "Model runs with onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads)"
    with pytest.raises(BackendError) as info:
        open_backend(models["dynamic"], "tflite", CPU, trust=TRUSTED)
    assert str(info.value) == "No backend runs models of kind 'tflite'"


def test_device_request_validation():
    assert DeviceRequest("GPU", 1).kind == "gpu"
    with pytest.raises(BackendError) as info:
        DeviceRequest("tpu")
    assert str(info.value) == "Device must be Auto, CPU or GPU, not 'tpu'"
    with pytest.raises(BackendError) as info:
        DeviceRequest("gpu", -1)
    assert str(info.value) == "GPU id must be 0 or more, not -1"


def _has_cuda() -> tuple[bool, bool]:
    import onnxruntime
    import torch

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers(), torch.cuda.is_available()


def test_gpu_requested_without_gpu_onnx(models):
    import onnxruntime

    ort_cuda, _ = _has_cuda()
    if ort_cuda:
        pytest.skip("ONNX Runtime has a CUDA provider here")
    with pytest.raises(BackendError) as info:
        OnnxBackend(models["dynamic"], DeviceRequest("gpu"))
    available = ", ".join(onnxruntime.get_available_providers())
    assert str(info.value) == (f"A GPU was requested but ONNX Runtime has no CUDA provider here (available: {available}): "
                               "install 'ONNX Runtime for NVIDIA GPUs' with Install Inference Libraries "
                               "(dltools:installlibraries) "
                               "and a matching CUDA, or choose CPU/Auto")


def test_gpu_requested_without_gpu_torch(models):
    if _has_cuda()[1]:
        pytest.skip("PyTorch sees a CUDA device here")
    with pytest.raises(BackendError) as info:
        TorchBackend(models["torchscript"], DeviceRequest("gpu"), trust=TRUSTED)
    assert str(info.value) == ("A GPU was requested but PyTorch sees no CUDA device here: install a CUDA build of torch, "
                               "or choose CPU/Auto")


def test_auto_falls_back_to_cpu_without_gpu(models):
    ort_cuda, torch_cuda = _has_cuda()
    if ort_cuda or torch_cuda:
        pytest.skip("a GPU is reachable here")
    with OnnxBackend(models["dynamic"], DeviceRequest("auto", threads=1)) as backend:
        assert backend.device == "cpu"
    with TorchBackend(models["torchscript"], DeviceRequest("auto", threads=1), trust=TRUSTED) as backend:
        assert backend.device == "cpu"


def test_gpu_when_there_is_one(conv, models):
    ort_cuda, torch_cuda = _has_cuda()
    if not torch_cuda:
        pytest.skip("no CUDA device here")
    with TorchBackend(models["torchscript"], DeviceRequest("gpu", 0), trust=TRUSTED) as backend:
        assert backend.device == "cuda:0"
        (out,) = backend.run(BATCH)
    np.testing.assert_allclose(out, _expected(conv, BATCH), rtol=1e-5, atol=1e-4)
    if ort_cuda:
        with OnnxBackend(models["dynamic"], DeviceRequest("gpu", 0)) as backend:
            assert backend.device == "cuda:0"
            np.testing.assert_allclose(backend.run(BATCH)[0], _expected(conv, BATCH), rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------------ torch.export
def _export_pt2(conv, path: Path, extra: dict | None = None) -> Path:
    import torch

    program = torch.export.export(conv, (torch.zeros(1, IN_CH, 256, 256),))
    torch.export.save(program, str(path), extra_files={"dltools.json": json.dumps(extra)} if extra else None)
    return path


def test_torch_export_probe_without_dltools_json(conv, tmp_path):
    path = _export_pt2(conv, tmp_path / "model.pt2")
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.origin, md.model_format_kind, md.framework) == ("torchscript", "torch_export", "PyTorch")
    assert (md.model_type, md.extract_bands, md.image_height) == ("ImageClassification", [0, 1, 2], 256)
    assert [c.name for c in md.classes] == ["class 0", "class 1"]
    backend = open_backend(md.model_file, md.model_format_kind, CPU, trust=TRUSTED)
    try:
        image = RNG.integers(0, 3, size=(1, IN_CH, 256, 256)).astype(np.float32)
        (out,) = backend.run(image)
    finally:
        backend.close()
    np.testing.assert_array_equal(out, _expected(conv, image))


def test_torch_export_with_embedded_dltools_json(conv, tmp_path):
    emd = {"ModelType": "ImageClassification", "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [2, 1, 0],
           "DataRange": [0, 1], "Classes": [{"Value": 5, "Name": "field", "Color": [9, 9, 9]},
                                            {"Value": 7, "Name": "forest", "Color": [0, 99, 0]}]}
    path = _export_pt2(conv, tmp_path / "declared.pt2", emd)
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.model_format_kind, md.model_file, md.warnings) == ("torch_export", path.resolve(), [])
    assert (md.extract_bands, md.data_range) == ([2, 1, 0], (0.0, 1.0))
    assert [(c.value, c.name, c.color) for c in md.classes] == [(5, "field", (9, 9, 9)), (7, "forest", (0, 99, 0))]


def test_pt2_that_is_not_an_export(tmp_path):
    path = tmp_path / "fake.pt2"
    path.write_bytes(b"plain bytes")
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(path, trust=TRUSTED)
    assert str(info.value) == "'fake.pt2' is not a torch.export program (torch.export.save writes a zip)"


def test_torchscript_that_runs_on_no_probe(tmp_path):
    import torch

    class NeedsFive(torch.nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], 5, -1)[:, :, :3]

    path = tmp_path / "odd.pt"
    torch.jit.save(torch.jit.script(NeedsFive()), str(path))
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(path, trust=TRUSTED)
    assert str(info.value) == (
        "'odd.pt' declares no input shape and did not run on a 256x256 tile with 3, 4, 1, 6, 8, 12, 13, 2 bands: write "
        "an .emd for it (ImageHeight, ImageWidth, ExtractBands, Classes), or store one in the archive as the extra file "
        "dltools.json")


# ------------------------------------------------------------------------------------------ plain ONNX
def test_deepness_metadata_regression_model(testdata):
    path = testdata("deepness", "models", "dummy_regression_models__dummy_regression_model.onnx")
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.origin, md.model_type, md.framework, md.model_format_kind) == ("onnx", "Regression", "ONNX", "onnx")
    # the graph takes 512 x 512 only, so the fixed size wins over tiles_size 256
    assert (md.image_height, md.image_width, md.batch_size) == (512, 512, 1)
    assert (md.threshold, md.tile_overlap_percent, md.resolution_cm, md.divide_by_255) == (0.3, 11.0, 5.5, True)
    assert md.classes == []
    assert md.deepness_metadata["class_names"] == {"0": "_background", "1": "building", "2": "woodland", "3": "water",
                                                   "4": "road"}
    assert md.warnings == ["The metadata says tiles of 256 pixels but the model only takes 512: using 512"]


def test_deepness_metadata_class_names(testdata):
    path = testdata("deepness", "models", "dummy_segmentation_models__two_outputs_softmax_bsx2x512x512.onnx")
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.model_type, md.image_height, md.batch_size, md.extract_bands) == ("ImageClassification", 512, None, [0, 1, 2])
    assert [(c.value, c.name) for c in md.classes] == [(0, "Coffee"), (1, "Tea")]
    assert md.divide_by_255


def test_onnx_without_metadata_gets_shapes_from_the_graph(testdata):
    path = testdata("deepness", "models", "dummy_segmentation_models__dummy_model.onnx")
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.model_type, md.image_height, md.image_width, md.batch_size) == ("ImageClassification", 512, 512, 1)
    assert (md.extract_bands, md.divide_by_255, md.deepness_metadata) == ([0, 1, 2], False, {})
    assert [c.name for c in md.classes] == ["class 0", "class 1", "class 2"]
    assert md.warnings == ["The model carries no normalisation metadata: pixel values are passed unchanged. Write an .emd "
                           "with DataRange or NormalizationStats if the model expects scaled input"]
    with OnnxBackend(path, CPU) as backend:
        x = np.full((1, 3, 512, 512), 0.5, np.float32)
        np.testing.assert_allclose(backend.run(x)[0], np.full((1, 3, 512, 512), 0.5 ** 8, np.float32), rtol=1e-6)


def test_onnx_standardization_metadata(conv, tmp_path):
    meta = {"model_type": "Segmentor", "class_names": {"0": "bg", "1": "roof"}, "resolution": 20, "tiles_size": 64,
            "tiles_overlap": 15, "standardization_mean": [0.1, 0.2, 0.3], "standardization_std": [0.5, 0.5, 0.25],
            "seg_thresh": 0.4}
    path = export_onnx(conv, tmp_path / "std.onnx", IN_CH, TILE, dynamic_hw=True, metadata=meta)
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.image_height, md.supports_variable_tile_size, md.tile_overlap_percent) == (64, True, 15.0)
    assert (md.standardization_mean, md.standardization_std) == ([0.1, 0.2, 0.3], [0.5, 0.5, 0.25])
    assert (md.threshold, md.resolution_cm, md.divide_by_255) == (0.4, 20.0, True)
    assert [c.name for c in md.classes] == ["bg", "roof"]


def test_onnx_dynamic_size_without_metadata(conv, tmp_path):
    path = export_onnx(conv, tmp_path / "any.onnx", IN_CH, TILE, dynamic_hw=True)
    md = load_model_definition(path, trust=TRUSTED)
    assert (md.image_height, md.supports_variable_tile_size) == (512, True)
    assert md.warnings[0] == "The model takes any tile size and says none: using 512 pixels"


def test_onnx_bad_metadata(conv, tmp_path):
    path = export_onnx(conv, tmp_path / "bad.onnx", IN_CH, TILE, metadata={"model_type": "Painter"})
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(path, trust=TRUSTED)
    assert str(info.value) == ("ONNX metadata model_type 'Painter' is unknown; expected one of Segmentor, Detector, "
                               "Regressor, Recognition, Superresolution")

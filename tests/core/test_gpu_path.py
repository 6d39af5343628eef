# SPDX-License-Identifier: GPL-2.0-or-later
"""The GPU path, checked where it can be without a GPU.

ONNX Runtime's I/O binding is the same code on the CPU provider (its buffers are host memory there): its outputs
must be bit-identical to a plain ``session.run``, its buffers reused per batch shape, and the arrays it returns
must stay as they were while later calls overwrite the buffers. The provider choice says what happened; half
precision is refused on the CPU; PyTorch's CPU path is unchanged and never touches pinned memory (which torch
refuses outright on a machine without an NVIDIA driver).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders import RecordingProgress, conv_module, export_onnx, export_torchscript
from dltools.core.backends import open_backend
from dltools.core.backends.base import DeviceRequest, TensorInfo
from dltools.core.backends.onnx_backend import OnnxBackend, provider_outcome, provider_plan
from dltools.core.backends.onnx_binding import outputs_follow_inputs
from dltools.core.backends.torch_backend import TorchBackend
from dltools.core.errors import BackendError
from dltools.core.trust import CodeTrust

IN_CH, OUT_CH, TILE = 3, 4, 16
RNG = np.random.default_rng(7)
A = RNG.normal(size=(5, IN_CH, TILE, TILE)).astype(np.float32)
B = RNG.normal(size=(5, IN_CH, TILE, TILE)).astype(np.float32)
C = RNG.normal(size=(2, IN_CH, TILE, TILE)).astype(np.float32)
CPU = DeviceRequest("cpu", threads=1)
CUDA_AND_CPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gpu_path")
    conv = conv_module(IN_CH, OUT_CH, 3, seed=11)
    return {"dynamic": export_onnx(conv, folder / "dynamic.onnx", IN_CH, TILE),
            "fixed3": export_onnx(conv, folder / "fixed3.onnx", IN_CH, TILE, fixed_batch=3),
            "nonzero": _nonzero_model(folder / "nonzero.onnx"),
            "torchscript": export_torchscript(conv, folder / "conv.pt")}


def _nonzero_model(path: Path) -> Path:
    """Output shape decided by the data: the indices of the input's values above 0.5 (ONNX NonZero)."""
    import onnx
    from onnx import TensorProto, helper

    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    graph = helper.make_graph(
        [helper.make_node("Greater", ["x", "half"], ["above"]), helper.make_node("NonZero", ["above"], ["where"])],
        "nonzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("where", TensorProto.INT64, [2, "found"])], initializer=[half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


# ------------------------------------------------------------------------------------------ ONNX Runtime I/O binding
def test_io_binding_is_bit_identical_to_session_run_and_reuses_buffers(models):
    with OnnxBackend(models["dynamic"], CPU) as plain, \
            OnnxBackend(models["dynamic"], CPU, io_binding=True) as bound:
        assert plain.binder is None  # the CPU path without binding is the default, unchanged
        assert bound.describe() == "onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads, I/O binding)"
        first = bound.run(A)[0]
        kept = first.copy()
        buffers_a = bound.binder.buffers([A])
        assert len(buffers_a[1]) == 1  # the output buffer ONNX Runtime made is kept for the next call
        second = bound.run(B)[0]
        last = bound.run(C)[0]  # a smaller last batch: its own buffers
        again = bound.run(A)[0]
        assert bound.binder.buffers([A]) == buffers_a  # same input and output buffers for the same shape
        assert bound.binder.buffers([C]) != buffers_a
        _same_bits(first, plain.run(A)[0])
        _same_bits(second, plain.run(B)[0])
        _same_bits(last, plain.run(C)[0])
        _same_bits(again, first)
        _same_bits(first, kept)  # later calls wrote into the buffers, not into what the first call returned
        assert not np.array_equal(first, second)


def test_io_binding_with_a_fixed_batch_splits_and_pads_as_before(models):
    with OnnxBackend(models["fixed3"], CPU) as plain, OnnxBackend(models["fixed3"], CPU, io_binding=True) as bound:
        _same_bits(bound.run(A)[0], plain.run(A)[0])
        assert bound.calls == 2


def test_io_binding_with_outputs_whose_size_depends_on_the_data(models):
    """A detector-like output ("found" rows) is never bound to last call's buffer, which could have the wrong size."""
    x1 = np.array([[0, 1, 0, 1, 1, 0]], np.float32)
    x2 = np.array([[1, 0, 0, 0, 0, 0]], np.float32)
    with OnnxBackend(models["nonzero"], CPU, io_binding=True) as bound:
        assert bound.binder.buffers([x1])[1] == []
        for x in (x1, x2, x1):
            (where,) = bound.run(x)
            _same_bits(where, np.array(np.nonzero(x > 0.5), np.int64))


def test_outputs_follow_inputs():
    image = [TensorInfo("x", (None, 3, 16, 16), "float32", ("batch", 3, 16, 16))]
    assert outputs_follow_inputs(image, [TensorInfo("y", (None, 2, 16, 16), "float32", ("batch", 2, 16, 16))])
    assert not outputs_follow_inputs(image, [TensorInfo("boxes", (None, None, 6), "float32", ("batch", "n", 6))])
    assert not outputs_follow_inputs(image, [TensorInfo("y", (None,), "float32", None)])


# ------------------------------------------------------------------------------------------ which provider, and why
def test_provider_plan_with_and_without_cuda():
    cuda = ("CUDAExecutionProvider", {"device_id": 1})
    assert provider_plan(CUDA_AND_CPU, DeviceRequest("gpu", 1)) == ([cuda, "CPUExecutionProvider"],
                                                                   "CUDA provider asked for GPU 1")
    assert provider_plan(CUDA_AND_CPU, DeviceRequest("auto", 1))[0] == [cuda, "CPUExecutionProvider"]
    assert provider_plan(CUDA_AND_CPU, DeviceRequest("cpu"))[0] == ["CPUExecutionProvider"]
    assert provider_plan(["CPUExecutionProvider"], DeviceRequest("auto")) == (
        ["CPUExecutionProvider"], "Device Auto: this ONNX Runtime has no CUDA provider (it offers "
                                  "CPUExecutionProvider), so the model runs on the CPU")
    with pytest.raises(BackendError, match=r"^A GPU was requested but ONNX Runtime has no CUDA provider here "
                                           r"\(available: CPUExecutionProvider\)"):
        provider_plan(["CPUExecutionProvider"], DeviceRequest("gpu"))


def test_provider_outcome_when_cuda_would_not_start():
    asked = provider_plan(CUDA_AND_CPU, DeviceRequest("auto"))[0]
    assert provider_outcome(DeviceRequest("auto"), asked, CUDA_AND_CPU) is None
    assert provider_outcome(DeviceRequest("auto"), asked, ["CPUExecutionProvider"]) == (
        "Device Auto: ONNX Runtime has a CUDA provider but could not start it (check the CUDA and cuDNN libraries), "
        "so the model runs on the CPU")
    with pytest.raises(BackendError) as info:
        provider_outcome(DeviceRequest("gpu"), asked, ["CPUExecutionProvider"])
    assert str(info.value) == ("A GPU was requested but ONNX Runtime could not start its CUDA provider (check the "
                               "CUDA and cuDNN libraries), or choose CPU/Auto")
    assert provider_outcome(DeviceRequest("cpu"), ["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None


def test_auto_without_cuda_says_the_model_runs_on_the_cpu(models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has a CUDA provider")
    progress = RecordingProgress()
    backend = open_backend(models["dynamic"], "onnx", DeviceRequest("auto", threads=1), progress)
    backend.close()
    offered = ", ".join(onnxruntime.get_available_providers())
    assert progress.infos[-2:] == [
        "Model runs with onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads)",
        f"Device Auto: this ONNX Runtime has no CUDA provider (it offers {offered}), so the model runs on the CPU"]
    progress = RecordingProgress()
    open_backend(models["dynamic"], "onnx", CPU, progress).close()
    assert progress.infos == ["Model runs with onnxruntime on cpu (ONNX Runtime CPUExecutionProvider, 1 threads)"]


# ------------------------------------------------------------------------------------------ half precision
HALF_ON_CPU = ("Argument 'half_precision' asks for float16 on a GPU, but the model runs on the CPU ({why}), where "
               "half precision is slower and less exact: set half_precision to false, or run on a GPU")


def _no_gpu() -> None:
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a GPU is reachable here")


@pytest.mark.parametrize(("kind", "why"), [("cpu", "the CPU was chosen"), ("auto", "no GPU is reachable here")])
def test_half_precision_is_refused_on_the_cpu(models, kind, why):
    _no_gpu()
    device = DeviceRequest(kind, threads=1, half=True)
    with pytest.raises(BackendError) as info:
        OnnxBackend(models["dynamic"], device)
    assert str(info.value) == HALF_ON_CPU.format(why=why)
    with pytest.raises(BackendError) as info:
        TorchBackend(models["torchscript"], device, trust=CodeTrust.all())
    assert str(info.value) == HALF_ON_CPU.format(why=why)


def test_half_precision_argument_becomes_the_device_setting():
    device = DeviceRequest("gpu", threads=3).take_arguments({"threads": 0, "half_precision": True})
    assert (device.threads, device.half) == (3, True)
    assert DeviceRequest(half=True).take_arguments({"half_precision": False}).half  # the caller's setting stays


# ------------------------------------------------------------------------------------------ PyTorch on the CPU
def test_torch_cpu_path_is_unchanged_and_never_pins(models):
    import torch

    module = torch.jit.load(str(models["torchscript"]))
    with torch.inference_mode():
        want = module(torch.from_numpy(A)).numpy()
    with TorchBackend(models["torchscript"], CPU, trust=CodeTrust.all()) as backend:
        assert not backend.transfer.cuda and not backend.transfer.half
        _same_bits(backend.run(A)[0], want)
        _same_bits(backend.run_structured([A]), want)
        assert backend.transfer.pinned_buffers == 0
    if not torch.cuda.is_available():  # where torch refuses pinned memory, the runs above prove it was not used
        with pytest.raises(RuntimeError):
            torch.empty(1, pin_memory=True)


# ------------------------------------------------------------------------------------------ deferred outputs
def test_deferred_outputs_on_the_cpu_are_the_plain_run(models):
    """Off CUDA a deferred call is the plain call, finished before it returns (the engine's writer then just takes
    it); on CUDA the same interface returns before the copies back are done."""
    with TorchBackend(models["torchscript"], CPU, trust=CodeTrust.all()) as backend:
        pending = backend.run_deferred(A)
        assert backend.calls == 1  # already run
        _same_bits(pending.result()[0], backend.run(A)[0])
        _same_bits(pending.then(lambda outs: outs[0] * 2).result(), backend.run(A)[0] * 2)
    with OnnxBackend(models["dynamic"], CPU) as backend:
        _same_bits(backend.run_deferred(A).result()[0], backend.run(A)[0])


def test_classify_pixels_with_torchscript_through_the_deferred_path(tmp_path, models):
    """The engine's model thread hands Deferred outputs to its writer: a TorchScript model and the same network as
    ONNX classify a raster identically, and as numpy says (three classes, argmax of a 3 x 3 convolution)."""
    from builders import numpy_conv_same, read_raster, write_emd, write_raster
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    weight = np.random.default_rng(3).integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
    conv = conv_module(3, 3, 1, weight=weight)
    image = np.random.default_rng(4).integers(0, 9, size=(3, 37, 45)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    classes = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (3, "three", (0, 0, 255))]
    export_torchscript(conv, tmp_path / "m.pt")
    export_onnx(conv, tmp_path / "m.onnx", 3, 16)
    want = np.array([1, 2, 3])[np.argmax(numpy_conv_same(image, weight, np.zeros(3)), axis=0)]
    got = {}
    for name, framework in (("m.pt", "PyTorch"), ("m.onnx", "ONNX")):
        emd = write_emd(tmp_path / f"{name}.emd", name, framework=framework, tile=16, classes=classes)
        md = load_model_definition(str(emd), trust=CodeTrust.all())
        out = tmp_path / f"{name}.tif"
        classify_pixels(str(raster), md, str(out), "padding 2;batch_size 4", device=DeviceRequest("cpu", threads=1))
        got[name] = read_raster(out)
    assert np.array_equal(got["m.pt"], want) and np.array_equal(got["m.onnx"], want)


def test_a_float16_onnx_model_runs_as_saved(tmp_path):
    """Half precision for ONNX Runtime means a float16 model: fed float16, through I/O binding bit for bit as through
    session.run, and through Classify Pixels as numpy says (integer weights and pixels: float16 is exact here)."""
    import warnings

    import torch
    from builders import numpy_conv_same, read_raster, write_emd, write_raster
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    weight = np.random.default_rng(3).integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv_module(3, 3, 1, weight=weight).half(), torch.zeros(1, 3, 16, 16, dtype=torch.float16),
                          str(tmp_path / "m.onnx"), dynamo=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13)
    batch = np.random.default_rng(5).integers(0, 9, size=(4, 3, 16, 16)).astype(np.float32)
    with OnnxBackend(tmp_path / "m.onnx", CPU) as plain, \
            OnnxBackend(tmp_path / "m.onnx", CPU, io_binding=True) as bound:
        assert plain.inputs[0].dtype == "float16"
        want = plain.run(batch)[0]
        assert want.dtype == np.float16
        _same_bits(bound.run(batch)[0], want)
    image = np.random.default_rng(4).integers(0, 9, size=(3, 37, 45)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=16, classes=[(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)),
                                                                     (3, "three", (0, 0, 255))])
    out = tmp_path / "out.tif"
    classify_pixels(str(raster), load_model_definition(str(emd)), str(out), "padding 2", device=CPU)
    want = np.array([1, 2, 3])[np.argmax(numpy_conv_same(image, weight, np.zeros(3)), axis=0)]
    assert np.array_equal(read_raster(out), want)


def test_torch_auto_without_cuda_says_why(models):
    import torch

    if torch.cuda.is_available():
        pytest.skip("PyTorch sees a GPU here")
    progress = RecordingProgress()
    open_backend(models["torchscript"], "torchscript", DeviceRequest("auto", threads=1), progress,
                 trust=CodeTrust.all()).close()
    why = (f"is built for CUDA {torch.version.cuda} but finds no NVIDIA GPU or driver here" if torch.version.cuda
           else "is a CPU-only build")
    assert progress.infos[-1] == f"Device Auto: PyTorch {torch.__version__} {why}, so the model runs on the CPU"
    progress = RecordingProgress()
    open_backend(models["torchscript"], "torchscript", CPU, progress, trust=CodeTrust.all()).close()
    assert len(progress.infos) == 1 and progress.infos[0].startswith("Model runs with torch on cpu")

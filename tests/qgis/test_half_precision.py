# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``half_precision`` argument through Processing and qgis_process: on a machine without a GPU it is refused with
a message saying why and what to do, nothing is written, and the same run without it classifies as always."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, numpy_conv_same, read_raster, write_emd, write_raster
from qgis.core import QgsProcessingException

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

ALG = "dltools:classifypixels"
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (3, "three", (0, 0, 255))]
WEIGHT = np.random.default_rng(5).integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
REFUSAL = ("Argument 'half_precision' asks for float16 on a GPU, but the model runs on the CPU ({why}), where half "
           "precision is slower and less exact: set half_precision to false, or run on a GPU")


@pytest.fixture
def case(tmp_path) -> dict:
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a GPU is reachable here: half precision would run")
    image = np.random.default_rng(6).integers(0, 9, size=(3, 20, 18)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    export_onnx(conv_module(3, 3, 1, weight=WEIGHT), tmp_path / "m.onnx", 3, 8)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=CLASSES)
    expected = np.array([1, 2, 3])[np.argmax(numpy_conv_same(image, WEIGHT, np.zeros(3)), axis=0)]
    return {"raster": str(raster), "emd": str(emd), "expected": expected, "folder": tmp_path}


@pytest.mark.parametrize(("device", "why"), [(1, "the CPU was chosen"), (0, "no GPU is reachable here")])
def test_half_precision_is_refused_on_the_cpu(context, case, device, why):
    import processing

    out = case["folder"] / f"half{device}.tif"
    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, {"INPUT": case["raster"], "MODEL": case["emd"], "DEVICE": device,
                             "ARGUMENTS": "half_precision true", "OUTPUT": str(out)}, context=context)
    assert REFUSAL.format(why=why) in str(info.value)
    assert not out.exists()
    fine = case["folder"] / "fine.tif"
    processing.run(ALG, {"INPUT": case["raster"], "MODEL": case["emd"], "DEVICE": device,
                         "ARGUMENTS": "half_precision false", "OUTPUT": str(fine)}, context=context)
    assert np.array_equal(read_raster(fine), case["expected"])


def test_qgis_process_half_precision_on_the_cpu(case, tmp_path):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    out = tmp_path / "qp.tif"
    message = qgis_process_util.qgis_process_failure(ALG, {
        "INPUT": case["raster"], "MODEL": case["emd"], "DEVICE": 1, "ARGUMENTS": "half_precision true",
        "OUTPUT": out}, tmp_path)
    assert REFUSAL.format(why="the CPU was chosen") in message
    assert not out.exists()

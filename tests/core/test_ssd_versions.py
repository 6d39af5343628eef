# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn SingleShotDetector: the .emd's SSDVersion (absent = 1) against the version-2 head rebuilt here.

Facts from arcgis.learn 2.4.4 (models/_ssd.py, _ssd_utils.py): ``from_emd`` reads ``int(emd.get("SSDVersion", 1))``;
version 1's ``conv_params`` tries kernels (3, 2, 5, 4), paddings 0..3, strides 1..3 for an exact output size and
never upsamples nor cuts the body; version 2's ``conv_paramsv2`` is 3x3, padding 0/1, stride 1/2 by floor division,
upsampling otherwise.  The packages below carry weights that load strictly into either head, so only the check
stands between a version-1 model and wrong boxes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from arcgis_learn_builders import arcgis_emd, decoded_detections, imagenet_normalise, reference_ssd, write_package  # noqa: E402,I001
from dltools.core.backends import open_backend  # noqa: E402
from dltools.core.backends.arcgis_learn.ssd_versions import (  # noqa: E402
    grid_step,
    grid_step_v1,
    head_plan_v1,
    head_plan_v2,
    ssd_version,
)
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.errors import DLToolsError, ModelDefinitionError  # noqa: E402
from dltools.core.model.loader import load_model_definition  # noqa: E402

CHIP = 64  # a 2 x 2 map out of the whole ResNet


def test_version_one_reaches_grids_by_exact_convolutions():
    assert grid_step_v1(7, 4) == grid_step(7, 4) == (2, 1, 3, False)  # 224-pixel chips: the heads agree
    assert grid_step_v1(8, 4) == (3, 2, 3, False) != grid_step(8, 4) == (2, 1, 3, False)  # 256-pixel chips
    assert grid_step_v1(2, 4) == (1, 2, 3, False) != grid_step(2, 4) == (1, 1, 3, True)  # padding 2, no upsampling
    assert grid_step_v1(4, 3) == (1, 0, 2, False) != grid_step(4, 3)  # a 2x2 kernel where version 2 upsamples
    assert grid_step_v1(7, 14) is None  # arcgis.learn: "cannot create model for specified grids"
    assert head_plan_v1("resnet34", 224, [4, 2, 1]) == head_plan_v2("resnet34", 224, [4, 2, 1])
    assert head_plan_v1("resnet34", 256, [4, 2, 1]) != head_plan_v2("resnet34", 256, [4, 2, 1])
    assert head_plan_v1("resnet34", 64, [2, 1]) == head_plan_v2("resnet34", 64, [2, 1])


def test_ssd_version_is_one_when_absent_and_refused_when_unknown():
    assert ssd_version({}) == 1 and ssd_version({"SSDVersion": 2}) == 2 and ssd_version({"SSDVersion": "1"}) == 1
    for bad in (3, "two", None):
        with pytest.raises(ModelDefinitionError, match="SSDVersion"):
            ssd_version({"SSDVersion": bad})


def _package(tmp_path, grids, **version):
    """A package whose weights come from the version-2 head (they load strictly into version 1's too)."""
    trained = arcgis_emd("SingleShotDetector", "resnet18", 2, CHIP, model_type="ObjectDetection", config="_DynamicSSD",
                         Grids=grids, Zooms=[1.0], Ratios=[[1.0, 1.0]], SSDVersion=2)
    net = reference_ssd("resnet18", 2, CHIP, trained, seed=5)
    emd = {k: v for k, v in trained.items() if k != "SSDVersion"}
    emd.update(version)
    return write_package(tmp_path, emd, net.state_dict()), net


def _open(dlpk):
    md = load_model_definition(dlpk)
    return open_backend(md.model_file, md.model_format_kind, DeviceRequest("cpu"), definition=md.raw)


@pytest.mark.parametrize("version", [{}, {"SSDVersion": 1}])
def test_a_version_one_model_whose_head_differs_is_refused_by_name(tmp_path, version):
    dlpk, _ = _package(tmp_path, [4], **version)
    with pytest.raises(DLToolsError) as caught:
        _open(dlpk).detect(np.zeros((1, 3, CHIP, CHIP), np.float32))
    message = str(caught.value)
    assert "SSDVersion" in message and "Grids [4]" in message and "64-pixel chips" in message
    assert "padding 2" in message and "upsample" in message and "Retrain" in message


def test_a_version_one_model_with_the_same_head_runs_and_a_version_two_model_runs(tmp_path):
    x = imagenet_normalise(np.random.default_rng(3).integers(0, 256, (1, 3, CHIP, CHIP)).astype(np.float32))
    results = []
    for name, version in (("v1", {}), ("v2", {"SSDVersion": 2})):
        dlpk, net = _package(tmp_path / name, [2, 1], **version)
        results.append(decoded_detections(_open(dlpk), x, threshold=0.2))
    with torch.no_grad():
        classes, _ = net(torch.from_numpy(x))
    assert classes.shape[1] == 4 + 1
    assert len(results[0][0]["scores"]) == len(results[1][0]["scores"]) > 0
    np.testing.assert_array_equal(results[0][0]["boxes"], results[1][0]["boxes"])
    dlpk, _ = _package(tmp_path / "v2fine", [4], SSDVersion=2)  # the grids refused for version 1 run as version 2
    assert len(_open(dlpk).detect(np.zeros((1, 3, CHIP, CHIP), np.float32))) == 1

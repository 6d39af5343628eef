# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn SingleShotDetector: the .emd's SSDVersion (absent = 1) against the version-2 head rebuilt here.

Facts from arcgis.learn 2.4.4 (models/_ssd.py, _ssd_utils.py): ``from_emd`` reads ``int(emd.get("SSDVersion", 1))``;
version 1's ``conv_params`` tries kernels (3, 2, 5, 4), paddings 0..3, strides 1..3 for an exact output size and
never upsamples nor cuts the body; version 2's ``conv_paramsv2`` is 3x3, padding 0/1, stride 1/2 by floor division,
upsampling otherwise.  Both store the same keys, so only the version tells a model's head apart."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from arcgis_learn_builders import arcgis_emd, imagenet_normalise, reference_ssd, write_package  # noqa: E402,I001
from dltools.core.backends import open_backend  # noqa: E402
from dltools.core.backends.arcgis_learn.ssd import SSDHead, build_ssd  # noqa: E402
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


def test_grids_version_one_cannot_build_are_refused_by_name(tmp_path):
    dlpk, _ = _package(tmp_path, [14])  # 2 x 2 map to 14: no kernel, padding and stride of version 1 reach it
    with pytest.raises(DLToolsError) as caught:
        _open(dlpk).detect(np.zeros((1, 3, CHIP, CHIP), np.float32))
    message = str(caught.value)
    assert "no SSDVersion (arcgis.learn reads this as version 1)" in message and "Grids [14]" in message
    assert "64-pixel chips" in message and "cannot build" in message


def _v1_keys_and_shapes() -> dict[str, tuple[int, ...]]:
    """resnet18, 128-pixel chips (a 4 x 4 map), Grids [3, 1], 1 anchor per cell, 2 classes, enumerated from
    torchvision's ResNet and arcgis.learn's SSDHead by hand: 4 -> 3 is version 1's 2x2 convolution (version 2
    would upsample and use 3x3), 3 -> 1 a 3x3 one."""
    resnet = torchvision.models.resnet18()
    children = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    want = {}
    for key, value in resnet.state_dict().items():
        head, rest = key.split(".", 1)
        if head in children:
            want[f"0.{children.index(head)}.{rest}"] = tuple(value.shape)

    def std_conv(prefix: str, nin: int, kernel: int) -> None:
        want[f"{prefix}.conv.weight"], want[f"{prefix}.conv.bias"] = (256, nin, kernel, kernel), (256,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            want[f"{prefix}.bn.{name}"] = (256,)
        want[f"{prefix}.bn.num_batches_tracked"] = ()

    std_conv("1.sconvs.0", 512, 3)
    std_conv("1.sconvs.1", 256, 2)
    std_conv("1.sconvs.2", 256, 3)
    for i in (0, 1):
        want[f"1.oconvs.{i}.oconv1.weight"], want[f"1.oconvs.{i}.oconv1.bias"] = (3, 256, 3, 3), (3,)
        want[f"1.oconvs.{i}.oconv2.weight"], want[f"1.oconvs.{i}.oconv2.bias"] = (4, 256, 3, 3), (4,)
    return want


def test_a_version_one_model_loads_strictly_and_runs_its_own_head(tmp_path):
    want = _v1_keys_and_shapes()
    generator = torch.Generator().manual_seed(4)
    state = {k: (torch.rand(shape, generator=generator) + 0.5 if shape else torch.tensor(0)) for k, shape in want.items()}
    emd = arcgis_emd("SingleShotDetector", "resnet18", 2, 128, model_type="ObjectDetection", config="_DynamicSSD",
                     Grids=[3, 1], Zooms=[1.0], Ratios=[[1.0, 1.0]])  # no SSDVersion: version 1
    net = build_ssd(torchvision, "resnet18", 2, 128, 3, emd)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want
    net.load_state_dict(state, strict=True)
    with pytest.raises(RuntimeError, match="size mismatch"):  # the version-2 head is another network
        build_ssd(torchvision, "resnet18", 2, 128, 3, dict(emd, SSDVersion=2)).load_state_dict(state, strict=True)
    x = imagenet_normalise(np.random.default_rng(6).integers(0, 256, (1, 3, 128, 128)).astype(np.float32))
    raw = _open(write_package(tmp_path, emd, state)).detect(x)[0]
    with torch.no_grad():
        classes, _ = net(torch.from_numpy(x))
    assert raw["anchor_scores"].shape == (9 + 1, 2)
    np.testing.assert_allclose(np.asarray(raw["anchor_scores"]), torch.sigmoid(classes[0, :, 1:]).numpy(), rtol=1e-5)


def test_version_one_head_forward_by_hand():
    """One grid, 4 x 4 map -> 3 x 3 by version 1's 2x2 convolution: every anchor's class-1 logit is the sum of
    its 2 x 2 window, scaled twice by the untrained BatchNorm (1 / sqrt(1 + 1e-5)); version 2 upsamples instead."""
    heads = {}
    for version, plan in (("v1", head_plan_v1("resnet18", 128, [3])), ("v2", head_plan_v2("resnet18", 128, [3]))):
        head = SSDHead([3], 1, 2, 1, plan[3]).eval()
        with torch.no_grad():
            for conv in (head.sconvs[0].conv, head.sconvs[1].conv, head.oconvs[0].oconv1, head.oconvs[0].oconv2):
                conv.weight.zero_()
                conv.bias.zero_()
            head.sconvs[0].conv.weight[0, 0, 1, 1] = 1.0
            head.sconvs[1].conv.weight[0, 0] = 1.0
            head.oconvs[0].oconv1.weight[1, 0, 1, 1] = 1.0
        heads[version] = head
    assert tuple(heads["v1"].sconvs[1].conv.weight.shape[2:]) == (2, 2)
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    with torch.no_grad():
        classes, offsets = heads["v1"](x)
        other, _ = heads["v2"](x)
    s = 1 / np.sqrt(1 + 1e-5)
    grid = x[0, 0].numpy()
    want = [s * s * grid[r:r + 2, c:c + 2].sum() for r in range(3) for c in range(3)]  # 10, 14, 18, 26, ...
    np.testing.assert_allclose(classes[0, :, 1].numpy(), want, rtol=1e-5)
    assert classes.shape == (1, 9, 2) and torch.all(classes[0, :, 0] == 0) and torch.all(offsets == 0)
    assert not np.allclose(other[0, :, 1].numpy(), want)

# SPDX-License-Identifier: GPL-2.0-or-later
"""SingleShotDetector and RetinaNet training, the exact parts: the SSD head arcgis.learn builds for each grid (the
shapes its .pth holds), arcgis.learn's anchor matching and losses on boxes whose losses are worked out by hand,
the grids chosen from the training boxes, and the ARGUMENTS of each family."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from dltools.core.backends.arcgis_learn.ssd import body_cut, build_ssd, grid_step, ssd_anchors  # noqa: E402
from dltools.core.errors import ArgumentError  # noqa: E402
from dltools.core.tools.train.anchor_detection import anchor_emd, default_grids, fine_grid  # noqa: E402
from dltools.core.tools.train.anchor_losses import (  # noqa: E402
    batch_loss,
    retinanet_chip_loss,
    retinanet_encode,
    retinanet_match,
    ssd_chip_loss,
    ssd_match,
    to_corners,
)
from dltools.core.tools.train.options import parse_arguments  # noqa: E402

LN2 = math.log(2)


def test_ssd_head_reaches_each_grid_as_arcgis_learn_ssd_version_2():
    assert grid_step(7, 4) == (2, 1, 3, False)  # 224-pixel chips, default grids [4, 2, 1]
    assert grid_step(4, 2) == (1, 0, 3, False)  # stride 1 without padding comes first
    assert grid_step(2, 1) == (1, 0, 2, False)  # a grid of one cell: one kernel the size of the map
    assert grid_step(2, 2) == (1, 1, 3, False)
    assert grid_step(2, 4) == (1, 1, 3, True)  # a larger grid: upsampled
    state = build_ssd(torchvision, "resnet34", 2, 224, 3, {"Grids": [4, 2, 1], "SSDVersion": 2}).state_dict()
    assert tuple(state["1.sconvs.1.conv.weight"].shape) == (256, 256, 3, 3)
    assert tuple(state["1.sconvs.3.conv.weight"].shape) == (256, 256, 2, 2)
    assert tuple(state["1.oconvs.2.oconv1.weight"].shape) == (3, 256, 3, 3)
    assert torch.all(state["1.oconvs.0.oconv1.bias"] == -4.0)  # arcgis.learn's initial class bias


def test_ssd_outputs_one_row_per_anchor_and_a_fine_first_grid_cuts_the_body():
    emd = {"Grids": [4], "Zooms": [0.7, 1.0], "Ratios": [[1.0, 1.0]], "SSDVersion": 2}
    net = build_ssd(torchvision, "resnet18", 2, 64, 3, emd).eval()
    classes, offsets = net(torch.zeros(1, 3, 64, 64))
    anchors, _ = ssd_anchors([4], [0.7, 1.0], [(1.0, 1.0)])
    assert classes.shape == (1, 32, 3) and offsets.shape == (1, 32, 4) and len(anchors) == 32
    assert body_cut("resnet34", 224, [14]) == (3, 14, 256)  # first grid 14 > 8, 7 cells from the 7 x 7 map
    assert body_cut("resnet50", 224, [8]) == (2, 7, 2048)
    cut = build_ssd(torchvision, "resnet34", 1, 224, 3, {"Grids": [14], "SSDVersion": 2})
    keys = cut.state_dict()
    assert not any(k.startswith("0.7.") for k in keys) and tuple(keys["1.sconvs.0.conv.weight"].shape)[1] == 256
    assert cut.eval()(torch.zeros(1, 3, 224, 224))[0].shape == (1, 14 * 14, 2)


def _ssd_anchors_2x2():
    anchors, cells = ssd_anchors([2], [1.0], [(1.0, 1.0)])  # four 0.5 x 0.5 anchors
    return anchors, cells


def test_ssd_matching_forces_each_truth_box_onto_its_best_anchor():
    anchors, _ = _ssd_anchors_2x2()
    truth = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.55, 0.55, 0.65, 0.65]])  # the second overlaps anchor 3 by 0.04
    overlap, index = ssd_match(truth, to_corners(anchors))
    assert overlap[0] == 1.99 and overlap[3] == 1.99  # both forced, however small the overlap
    assert index.tolist()[0] == 0 and index.tolist()[3] == 1
    assert overlap[1] == 0 and overlap[2] == 0


def test_ssd_loss_by_hand():
    anchors, cells = _ssd_anchors_2x2()
    truth, labels = torch.tensor([[0.0, 0.0, 0.5, 0.5]]), torch.tensor([2])
    classes, offsets = torch.zeros(4, 3), torch.zeros(4, 4)
    # logits 0: BCE ln 2 on each of 4 anchors x 2 classes, summed, / 2 classes; boxes = anchors: no location loss
    assert float(ssd_chip_loss(classes, offsets, truth, labels, anchors, cells)) == pytest.approx(4 * LN2)
    # focal: (1 - p_t) = 0.5 and alpha 0.25 on the one positive, 0.75 on the seven negatives
    focal = float(ssd_chip_loss(classes, offsets, truth, labels, anchors, cells, focal=True))
    assert focal == pytest.approx((0.25 * 0.5 + 7 * 0.75 * 0.5) * LN2 / 2)
    # tanh(offset) 0.5: centre + 0.125, size x 1.25 -> corners (0.0625, 0.0625, 0.6875, 0.6875) against the truth
    offsets[:] = math.atanh(0.5)
    got = float(ssd_chip_loss(classes, offsets, truth, labels, anchors, cells))
    assert got == pytest.approx(0.125 + 4 * LN2, rel=1e-5)
    weighted = float(ssd_chip_loss(classes, offsets, truth, labels, anchors, cells, location_factor=0.25))
    assert weighted == pytest.approx(0.25 * 0.125 + 0.75 * 4 * LN2, rel=1e-5)
    empty = float(ssd_chip_loss(classes, offsets, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), anchors, cells))
    assert empty == pytest.approx(4 * LN2)  # a chip without objects: every anchor learns background


def test_retinanet_matching_and_loss_by_hand():
    anchors = torch.tensor([[-0.5, -0.5, 1.0, 1.0], [-0.5, 0.5, 1.0, 1.0], [0.5, -0.5, 1.0, 1.0],
                            [0.5, 0.5, 1.0, 1.0]])
    truth = torch.tensor([[-0.5, -0.5, 1.0, 1.0], [-0.5, 0.85, 1.0, 1.0]])  # IoU 1 with anchor 0, 0.48 with 1
    labels = torch.tensor([1, 2])
    assert retinanet_match(anchors, truth).tolist() == [0, -2, -1, -1]  # positive, ignored, background x 2
    classes, offsets = torch.zeros(4, 2), torch.zeros(4, 4)
    # focal weights (p = 0.5): (0.5)^2 x 0.75 for the positive's class, (0.5)^2 x 0.25 for the other 5 cells
    want = (0.25 * 0.75 + 5 * 0.25 * 0.25) * LN2
    assert float(retinanet_chip_loss(classes, offsets, truth, labels, anchors)) == pytest.approx(want)
    offsets[0] = 1.0  # smooth L1 of 1 against the encoded truth 0: 0.5
    assert float(retinanet_chip_loss(classes, offsets, truth, labels, anchors)) == pytest.approx(0.5 + want)
    box = torch.tensor([[0.1, -0.2, 0.5, 2.0]])
    anchor = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert retinanet_encode(box, anchor).tolist()[0] == pytest.approx([1.0, -2.0, math.log(0.5) / 0.2,
                                                                       math.log(2.0) / 0.2])


def test_batch_loss_turns_pixel_boxes_into_each_family_s_frame():
    anchors, cells = _ssd_anchors_2x2()
    target = {"boxes": torch.tensor([[32.0, 0.0, 64.0, 32.0]]), "labels": torch.tensor([1])}  # x1 y1 x2 y2
    classes, offsets = torch.zeros(1, 4, 2), torch.zeros(1, 4, 4)
    classes[0, 1, 1] = 10.0  # anchor 1 (row 0, column 1) is sure of class 1: that is where the box is
    geometry = {"hw": (64, 64), "anchors": anchors, "cells": cells}
    low = float(batch_loss("SingleShotDetector", [classes, offsets], [target], geometry))
    classes[0, 1, 1], classes[0, 2, 1] = 0.0, 10.0  # the same confidence on anchor 2 (row 1, column 0)
    high = float(batch_loss("SingleShotDetector", [classes, offsets], [target], geometry))
    assert low == pytest.approx(3 * LN2, abs=1e-3)  # the three empty anchors' ln 2
    assert high == pytest.approx(3 * LN2 + 10, abs=1e-3)  # anchor 1 missed (ln 2), anchor 2 wrongly sure (10)


def test_grids_chosen_from_the_training_boxes():
    assert default_grids(np.full((20, 2), 0.25)) == [4]
    two_sizes = np.concatenate([np.full((10, 2), 0.5), np.full((10, 2), 0.125)])
    assert default_grids(two_sizes) == [8, 2]
    assert default_grids(np.zeros((0, 2))) == [4, 2, 1]


def test_a_grid_the_whole_body_reaches_by_upsampling_becomes_one_grid_on_the_cut_body():
    """64-pixel chips: the whole resnet18 ends on a 2 x 2 map, so grid 3 (or 5 then 3) would be upsampled from it;
    one grid of 9 instead (the fewest cells over 8 for which arcgis.learn's rule cuts the body: a 4 x 4 map), zooms
    keeping the anchor sizes (3 / 9 of the chip, 1.8 / 9 = 1 / 5).  Where the whole body's map reaches the grid by
    a convolution, or arcgis.learn cuts the body anyway, its choice stands."""
    assert fine_grid([3], "resnet18", 64) == ([9], [3.0], 2)
    assert fine_grid([5, 3], "resnet18", 64) == ([9], [1.8, 3.0], 2)
    assert fine_grid([6], "resnet50", 128) == ([9], [1.5], 4)
    assert fine_grid([10], "resnet34", 224) == ([12], [1.2], 7)  # 7 x 7 -> 10 upsampled; 12 is over 4 from 7
    assert body_cut("resnet34", 224, [12])[0] == 3 and body_cut("resnet18", 64, [9]) == (3, 4, 256)
    assert fine_grid([4, 2, 1], "resnet34", 224) is None  # 7 x 7 reaches 4 by a stride-2 convolution
    assert fine_grid([14], "resnet34", 224) is None  # arcgis.learn cuts the body itself
    assert fine_grid([2], "resnet18", 64) is None
    emd = {"Grids": [9], "Zooms": [3.0], "SSDVersion": 2}
    classes, _ = build_ssd(torchvision, "resnet18", 2, 64, 3, emd).eval()(torch.zeros(1, 3, 64, 64))
    anchors, _ = ssd_anchors([9], [3.0], [(1.0, 1.0)])
    assert classes.shape == (1, 81, 3) and torch.allclose(anchors[:, 2:], torch.full((81, 2), 1 / 3))


def test_arguments_of_each_family():
    args = parse_arguments("grids [4, 2];zooms [0.7, 1.0];ratios [[1.0, 1.0], [1.0, 0.5]];focal_loss true;"
                           "location_loss_factor 0.3", "SingleShotDetector")
    assert args == {"grids": [4, 2], "zooms": [0.7, 1.0], "ratios": [[1.0, 1.0], [1.0, 0.5]], "focal_loss": True,
                    "location_loss_factor": 0.3}
    assert parse_arguments("scales [1, 0.5];ratios [1.0]", "RetinaNet") == {"scales": [1, 0.5], "ratios": [1.0]}
    with pytest.raises(ArgumentError, match="scales is for RetinaNet, not SingleShotDetector"):
        parse_arguments("scales [1]", "SingleShotDetector")
    with pytest.raises(ArgumentError, match="grids is for SingleShotDetector, not RetinaNet"):
        parse_arguments("grids [4]", "RetinaNet")
    with pytest.raises(ArgumentError, match="location_loss_factor must be a number between 0 and 1"):
        parse_arguments("location_loss_factor 2", "SingleShotDetector")
    with pytest.raises(ArgumentError, match="zooms must be a list"):
        parse_arguments("zooms 1.0", "SingleShotDetector")


def test_anchor_keys_of_the_emd_and_their_refusals():
    from dltools.core.tools.train.layouts import TrainingData

    data = TrainingData(folder=None, layout="PASCAL_VOC_rectangles", images=[], labels=[], classes=[], emd={})
    base = {"ModelName": "SingleShotDetector", "ModelParameters": {"backbone": "resnet18", "backend": "pytorch"}}
    emd, line = anchor_emd(base, {"grids": [4], "zooms": [0.7, 1.0]}, data, (64, 64))
    assert (emd["backbone"], emd["Grids"], emd["Zooms"], emd["Ratios"], emd["SSDVersion"]) == (
        "resnet18", [4], [0.7, 1.0], [[1.0, 1.0]], 2)
    assert "grids [4] (given)" in line
    emd, line = anchor_emd(base, {"zooms": [0.7]}, data, (64, 64))  # zooms given: arcgis.learn's grids stand
    assert (emd["Grids"], emd["Zooms"]) == ([4, 2, 1], [0.7])
    emd, line = anchor_emd(base, {}, data, (64, 64))  # no boxes: [4, 2, 1], which the 2 x 2 map would upsample
    assert (emd["Grids"], emd["Zooms"]) == ([9], [2.25, 4.5, 9.0]) and "cut before its last stage" in line
    with pytest.raises(ArgumentError, match="grids must be whole numbers"):
        anchor_emd(base, {"grids": [4.5]}, data, (64, 64))
    with pytest.raises(ArgumentError, match=r"ratios must be a list of \[height, width\] pairs"):
        anchor_emd(base, {"grids": [4], "ratios": [1.0, 0.5]}, data, (64, 64))
    retina = {"ModelName": "RetinaNet", "ModelParameters": {"backbone": "resnet18", "backend": "pytorch"}}
    emd, _ = anchor_emd(retina, {"scales": [0.5, 1]}, data, (64, 64))
    assert emd["ModelParameters"] == {"backbone": "resnet18", "backend": "pytorch", "scales": [0.5, 1.0],
                                      "ratios": [0.5, 1.0, 2.0]}
    with pytest.raises(ArgumentError, match="scales must be a list of positive numbers"):
        anchor_emd(retina, {"scales": [0, 1]}, data, (64, 64))


def _retinanet(classes: int = 2):  # noqa: ANN202
    from dltools.core.backends.arcgis_learn.retinanet import build_retinanet

    torch.manual_seed(0)
    return build_retinanet(torchvision, "resnet18", classes, 3, {"ModelParameters": {"scales": [1.0], "ratios": [1.0]}})


def test_retinanet_heads_start_as_arcgis_learn_starts_them():
    """arcgis.learn's RetinaNet starts its subnets' last convolutions at zero weights, the classifier's bias at -4
    (every anchor about 0.018 object) and the regressor's at 0 (every box its anchor); fastai's convolutions are
    kaiming-normal with zero bias.  A .pth replaces all of it; training starts from it."""
    net = _retinanet()
    for head, bias in ((net.classifier, -4.0), (net.box_regressor, 0.0)):
        assert torch.all(head[4].weight == 0) and torch.all(head[4].bias == bias)
        for i in range(4):
            assert torch.all(head[i][0].bias == 0)
            assert float(head[i][0].weight.detach().std()) == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    assert torch.all(net.c5top5.bias == 0) and float(net.c5top5.weight.detach().std()) == pytest.approx(math.sqrt(2 / 512),
                                                                                                rel=0.05)
    classes, offsets, sizes = net.eval()(torch.rand(1, 3, 64, 64))
    assert torch.allclose(torch.sigmoid(classes), torch.full_like(classes, 1 / (1 + math.e ** 4)))
    assert torch.all(offsets == 0) and sizes == [[8, 8], [4, 4], [2, 2], [1, 1], [1, 1]]


def test_retinanet_head_subnets_train_as_they_run():
    """The trainer keeps the batch norms of RetinaNet's classifier and box_regressor (shared by the five pyramid
    levels) in eval mode: in training mode the subnets give exactly what they give in eval mode (what Detect Objects
    runs), while the body's batch norms train.  SSD has no shared subnet: its whole network trains."""
    from dltools.core.tools.train.anchor_detection import shared_head_norms, train_mode

    net = _retinanet()
    norms = shared_head_norms(net, "RetinaNet")
    assert len(norms) == 8 and not shared_head_norms(build_ssd(torchvision, "resnet18", 2, 64, 3, {"Grids": [4]}),
                                                     "SingleShotDetector")
    with torch.no_grad():  # as a trained model: statistics other than a fresh network's 0 and 1, last layers not 0
        for norm in norms:
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
        for head in (net.classifier, net.box_regressor):
            head[4].weight.normal_(0, 0.01)
    x = torch.rand(4, 3, 64, 64)
    train_mode(net, "RetinaNet")
    assert not any(n.training for n in norms) and net.encoder[1].training and net.classifier[0][0].training
    net.encoder.eval()  # the body aside, whose batch norms train as any network's do
    with torch.no_grad():
        trained = net(x)
        ran = net.eval()(x)
    assert torch.equal(trained[0], ran[0]) and torch.equal(trained[1], ran[1])
    net.train()  # what training did before: each level normalised by its own statistics
    net.encoder.eval()
    with torch.no_grad():
        assert not torch.allclose(net(x)[0], ran[0], atol=1e-2)

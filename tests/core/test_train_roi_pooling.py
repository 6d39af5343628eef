# SPDX-License-Identifier: GPL-2.0-or-later
"""The training's RoIAlign on small maps (two matrix products) gives torchvision's numbers and gradients; wrapped into
an R-CNN it changes neither its detections, its losses nor its state_dict; it leaves FPN maps, adaptive sampling and
large maps to torchvision's own pooler."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from dltools.core.backends.arcgis_learn.torchvision_nets import build_rcnn  # noqa: E402
from dltools.core.tools.train import roi_pooling  # noqa: E402
from dltools.core.tools.train.roi_pooling import map_scale, small_map_roi_align, use_small_map_pooling  # noqa: E402
from torchvision.ops import MultiScaleRoIAlign, roi_align  # noqa: E402


def _boxes(rows: int, cols: int, seed: int) -> list:
    """Three images' boxes in image pixels (the map at 1/32): some beyond the image's edges, some under a map cell
    wide, the second image without boxes."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        corner = torch.rand(20, 2, generator=gen, dtype=torch.float64) * torch.tensor([cols, rows]) * 32 * 1.4 - 40
        size = torch.rand(20, 2, generator=gen, dtype=torch.float64) * 80
        out.append(torch.cat([corner, corner + size], 1))
    out[1] = out[1][:0]
    return out


@pytest.mark.parametrize(("rows", "cols", "pooled"), [(3, 3, 7), (3, 3, 14), (5, 7, 7), (12, 12, 14), (1, 1, 7)])
def test_values_and_gradients_equal_torchvision_roi_align(rows, cols, pooled):
    feature = torch.randn(3, 16, rows, cols, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                          requires_grad=True)
    boxes = _boxes(rows, cols, seed=rows * 100 + cols)
    upstream = torch.randn(40, 16, pooled, pooled, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    theirs = roi_align(feature, boxes, (pooled, pooled), 1 / 32, 2, False)
    theirs.backward(upstream)
    their_grad, feature.grad = feature.grad.clone(), None
    ours = small_map_roi_align(torch, feature, boxes, 1 / 32, (pooled, pooled), 2)
    ours.backward(upstream)
    assert ours.shape == theirs.shape == (40, 16, pooled, pooled)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    assert torch.allclose(feature.grad, their_grad, rtol=0, atol=1e-10)
    assert float(theirs.detach().abs().sum()) > 0 and float(their_grad.abs().sum()) > 0  # not a comparison of zeros


def test_map_scale_is_torchvisions():
    assert map_scale(torch.zeros(1, 1, 3, 3), [(96, 96), (90, 96)]) == 1 / 32
    assert map_scale(torch.zeros(1, 1, 25, 25), [(100, 120)]) == 1 / 4


def _rcnn(seed: int):  # noqa: ANN202
    torch.manual_seed(seed)
    return build_rcnn(torchvision, "MaskRCNN", "resnet18", 2, 64, 3)


def _targets() -> list:
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 12:34] = 1
    masks[1, 40:60, 35:50] = 1
    boxes = torch.tensor([[12.0, 10, 34, 30], [35, 40, 50, 60]])
    return [{"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks},
            {"boxes": boxes[:1], "labels": torch.tensor([2]), "masks": masks[:1]}]


def test_wrapped_mask_rcnn_keeps_its_state_dict_losses_and_detections():
    plain, wrapped = _rcnn(5), _rcnn(5)
    keys = list(wrapped.state_dict())
    assert use_small_map_pooling(wrapped) == 2
    assert use_small_map_pooling(wrapped) == 0  # already wrapped
    assert list(wrapped.state_dict()) == keys  # the poolers hold no weights
    images = list(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    plain.roi_heads.score_thresh = wrapped.roi_heads.score_thresh = 0.0  # every detection, random weights
    with torch.no_grad():
        theirs, ours = plain.eval()(images), wrapped.eval()(images)
    for a, b in zip(theirs, ours):
        assert len(a["boxes"]) > 0 and a["labels"].tolist() == b["labels"].tolist()
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3) and torch.allclose(a["scores"], b["scores"], atol=1e-5)
        assert torch.allclose(a["masks"], b["masks"], atol=1e-5)
    torch.manual_seed(0)  # the proposal sampler draws at random
    their_losses = plain.train()(images, _targets())
    torch.manual_seed(0)
    our_losses = wrapped.train()(images, _targets())
    assert their_losses.keys() == our_losses.keys()
    for name, value in their_losses.items():
        assert abs(float(value.detach()) - float(our_losses[name].detach())) < 1e-5, name
    sum(our_losses.values()).backward()
    sum(their_losses.values()).backward()
    grads = [(a.grad, b.grad) for a, b in zip(plain.parameters(), wrapped.parameters()) if a.grad is not None]
    assert len(grads) == len(list(plain.parameters()))  # the body's too: the pooler passes gradients back
    assert all(float((a - b).norm()) <= 1e-4 * float(a.norm()) for a, b in grads)  # measured: 2e-6 at most


def test_fpn_maps_adaptive_sampling_and_large_maps_go_to_torchvisions_pooler(monkeypatch):
    features = {"0": torch.randn(1, 8, 12, 12), "1": torch.randn(1, 8, 6, 6)}
    boxes = [torch.tensor([[4.0, 4, 40, 30], [10, 20, 44, 47]])]
    shapes = [(48, 48)]
    calls = []
    fast_path = roi_pooling.small_map_roi_align
    monkeypatch.setattr(roi_pooling, "small_map_roi_align", lambda *a: calls.append(1) or fast_path(*a))
    wrapper = roi_pooling._pooler_class()
    for pooler, maps in ((MultiScaleRoIAlign(["0", "1"], 7, 2), features),  # two maps: FPN
                         (MultiScaleRoIAlign(["0"], 7, -1), {"0": features["0"]})):  # adaptive sampling
        assert torch.equal(wrapper(pooler)(maps, boxes, shapes), pooler(maps, boxes, shapes))
    assert not calls
    single = MultiScaleRoIAlign(["0"], 7, 2)
    assert torch.allclose(wrapper(single)(features, boxes, shapes), single(features, boxes, shapes), atol=1e-5)
    assert len(calls) == 1  # one small map: the matrix products
    monkeypatch.setattr(roi_pooling, "MAX_WEIGHTS", 2 * 49 * 144 - 1)  # one number short of these two boxes
    assert torch.equal(wrapper(single)(features, boxes, shapes), single(features, boxes, shapes))
    assert len(calls) == 1


def test_predict_with_a_minimum_score_gives_exactly_the_stronger_detections():
    """MaskRCNN's validation asks the heads for the detections over 0.5 (arcgis.learn's detect_thresh): the same
    boxes, scores, labels and masks as filtering all of them, and the heads' own threshold is left as it was."""
    from types import SimpleNamespace

    from dltools.core.tools.train.detection import VALIDATION_SCORE, DetectionTrainer

    assert VALIDATION_SCORE == {"MaskRCNN": 0.5}
    module = _rcnn(7)
    module.roi_heads.score_thresh = 0.0
    trainer = SimpleNamespace(module=module, torch=torch, device=torch.device("cpu"))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    every = DetectionTrainer.predict(trainer, images)
    cut = float(np.median(np.concatenate([f["scores"] for f in every])))
    strong = DetectionTrainer.predict(trainer, images, cut)
    assert module.roi_heads.score_thresh == 0.0
    for a, b in zip(every, strong):
        keep = a["scores"] > cut
        assert 0 < keep.sum() < len(keep) and len(b["scores"]) == keep.sum()
        for key in ("boxes", "scores", "labels", "masks"):
            assert np.allclose(a[key][keep], b[key], atol=1e-6), key


HUGE_PAGE_CHILD = """
import os, sys
os.environ.pop("THP_MEM_ALLOC_ENABLE", None)
from dltools.core.backends.torch_backend import import_torch
torch = import_torch()
grad = torch.ones(64 << 20, dtype=torch.uint8)  # a 64 MB tensor, as an R-CNN's largest gradient (100 MB)
huge = [int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages:")]
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge[0], int(grad.sum()))
"""


def test_import_torch_puts_large_tensors_on_huge_pages():
    """import_torch sets PyTorch's THP_MEM_ALLOC_ENABLE before torch is first imported (a child process: this one
    imported torch long ago), and a large tensor then lies on 2 MB pages (where the system allows them)."""
    import subprocess
    import sys
    from pathlib import Path

    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.is_file() or "[never]" in mode.read_text() or not Path("/proc/self/smaps_rollup").is_file():
        pytest.skip("this system has no transparent huge pages")
    env = {k: v for k, v in __import__("os").environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env["PYTHONPATH"] = __import__("os").pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", HUGE_PAGE_CHILD], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout.split()
    assert out[0] == "1" and int(out[2]) == 64 << 20
    assert int(out[1]) >= 32 * 1024, out  # kB on huge pages: most of the 64 MB

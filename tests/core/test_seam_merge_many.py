# SPDX-License-Identifier: GPL-2.0-or-later
"""The seam merge of Detect Objects at 100,000 boxes per tile: the same groups as the rule written out pair by pair,
every survivor of a real run exactly, and memory measured as the peak of a fresh child process (its VmHWM; the old
merge listed every pair of touching boxes: 24 GB and more)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dltools.core.detection import nms, seams
from many_boxes import PILE, lattice_detector, lattice_raster

TESTS = Path(__file__).resolve().parents[1]
PLUGINS = TESTS.parent / "build" / "plugins"


def reference_merge(boxes, scores, classes, chips, cut, thr):
    """The seam merge's rule over every pair, as plainly as it can be written (small inputs only)."""
    n = len(scores)
    root = list(range(n))

    def find(a):
        while root[a] != a:
            a = root[a]
        return a

    def cover(a, b):
        ox = min(a[2], b[2]) - max(a[0], b[0])
        oy = min(a[3], b[3]) - max(a[1], b[1])
        sx = ox >= 0.5 * min(a[2] - a[0], b[2] - b[0])
        sy = oy >= 0.5 * min(a[3] - a[1], b[3] - b[1])
        return (sx and (sy or oy >= -1)) or (sy and ox >= -1)

    def overlap(a, b):
        ox = min(a[2], b[2]) - max(a[0], b[0])
        oy = min(a[3], b[3]) - max(a[1], b[1])
        return ox >= 0.5 * min(a[2] - a[0], b[2] - b[0]) and oy >= 0.5 * min(a[3] - a[1], b[3] - b[1])

    def touch(a, b):
        return a[0] - 1 <= b[2] + 1 and b[0] - 1 <= a[2] + 1 and a[1] - 1 <= b[3] + 1 and b[1] - 1 <= a[3] + 1

    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)
             if classes[i] == classes[j] and chips[i] != chips[j] and touch(boxes[i], boxes[j])]
    join = {(i, j) for i, j in pairs if (cut[i] and cut[j] and cover(boxes[i], boxes[j]))
            or ((cut[i] or cut[j]) and overlap(boxes[i], boxes[j]))}
    for i, j in join:
        ri, rj = find(i), find(j)
        root[max(ri, rj)] = min(ri, rj)
    group_of = [find(i) for i in range(n)]
    order = sorted(range(n), key=lambda k: (-scores[k], k))
    groups: dict[int, list[int]] = {}
    for k in order:
        groups.setdefault(group_of[k], []).append(k)
    keys = sorted(groups)  # group index order: by root
    box = {g: [min(boxes[k][0] for k in groups[g]), min(boxes[k][1] for k in groups[g]),
               max(boxes[k][2] for k in groups[g]), max(boxes[k][3] for k in groups[g])] for g in keys}

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / union if union > 0 else 0.0

    edges = {(group_of[i], group_of[j]) for i, j in pairs
             if (i, j) not in join and not cut[i] and not cut[j] and iou(boxes[i], boxes[j]) > thr}
    for a in keys:
        for b in keys:
            if a < b and (len(groups[a]) > 1 or len(groups[b]) > 1) and classes[a] == classes[b] \
                    and iou(box[a], box[b]) > max(thr, 0.5):
                edges.add((a, b))
    best = {g: scores[groups[g][0]] for g in keys}
    rank = sorted(keys, key=lambda g: (-best[g], keys.index(g)))
    alive = set(keys)
    for g in rank:
        if g in alive:
            alive -= {b for a, b in edges if a == g and b != g} | {a for a, b in edges if b == g and a != g}
    return [groups[g] for g in rank if g in alive]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_same_groups_as_the_rule_pair_by_pair(seed):
    rng = np.random.default_rng(seed)
    for trial in range(40):
        n = int(rng.integers(2, 120))
        xy = rng.integers(0, 120, (n, 2)).astype(float)
        boxes = np.concatenate([xy, xy + rng.integers(1, 30, (n, 2))], axis=1)
        k = int(rng.integers(0, n))
        boxes[k:k + 4] = boxes[k]  # identical copies, in one chip or several
        if trial % 5 == 0:
            boxes[0] = [-40, -40, 400, 400]  # one box over everything
        scores = np.round(rng.uniform(0, 1, n), 1)  # ties: input order decides
        classes, chips = rng.integers(0, 2, n), rng.integers(0, 4, n)
        cut = rng.uniform(size=n) < 0.4
        for thr in (0.0, 0.3, 1.0):
            got = [g.tolist() for g in seams.seam_merge(boxes, scores, classes, chips, cut, thr)]
            assert got == reference_merge(boxes.tolist(), scores.tolist(), classes, chips, cut, thr), (trial, thr)


def test_copies_of_one_box_are_kept_or_dropped_together():
    """200,000 copies of one box in two chips (a model kept by nms_overlap 1): cut, they are one object; whole, the
    most confident copy's chip keeps all its copies (no pair within a chip), found without 2e10 pairs."""
    n = 200_000
    boxes = np.tile([100.0, 100.0, 120.0, 120.0], (n, 1))
    chips = np.repeat([0, 1], n // 2)
    scores = np.linspace(0.1, 0.9, n)  # the best copy is the last, in chip 1
    classes = np.zeros(n, np.int64)
    groups = seams.seam_merge(boxes, scores, classes, chips, np.ones(n, bool), 0.1)
    assert len(groups) == 1 and groups[0][0] == n - 1 and len(groups[0]) == n
    groups = seams.seam_merge(boxes, scores, classes, chips, np.zeros(n, bool), 0.1)
    assert sorted(int(g[0]) for g in groups) == list(range(n // 2, n))
    assert len(seams.seam_merge(boxes, scores, classes, chips, np.zeros(n, bool), 1.0)) == n


def test_a_box_of_1e30_costs_one_pass_not_every_pair():
    """One box of +-1e30 among 100,000 (the old grid made its cell the size of that box: every pair, 596 GiB)."""
    side = 316
    xs, ys = np.meshgrid(np.arange(side) * 10.0, np.arange(side) * 10.0)
    boxes = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 8, ys.ravel() + 8], axis=1)
    boxes[0] = [-1e30, -1e30, 1e30, 1e30]
    n = len(boxes)
    chips = (np.arange(n) % 7).astype(np.int64)
    scores = np.full(n, 0.5)
    scores[0] = 0.9
    classes = np.zeros(n, np.int64)
    groups = seams.seam_merge(boxes, scores, classes, chips, np.zeros(n, bool), 0.1)
    # whole objects: only IoU counts, and every real box's IoU with the huge one is ~0
    assert len(groups) == n
    assert len(nms.candidate_pairs(boxes)[0]) == n - 1  # the huge box touches every other, nothing else touches


def _child(raster: Path, model: Path, arguments: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), str(TESTS)]))
    done = subprocess.run([sys.executable, str(TESTS / "many_boxes.py"), str(raster), str(model), arguments],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_100000_boxes_per_tile_every_survivor_once_in_bounded_memory(tmp_path):
    """4 tiles of 960 pixels, each answering 102,400 dots and 100,000 copies of one box (the pile), with
    ``nms_overlap 1`` so that no copy is suppressed. 360,000 dots come out, one per lattice point of the raster (the
    copies in the padding left out, the tile whose centre holds a dot keeping it); each tile's pile lies in its
    centre and touches nothing of its class in another tile (the left column's cut by the tile's edge), so each of
    their 400,000 copies is an object. The old merge listed the 5e9 pairs of each pile."""
    model = lattice_detector(tmp_path / "lattice.onnx", 960)
    raster = lattice_raster(tmp_path / "dark.tif", 1800, 1800)
    out = _child(raster, model, "padding 30;batch_size 1;threshold 0.5;nms_overlap 1")
    assert out["exact"] and out["objects"] == out["distinct"] == out["expected"] == 360_000, out
    assert out["piles"] == 4 * PILE
    assert out["pile_boxes"] == [[850.0, 10.0, 930.0, 30.0], [850.0, 910.0, 930.0, 930.0],
                                 [1750.0, 10.0, 1800.0, 30.0], [1750.0, 910.0, 1800.0, 930.0]]  # the last clipped
    assert out["before_merge"] == out["objects"] + out["piles"]  # nothing from the padding reaches the merge
    assert out["peak_mb"] < 1024, out

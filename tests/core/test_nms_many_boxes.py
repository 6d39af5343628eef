# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-tile NMS of a model that answers 100,000 boxes: memory grows with the boxes, not their pairs, and the
survivors are exactly those of the pairwise greedy NMS."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from dltools.core.detection.nms import (
    MANY_BOXES,
    box_iou_pairs,
    candidate_pairs,
    greedy_suppress,
    nms_boxes,
    priority_order,
)
from dltools.core.detection.nms_many import greedy_nms_many, too_many_pairs


def pairwise(boxes, scores, classes, thr):
    i, j = candidate_pairs(boxes)
    if classes is not None:
        same = classes[i] == classes[j]
        i, j = i[same], j[same]
    over = box_iou_pairs(boxes, i, j) > thr
    return greedy_suppress(scores, i[over], j[over])


def test_the_same_survivors_as_pairwise_greedy_nms():
    rng = np.random.default_rng(7)
    for n, spread in ((3000, 300.0), (2500, 60.0)):
        xy = rng.uniform(0, spread, (n, 2))
        wh = rng.uniform(2, 30, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        boxes[:40] = [0, 0, 400, 400]  # a few big ones compare with everything
        scores = np.round(rng.uniform(0, 1, n), 2)  # ties: input order decides
        classes = rng.integers(0, 3, n)
        for cls in (None, classes):
            assert np.array_equal(greedy_nms_many(boxes, scores, cls, 0.4), pairwise(boxes, scores, cls, 0.4))


def test_100000_identical_boxes_in_a_few_megabytes():
    n = 100_000
    boxes = np.tile([10.0, 10.0, 20.0, 20.0], (n, 1))
    assert too_many_pairs(boxes)  # listing their pairs would take 5e9 of them
    scores = np.linspace(0.5, 0.9, n)
    tracemalloc.start()
    started = time.perf_counter()
    kept = nms_boxes(boxes, scores, np.zeros(n, np.int64), 0.5)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert kept.tolist() == [n - 1] and n > MANY_BOXES
    assert peak < 300 * 2**20, f"{peak / 2**20:.0f} MB"
    assert seconds < 30


def test_100000_separate_boxes_all_survive():
    side = 316
    xs, ys = np.meshgrid(np.arange(side) * 10.0, np.arange(side) * 10.0)
    boxes = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 8, ys.ravel() + 8], axis=1)
    scores = np.full(len(boxes), 0.7)
    tracemalloc.start()
    kept = nms_boxes(boxes, scores, None, 0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(kept) == len(boxes) and np.array_equal(kept, priority_order(scores))
    assert peak < 300 * 2**20, f"{peak / 2**20:.0f} MB"

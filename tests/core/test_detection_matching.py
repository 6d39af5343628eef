# SPDX-License-Identifier: GPL-2.0-or-later
"""The shared detection scoring rule (core/detection/matching.py) on hand-made boxes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from core.detection.matching import DetectionTally, average_precision, box_iou_matrix, greedy_match


def test_box_iou_matrix_exact():
    iou = box_iou_matrix([[0, 0, 10, 10], [5, 0, 15, 10]], [[0, 0, 10, 10], [10, 0, 20, 10], [30, 30, 30, 40]])
    assert iou.tolist() == [[1.0, 0.0, 0.0], [pytest.approx(1 / 3), pytest.approx(1 / 3), 0.0]]


def test_a_detection_overlapping_two_truths_takes_the_better_and_leaves_the_other():
    truths = [[0, 0, 10, 10], [1, 0, 11, 10]]  # IoU with the detections' box: 1 and 9/11
    dets = [[0, 0, 10, 10], [0, 0, 10, 10]]
    iou = box_iou_matrix(dets, truths)
    matched = greedy_match(np.array([0.9, 0.8]), [1, 1], [1, 1], iou, 0.5)
    # the first takes the exact truth; the second the free one (PASCAL VOC would call it a false positive)
    assert matched.tolist() == [0, 1]
    # below 9/11 the second truth is too far: the second detection is a false positive
    assert greedy_match(np.array([0.9, 0.8]), [1, 1], [1, 1], iou, 0.85).tolist() == [0, -1]


def test_ties_in_confidence_keep_input_order_and_classes_never_mix():
    truths = [[0, 0, 10, 10]]
    dets = [[0, 0, 10, 9], [0, 0, 10, 10]]  # the second fits better, but equal confidence: the first comes first
    matched = greedy_match(np.array([0.7, 0.7]), ["car", "car"], ["car"], box_iou_matrix(dets, truths), 0.5)
    assert matched.tolist() == [0, -1]
    matched = greedy_match(np.array([0.7, 0.7]), ["tree", "car"], ["car"], box_iou_matrix(dets, truths), 0.5)
    assert matched.tolist() == [-1, 0]


def test_average_precision_all_points_interpolation():
    # hits by confidence: T T F T, five truths -> precision 1 1 2/3 3/4, recall .2 .4 .4 .6
    ap = average_precision(np.array([1, 1, 2 / 3, 3 / 4]), np.array([0.2, 0.4, 0.4, 0.6]))
    assert ap == pytest.approx(0.2 * 1 + 0.2 * 1 + 0.2 * 0.75)
    assert average_precision(np.array([]), np.array([])) == 0.0
    assert average_precision(np.array([1.0]), np.array([1.0])) == 1.0


def test_tally_over_two_images_counts_tp_fp_fn_and_map():
    tally = DetectionTally(min_iou=0.5)
    # image 1: class 1 truths A, B; detections: on A (0.9), on nothing (0.8), on B (0.6)
    m1 = tally.add_boxes(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]]), np.array([0.9, 0.8, 0.6]),
                         [1, 1, 1], np.array([[0, 0, 10, 10], [20, 0, 30, 10]]), [1, 1])
    assert m1.tolist() == [0, -1, 1]
    # image 2: class 1 truth missed; class 2: one detection on its truth (0.95), one false positive (0.5)
    tally.add_boxes(np.array([[0, 0, 10, 10], [40, 40, 50, 50]]), np.array([0.95, 0.5]), [2, 2],
                    np.array([[100, 100, 110, 110], [0, 0, 10, 10]]), [1, 2])
    c1, c2 = tally.classes()
    assert (c1.class_value, c1.true_positives, c1.false_positives, c1.false_negatives) == (1, 2, 1, 1)
    assert (c1.precision, c1.recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert c1.f1 == pytest.approx(2 / 3)
    # class 1 by confidence: T F T over 3 truths -> AP = 1/3 * 1 + 1/3 * 2/3
    assert c1.ap == pytest.approx(1 / 3 + 2 / 9)
    assert (c2.true_positives, c2.false_positives, c2.false_negatives, c2.ap) == (1, 1, 0, 1.0)
    assert tally.mean_ap() == pytest.approx((1 / 3 + 2 / 9 + 1.0) / 2)


def test_a_class_without_truth_has_no_ap_and_is_left_out_of_the_mean():
    tally = DetectionTally(min_iou=0.5)
    tally.add_boxes(np.array([[0, 0, 1, 1]]), np.array([0.9]), [7], np.zeros((0, 4)), [])
    (c,) = tally.classes()
    assert (c.true_positives, c.false_positives, c.false_negatives, c.ap, c.precision) == (0, 1, 0, None, 0.0)
    assert tally.mean_ap() is None

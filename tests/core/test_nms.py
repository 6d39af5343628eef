# SPDX-License-Identifier: GPL-2.0-or-later
"""NMS, the spatial index and the seam merge, on hand-made boxes and polygons with known survivors."""

from __future__ import annotations

import numpy as np
import pytest
from dltools.core.detection import nms, seams
from osgeo import ogr


def rect(x1, y1, x2, y2) -> ogr.Geometry:
    return ogr.CreateGeometryFromWkt(f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))")


def brute_pairs(boxes, margin=0.0):
    out = set()
    b = boxes + np.array([-margin, -margin, margin, margin])
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            if b[i, 0] <= b[j, 2] and b[j, 0] <= b[i, 2] and b[i, 1] <= b[j, 3] and b[j, 1] <= b[i, 3]:
                out.add((i, j))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidate_pairs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(1, 12, (300, 2))
    wh[:3] = 150  # a few boxes far bigger than the grid cell
    boxes = np.concatenate([xy, xy + wh], axis=1)
    for margin in (0.0, 1.0):
        i, j = nms.candidate_pairs(boxes, margin)
        assert set(zip(i.tolist(), j.tolist())) == brute_pairs(boxes, margin)
        assert len(i) == len(set(zip(i.tolist(), j.tolist())))


def test_nms_boxes_per_class_and_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [30, 30, 40, 40]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms.nms_boxes(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]
    assert nms.nms_boxes(boxes, scores, None, 0.5).tolist() == [0, 3]
    assert nms.nms_boxes(boxes, scores, classes, 0.95).tolist() == [0, 1, 2, 3]  # IoU 9/11 < 0.95


def test_nms_rotated_boxes_use_polygon_iou():
    # two diamonds whose axis-aligned boxes coincide but which overlap by a quarter only
    corners = np.array([[[5, 0], [10, 5], [5, 10], [0, 5]], [[5, 0], [10, 5], [5, 10], [0, 5]]], float)
    corners[1] += [5, 0]
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    kept = nms.nms_boxes(boxes, np.array([0.9, 0.8]), None, 0.2, corners=corners)
    assert kept.tolist() == [0, 1]  # IoU = 12.5 / 87.5 = 0.14 by polygons (0.33 by boxes)
    assert nms.nms_boxes(boxes, np.array([0.9, 0.8]), None, 0.1, corners=corners).tolist() == [0]


def test_arcgis_two_pass_differs_from_plain_greedy():
    # X (class b, 0.95) overlaps A (class a, 0.9); A overlaps B (class a, 0.8); X and B do not touch.
    x, a, b = rect(0, 0, 10, 10), rect(8, 0, 18, 10), rect(16, 0, 26, 10)
    geoms, scores, classes = [x, a, b], np.array([0.95, 0.9, 0.8]), ["b", "a", "a"]
    # two-pass: class a alone keeps A and removes B; then across classes X removes A -> only X
    assert nms.nms_polygons(geoms, scores, classes, 0.0).tolist() == [True, False, False]
    # one class (no class field): plain greedy: X removes A, B survives because A is gone
    assert nms.nms_polygons(geoms, scores, None, 0.0).tolist() == [True, False, True]
    # the ratio: IoU(X, A) = IoU(A, B) = 20 / 180 = 0.111
    assert nms.nms_polygons(geoms, scores, classes, 0.12).tolist() == [True, True, True]
    assert nms.nms_polygons(geoms, scores, classes, 0.11).tolist() == [True, False, False]


def test_nms_polygons_exact_areas_and_touching():
    tri = ogr.CreateGeometryFromWkt("POLYGON((0 0,10 0,0 10,0 0))")
    other = ogr.CreateGeometryFromWkt("POLYGON((10 10,10 2,2 10,10 10))")  # boxes overlap, triangles do not
    touching = rect(10, 0, 20, 10)  # shares an edge with the first box: no area in common
    geoms = [tri, other, rect(0, 0, 10, 10), touching]
    keep = nms.nms_polygons(geoms, np.array([0.9, 0.8, 0.1, 0.7]), None, 0.0)
    assert keep.tolist() == [True, True, False, True]


def test_greedy_suppress_matches_reference_greedy():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, (2000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(3, 15, (2000, 2))], axis=1)
    scores = rng.uniform(size=2000)
    keep = np.zeros(2000, bool)
    keep[nms.nms_boxes(boxes, scores, None, 0.3)] = True
    alive = np.ones(2000, bool)
    for k in np.argsort(-scores, kind="stable"):  # textbook greedy NMS
        if alive[k]:
            iou = nms.box_iou_pairs(boxes, np.full(2000, k), np.arange(2000))
            alive &= ~((iou > 0.3) & (np.arange(2000) != k))
            alive[k] = True
        # a removed box suppresses nothing
    assert (keep == alive).all()


def test_seam_merge_unites_pieces_and_drops_copies():
    boxes = np.array([
        [10, 10, 20, 30],  # 0: left piece of an object cut by the seam at x=20 (chip 0)
        [20, 10, 35, 30],  # 1: its right piece (chip 1)
        [50, 50, 60, 60],  # 2: whole object, chip 0
        [50, 50, 60, 60],  # 3: the same object seen whole by chip 1 (exclude_pad_detections off)
        [55, 50, 60, 60],  # 4: a cut piece of it in chip 2
        [20, 80, 30, 90],  # 5: an object of another class touching piece-like at the seam
        [10, 80, 20, 90],  # 6: a cut object of class 0 next to it: other class, not united
        [100, 100, 110, 110],  # 7: whole, chip 0
        [101, 100, 111, 110],  # 8: a whole copy from chip 1 (IoU 0.82): a duplicate, dropped
        [100, 100, 110, 110],  # 9: same place, chip 1, but another class: kept
    ], float)
    scores = np.array([0.7, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3, 0.35, 0.36, 0.2])
    classes = np.array([0, 0, 0, 0, 0, 1, 0, 0, 0, 1])
    chips = np.array([0, 1, 0, 1, 2, 1, 0, 0, 1, 1])
    cut = np.array([True, True, False, False, True, True, True, False, False, False])
    groups = seams.seam_merge(boxes, scores, classes, chips, cut, 0.1)
    # 2, 3 and 4 are one object (4 is a cut piece inside both copies)
    assert [g.tolist() for g in groups] == [[1, 0], [2, 3, 4], [5], [8], [6], [9]]
    groups = seams.seam_merge(boxes, scores, classes, chips, cut, 0.9)
    assert [8] in [g.tolist() for g in groups] and [7] in [g.tolist() for g in groups]


def test_nms_polygons_survives_invalid_polygons():
    bowtie = ogr.CreateGeometryFromWkt("POLYGON((0 0,10 10,10 0,0 10,0 0))")  # self-intersecting ring
    square = rect(0, 0, 10, 10)
    keep = nms.nms_polygons([square, bowtie], np.array([0.9, 0.8]), None, 0.0)
    assert keep.tolist() == [True, False]


@pytest.mark.parametrize("seed", range(6))
def test_nms_top_k_is_the_first_k_of_greedy_nms(seed):
    """nms_top_k stops after k survivors: the same indices, in the same order, as the first k of nms_boxes."""
    from dltools.core.detection.nms import nms_boxes, nms_top_k

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (600, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (600, 2))], axis=1)
    scores = rng.uniform(0, 1, 600).round(2)  # ties too: broken by input order in both
    for overlap, k in ((0.1, 50), (0.5, 7), (0.0, 20), (0.3, 1000)):
        full = nms_boxes(boxes, scores, None, overlap)
        np.testing.assert_array_equal(nms_top_k(boxes, scores, overlap, k), full[:k])

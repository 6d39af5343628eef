# SPDX-License-Identifier: GPL-2.0-or-later
"""Compute Accuracy (core/tools/accuracy): hand-made rasters and polygons with a known confusion matrix and kappa,
hand-made detections with known TP/FP/FN and AP."""

from __future__ import annotations

import numpy as np
import pytest
from builders import write_raster
from osgeo import ogr

from core.errors import InputDataError
from core.tools.accuracy.objects import class_key, object_detection_accuracy
from core.tools.accuracy.pixels import Reference, parse_class_mapping, pixel_accuracy
from core.tools.accuracy.report import object_report, pixel_report

X0, Y0 = 500000.0, 4000000.0
CLASSIFIED = np.array([[0, 0, 1, 1],
                       [0, 0, 1, 1],
                       [2, 2, 1, 1],
                       [2, 2, 2, 255]], np.uint8)  # 255: NoData
REFERENCE = np.array([[10, 10, 11, 11],
                      [10, 11, 11, 11],
                      [12, 10, 11, 12],
                      [12, 12, 12, 12]], np.uint8)
MAPPING = {10: 0, 11: 1, 12: 2}
#: rows classified 0, 1, 2; columns reference 0, 1, 2 (the NoData pixel left out)
EXPECTED = [[3, 1, 0], [0, 5, 1], [1, 0, 4]]
KAPPA = (12 / 15 - 77 / 225) / (1 - 77 / 225)


def rect(c0, r0, c1, r1) -> bytes:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)):
        ring.AddPoint_2D(X0 + c, Y0 - r)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return bytes(poly.ExportToWkb())


@pytest.fixture
def classified(tmp_path):
    return str(write_raster(tmp_path / "classified.tif", CLASSIFIED, origin=(X0, Y0), nodata=255))


def test_known_confusion_matrix_kappa_and_per_class(classified, tmp_path):
    reference = write_raster(tmp_path / "reference.tif", REFERENCE, origin=(X0, Y0))
    result = pixel_accuracy(classified, Reference(raster=str(reference)), MAPPING)
    assert result.classes == [0, 1, 2]
    assert result.matrix.tolist() == EXPECTED
    assert result.overall_accuracy() == pytest.approx(0.8)
    assert result.kappa() == pytest.approx(KAPPA)
    c0, c1, c2 = result.per_class()
    assert (c0["precision"], c0["recall"], c0["iou"]) == (pytest.approx(3 / 4), pytest.approx(3 / 4), pytest.approx(3 / 5))
    assert (c1["precision"], c1["recall"], c1["iou"]) == (pytest.approx(5 / 6), pytest.approx(5 / 6), pytest.approx(5 / 7))
    assert c2["f1"] == pytest.approx(4 / 5)
    assert result.mean_iou() == pytest.approx((3 / 5 + 5 / 7 + 4 / 6) / 3)
    html = pixel_report(result, "test")
    assert "Cohen's kappa" in html and f"{KAPPA:.4f}" in html and "background: rgb(" in html


def test_reference_on_another_grid_is_read_nearest_on_the_classified_grid(classified, tmp_path):
    fine = np.repeat(np.repeat(REFERENCE, 2, axis=0), 2, axis=1)  # half-metre pixels, a larger extent
    padded = np.full((12, 12), 10, np.uint8)
    padded[2:10, 2:10] = fine
    reference = write_raster(tmp_path / "fine.tif", padded, origin=(X0 - 1, Y0 + 1), cell=0.5)
    result = pixel_accuracy(classified, Reference(raster=str(reference)), MAPPING)
    assert result.matrix.tolist() == EXPECTED


def test_polygons_and_points_as_reference(classified):
    # polygons: the left half is class 0, the right column block class 1 (rows 0-1 only)
    features = [(1, rect(0, 0, 2, 4), 0), (2, rect(2, 0, 4, 2), 1)]
    result = pixel_accuracy(classified, Reference(features=features))
    # left half: classified 0,0,0,0,2,2,2,2 against 0; right top: 1,1,1,1 against 1
    assert result.classes == [0, 1, 2]
    assert result.matrix.tolist() == [[4, 0, 0], [0, 4, 0], [4, 0, 0]]
    point = ogr.Geometry(ogr.wkbPoint)
    point.AddPoint_2D(X0 + 3.5, Y0 - 2.5)  # pixel (column 3, row 2): classified 1
    result = pixel_accuracy(classified, Reference(features=[(1, bytes(point.ExportToWkb()), 2)]))
    assert result.classes == [1, 2] and result.matrix.tolist() == [[0, 1], [0, 0]]


def test_sampling_draws_known_counts_and_repeats_with_the_seed(classified, tmp_path):
    reference = str(write_raster(tmp_path / "reference.tif", REFERENCE, origin=(X0, Y0)))
    everything = pixel_accuracy(classified, Reference(raster=reference), MAPPING, "STRATIFIED_RANDOM", points=15)
    assert everything.matrix.tolist() == EXPECTED
    equal = pixel_accuracy(classified, Reference(raster=reference), MAPPING, "EQUALIZED_STRATIFIED_RANDOM", points=6, seed=3)
    assert equal.matrix.sum(axis=0).tolist() == [2, 2, 2]
    again = pixel_accuracy(classified, Reference(raster=reference), MAPPING, "EQUALIZED_STRATIFIED_RANDOM", points=6, seed=3)
    assert np.array_equal(equal.matrix, again.matrix)
    strat = pixel_accuracy(classified, Reference(raster=reference), MAPPING, "STRATIFIED_RANDOM", points=5)
    # reference classes hold 4, 6 and 5 of the 15 pixels: 5 points -> 1.33, 2, 1.67 -> 1, 2, 2
    assert strat.matrix.sum(axis=0).tolist() == [1, 2, 2]
    rand = pixel_accuracy(classified, Reference(raster=reference), MAPPING, "RANDOM", points=7)
    assert rand.total == 7
    with pytest.raises(InputDataError, match="SAMPLING"):
        pixel_accuracy(classified, Reference(raster=reference), MAPPING, "SOME")


def test_class_mapping_text():
    assert parse_class_mapping("0:2; 1:0,2:0;3:0;4:1") == {0: 2, 1: 0, 2: 0, 3: 0, 4: 1}
    assert parse_class_mapping("") == {}
    with pytest.raises(InputDataError, match="CLASS_MAPPING 'a:b'"):
        parse_class_mapping("a:b")


def test_object_detection_accuracy_known_tp_fp_fn_ap():
    truths = [(1, rect(0, 0, 10, 10), "1"), (2, rect(1, 0, 11, 10), 1), (3, rect(50, 50, 60, 60), 1),
              (4, rect(100, 0, 110, 10), "tree")]
    detections = [
        (1, rect(0, 0, 10, 10), 1.0, 0.9),     # truth 1 (IoU 1; truth 2 also overlaps it by 9/11)
        (2, rect(0, 0, 10, 10), "1", 0.8),     # truth 1 taken: truth 2 (IoU 9/11) -> TP
        (3, rect(30, 30, 40, 40), 1, 0.8),     # nothing there: FP (ties with 2 in confidence)
        (4, rect(100, 0, 110, 10), "tree", 0.4),  # TP for class tree
        (5, rect(100, 0, 110, 10), "tree", 0.3),  # duplicate: FP
    ]
    result = object_detection_accuracy(detections, truths, min_iou=0.5)
    one, tree = result.classes
    assert (one.class_value, one.true_positives, one.false_positives, one.false_negatives) == ("1", 2, 1, 1)
    # by confidence 0.9 T, 0.8 T (input order first), 0.8 F over 3 truths: AP = 1/3 + 1/3
    assert one.ap == pytest.approx(2 / 3)
    assert (tree.true_positives, tree.false_positives, tree.false_negatives, tree.ap) == (1, 1, 0, 1.0)
    assert result.mean_ap == pytest.approx((2 / 3 + 1) / 2)
    assert (one.precision, one.recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    html = object_report(result)
    assert "<svg" in html and "0.8333" in html
    # a stricter IoU: truth 2 is too far for the second detection
    strict = object_detection_accuracy(detections, truths, min_iou=0.85)
    assert strict.classes[0].true_positives == 1


def test_object_accuracy_mask_and_refusals():
    truths = [(1, rect(0, 0, 10, 10), 1), (2, rect(50, 50, 60, 60), 1)]
    detections = [(1, rect(0, 0, 10, 10), 1, 0.9)]
    mask = ogr.CreateGeometryFromWkb(rect(-5, -5, 20, 20))
    result = object_detection_accuracy(detections, truths, mask=mask)
    assert (result.classes[0].true_positives, result.classes[0].false_negatives, result.truths) == (1, 0, 1)
    with pytest.raises(InputDataError, match="confidence"):
        object_detection_accuracy([(7, rect(0, 0, 1, 1), 1, None)], truths)
    with pytest.raises(InputDataError, match="MIN_IOU"):
        object_detection_accuracy(detections, truths, min_iou=0)
    assert (class_key(1.0), class_key("2"), class_key(" car "), class_key(0.5)) == ("1", "2", "car", "0.5")


def test_pair_counts_small_and_wide_value_ranges():
    from core.tools.accuracy.pixels import _pair_counts

    cls = np.array([0, 0, 1, 1, 1], np.int64)
    ref = np.array([0, 1, 1, 1, 0], np.int64)
    assert sorted(_pair_counts(cls, ref)) == [(0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 2)]
    wide = np.array([-70000, 5, 5, 3_000_000], np.int64)  # too wide for a bincount: the sorted-code path
    assert sorted(_pair_counts(wide, wide[::-1].copy())) == [(-70000, 3_000_000, 1), (5, 5, 2), (3_000_000, -70000, 1)]


def test_object_iou_is_that_of_the_bounding_rectangles_as_arcgis_documents():
    triangle = ogr.Geometry(ogr.wkbPolygon)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for c, r in ((0, 0), (10, 0), (0, 10), (0, 0)):
        ring.AddPoint_2D(X0 + c, Y0 - r)
    triangle.AddGeometry(ring)
    # the triangle covers half its square (polygon IoU 0.5), but its bounding rectangle is the square (IoU 1)
    result = object_detection_accuracy([(1, bytes(triangle.ExportToWkb()), 1, 0.9)], [(1, rect(0, 0, 10, 10), 1)],
                                       min_iou=0.6)
    assert result.classes[0].true_positives == 1

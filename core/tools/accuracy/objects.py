# SPDX-License-Identifier: GPL-2.0-or-later
"""Compute Accuracy For Object Detection: detected features against ground-truth features.

The whole map is one image: every detection is matched (greedy by confidence, within its class, to the
free truth of highest IoU at or above ``min_iou``) by :mod:`core.detection.matching`, the rule the training
tool's validation uses too.  IoU is that of the features' bounding rectangles, as ArcGIS documents it ("the
overlap between the bounding rectangle around a predicted object and the bounding rectangle around the ground
reference data"); a spatial index keeps the pairs to those whose rectangles meet.  With a mask only the features
whose bounding-box centre lies inside it count (the project's MASK rule for objects).

Classes are compared as text, with whole numbers written without decimals (``1``, ``1.0`` and ``"1"`` are one
class), so a detector's class values meet the ground truth's whatever the field types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from osgeo import ogr

from ...detection.matching import ClassAccuracy, DetectionTally
from ...detection.nms import box_iou_pairs
from ...errors import InputDataError
from ...progress import NullProgress, Progress, check_canceled
from ...raster.burn import FeatureIndex

ogr.UseExceptions()


@dataclass(frozen=True)
class ObjectAccuracy:
    classes: list[ClassAccuracy]
    mean_ap: float | None
    detections: int
    truths: int
    min_iou: float


def class_key(value: object) -> str:
    """A class value as text: whole numbers without decimals, text stripped."""
    if value is None:  # no class field: one class
        return ""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value).strip()
    return str(int(number)) if number.is_integer() else repr(number)


def _geometries(items: Iterable[tuple], what: str, mask: ogr.Geometry | None, with_score: bool):
    """(bounding rectangles as polygons, classes, confidences) of the features that count."""
    geoms, classes, scores = [], [], []
    for item in items:
        key, wkb, cls = item[0], item[1], item[2]
        if wkb is None:
            continue
        geom = ogr.CreateGeometryFromWkb(wkb)
        if geom.IsEmpty() or geom.GetArea() <= 0:
            raise InputDataError(f"{what} feature {key} is not a polygon with an area: IoU needs polygons")
        if mask is not None:
            minx, maxx, miny, maxy = geom.GetEnvelope()
            centre = ogr.Geometry(ogr.wkbPoint)
            centre.AddPoint_2D((minx + maxx) / 2, (miny + maxy) / 2)
            if not mask.Contains(centre):
                continue
        if with_score:
            try:
                scores.append(float(item[3]))
            except (TypeError, ValueError):
                raise InputDataError(f"{what} feature {key} has no confidence ({item[3]!r}): fill it or remove the "
                                     "feature") from None
        minx, maxx, miny, maxy = geom.GetEnvelope()
        geoms.append((minx, miny, maxx, maxy))
        classes.append(class_key(cls))
    return geoms, classes, np.asarray(scores, np.float64)


def _rectangle(box: tuple[float, float, float, float]) -> ogr.Geometry:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3]), (box[0], box[1])):
        ring.AddPoint_2D(x, y)
    rect = ogr.Geometry(ogr.wkbPolygon)
    rect.AddGeometry(ring)
    return rect


def object_detection_accuracy(detections: Iterable[tuple[object, bytes | None, object, object]],
                              truths: Iterable[tuple[object, bytes | None, object]], min_iou: float = 0.5,
                              mask: ogr.Geometry | None = None, progress: Progress | None = None) -> ObjectAccuracy:
    """Match ``detections`` (key, WKB, class, confidence) to ``truths`` (key, WKB, class), both in one CRS."""
    progress = progress or NullProgress()
    if not 0.0 < min_iou <= 1.0:
        raise InputDataError(f"MIN_IOU must be above 0 and at most 1, not {min_iou}")
    det_geoms, det_classes, scores = _geometries(detections, "Detected", mask, True)
    truth_geoms, truth_classes, _ = _geometries(truths, "Ground truth", mask, False)
    index = FeatureIndex()
    for t, box in enumerate(truth_geoms):
        index.add(t, _rectangle(box))
    pairs_i, pairs_j = [], []
    for d, box in enumerate(det_geoms):
        if d % 256 == 0:
            check_canceled(progress)
            progress.set_progress(80.0 * d / max(1, len(det_geoms)))
        for t, _truth in index.touching(_rectangle(box)):
            pairs_i.append(d)
            pairs_j.append(t)
    i, j = np.asarray(pairs_i, np.int64), np.asarray(pairs_j, np.int64)
    boxes = np.array(det_geoms + truth_geoms, np.float64).reshape(-1, 4)
    iou = box_iou_pairs(boxes, i, j + len(det_geoms))
    tally = DetectionTally(min_iou=min_iou)
    tally.add_pairs(scores, det_classes, truth_classes, i, j, iou)
    progress.set_progress(100.0)
    return ObjectAccuracy(classes=tally.classes(), mean_ap=tally.mean_ap(), detections=len(det_geoms),
                          truths=len(truth_geoms), min_iou=min_iou)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Detections against ground truth: greedy matching, precision, recall, F1 and average precision.

One module for every tool that scores a detector: Compute Accuracy For Object Detection (polygons on
a map) and the training tool's validation mAP (boxes in chips) call the same rule, so the two report
the same numbers for the same objects.

The rule (ArcGIS's Compute Accuracy For Object Detection, completed where its documentation is silent):

* Matching is **within a class** and **per image** (a training chip; the whole map for the tool).
* Detections are visited by **descending confidence**; equal confidences keep their input order.
* A detection is a **true positive** when a ground truth of its class that is not matched yet overlaps
  it with IoU >= ``min_iou``; it takes the one with the **highest IoU** among those (equal IoU: the
  earlier truth).  A truth is matched once; a detection matches one truth.  A detection that overlaps
  two truths therefore takes the better one and leaves the other for the next detection.  (PASCAL VOC's
  evaluation instead makes a detection whose best truth is taken a false positive even when another
  truth is free; ArcGIS does not say which it does; we follow COCO's "best unmatched truth".)
* Every other detection is a **false positive**; every unmatched truth a **false negative**.
* **Average precision** is the area under the precision-recall curve with precision made monotone
  (the all-points interpolation of PASCAL VOC 2010+, which arcgis.learn's ``average_precision_score``
  uses); a class without truths has no AP (``None``) and is left out of the mean (mAP).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of boxes ``a [N, 4]`` and ``b [M, 4]`` (x1, y1, x2, y2; empty boxes have IoU 0)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def confidence_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending confidence; equal confidences keep input order."""
    scores = np.asarray(scores, np.float64)
    return np.lexsort((np.arange(len(scores)), -scores))


def greedy_match(scores: np.ndarray, det_classes: Sequence[Hashable], truth_classes: Sequence[Hashable],
                 iou: np.ndarray, min_iou: float) -> np.ndarray:
    """For each detection, the index of the truth it matches, or -1 (see the module's rule).

    ``iou`` is ``[detections, truths]`` (dense; zeros where two objects do not overlap).
    """
    n, m = len(scores), len(truth_classes)
    iou = np.asarray(iou, np.float64).reshape(n, m)
    i, j = np.nonzero(iou > 0)
    return greedy_match_pairs(scores, det_classes, truth_classes, i, j, iou[i, j], min_iou)


def greedy_match_pairs(scores: np.ndarray, det_classes: Sequence[Hashable], truth_classes: Sequence[Hashable],
                       det_index: np.ndarray, truth_index: np.ndarray, iou: np.ndarray, min_iou: float) -> np.ndarray:
    """:func:`greedy_match` with the IoU given only for the overlapping pairs (many objects: no dense matrix)."""
    n = len(scores)
    matched = np.full(n, -1, np.int64)
    det_index, truth_index = np.asarray(det_index, np.int64), np.asarray(truth_index, np.int64)
    iou = np.asarray(iou, np.float64)
    if n == 0 or len(truth_classes) == 0 or det_index.size == 0:
        return matched
    det_codes, truth_codes = _codes(det_classes, truth_classes)
    usable = (iou >= min_iou) & (det_codes[det_index] == truth_codes[truth_index])
    det_index, truth_index, iou = det_index[usable], truth_index[usable], iou[usable]
    rank = np.empty(n, np.int64)
    rank[confidence_order(scores)] = np.arange(n)
    # by detection (confidence order), then best IoU, then the earlier truth
    order = np.lexsort((truth_index, -iou, rank[det_index]))
    taken = np.zeros(len(truth_classes), bool)
    for d, t in zip(det_index[order].tolist(), truth_index[order].tolist()):
        if matched[d] < 0 and not taken[t]:
            matched[d] = t
            taken[t] = True
    return matched


def _codes(a: Sequence[Hashable], b: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    lookup: dict[Hashable, int] = {}
    ca = np.array([lookup.setdefault(c, len(lookup)) for c in a], np.int64)
    cb = np.array([lookup.setdefault(c, len(lookup)) for c in b], np.int64)
    return ca, cb


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision-recall curve, precision made monotone (all-points interpolation)."""
    r = np.concatenate(([0.0], np.asarray(recall, np.float64), [1.0]))
    p = np.concatenate(([0.0], np.asarray(precision, np.float64), [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@dataclass(frozen=True)
class ClassAccuracy:
    """One class's figures; ``ap`` is None when the class has no ground truth."""

    class_value: Hashable
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    f1: float
    ap: float | None
    curve_precision: tuple[float, ...] = ()
    curve_recall: tuple[float, ...] = ()


def _class_order(value: Hashable) -> tuple:
    """Numbers (and text that reads as a number) first, in numeric order; other text after, alphabetically."""
    try:
        return (0, float(value), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


@dataclass
class DetectionTally:
    """Detections and truths of many images, matched image by image, summed per class.

    ``add_image`` for each chip (training) or once for a whole map (the accuracy tool); ``classes``
    then ``mean_ap`` read the totals.
    """

    min_iou: float = 0.5
    _scores: dict[Hashable, list[float]] = field(default_factory=dict)
    _hits: dict[Hashable, list[bool]] = field(default_factory=dict)
    _truths: dict[Hashable, int] = field(default_factory=dict)

    def add_boxes(self, det_boxes: np.ndarray, det_scores: np.ndarray, det_classes: Sequence[Hashable],
                  truth_boxes: np.ndarray, truth_classes: Sequence[Hashable]) -> np.ndarray:
        """One image of axis-aligned boxes (x1, y1, x2, y2); returns each detection's matched truth or -1."""
        return self.add_image(det_scores, det_classes, truth_classes, box_iou_matrix(det_boxes, truth_boxes))

    def add_image(self, det_scores: np.ndarray, det_classes: Sequence[Hashable],
                  truth_classes: Sequence[Hashable], iou: np.ndarray) -> np.ndarray:
        """One image given the IoU matrix ``[detections, truths]``; returns each detection's matched truth or -1."""
        det_scores = np.asarray(det_scores, np.float64).reshape(-1)
        iou = np.asarray(iou, np.float64).reshape(len(det_scores), len(truth_classes))
        i, j = np.nonzero(iou > 0)
        return self.add_pairs(det_scores, det_classes, truth_classes, i, j, iou[i, j])

    def add_pairs(self, det_scores: np.ndarray, det_classes: Sequence[Hashable], truth_classes: Sequence[Hashable],
                  det_index: np.ndarray, truth_index: np.ndarray, iou: np.ndarray) -> np.ndarray:
        """One image given the IoU of its overlapping (detection, truth) pairs only."""
        det_scores = np.asarray(det_scores, np.float64).reshape(-1)
        matched = greedy_match_pairs(det_scores, det_classes, truth_classes, det_index, truth_index, iou,
                                     self.min_iou)
        for score, cls, hit in zip(det_scores.tolist(), det_classes, (matched >= 0).tolist()):
            self._scores.setdefault(cls, []).append(score)
            self._hits.setdefault(cls, []).append(hit)
        for cls in truth_classes:
            self._truths[cls] = self._truths.get(cls, 0) + 1
        return matched

    def class_values(self) -> list[Hashable]:
        values = set(self._truths) | set(self._scores)
        return sorted(values, key=_class_order)

    def class_accuracy(self, cls: Hashable) -> ClassAccuracy:
        scores = np.asarray(self._scores.get(cls, []), np.float64)
        hits = np.asarray(self._hits.get(cls, []), bool)
        order = np.argsort(-scores, kind="stable")  # equal confidences: the order they were added
        hits = hits[order]
        n_truth = self._truths.get(cls, 0)
        tp_cum = np.cumsum(hits)
        fp_cum = np.cumsum(~hits)
        precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
        recall = tp_cum / n_truth if n_truth else np.zeros(len(hits))
        tp, fp = int(hits.sum()), int((~hits).sum())
        p, r = _ratio(tp, tp + fp), _ratio(tp, n_truth)
        return ClassAccuracy(
            class_value=cls, true_positives=tp, false_positives=fp, false_negatives=n_truth - tp,
            precision=p, recall=r, f1=_ratio(2 * p * r, p + r),
            ap=average_precision(precision, recall) if n_truth else None,
            curve_precision=tuple(precision.tolist()), curve_recall=tuple(recall.tolist()))

    def classes(self) -> list[ClassAccuracy]:
        return [self.class_accuracy(c) for c in self.class_values()]

    def mean_ap(self) -> float | None:
        """The mean of the classes' AP (classes with ground truth only); None when there is no truth at all."""
        aps = [c.ap for c in self.classes() if c.ap is not None]
        return float(np.mean(aps)) if aps else None

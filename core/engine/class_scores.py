# SPDX-License-Identifier: GPL-2.0-or-later
"""Scores of a classification from its confusion matrix (rows: truth, columns: prediction): accuracy and, per class,
precision, recall, F1 and IoU.  One computation for the training tool's validation and for Compute Accuracy For
Pixel Classification, so both report the same figures for the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """``classes x classes`` counts of (truth, prediction) pairs."""
    index = truth.astype(np.int64).ravel() * classes + predicted.astype(np.int64).ravel()
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


@dataclass
class ClassScores:
    """Per class: precision, recall, F1 and IoU (each a list in class order)."""

    names: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    iou: list[float]


def scores_of(matrix: np.ndarray, names: list[str]) -> tuple[float, ClassScores]:
    """(accuracy, per-class scores) of a confusion matrix."""
    m = matrix.astype(np.float64)
    hits = np.diag(m)
    truth, predicted = m.sum(axis=1), m.sum(axis=0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, truth)
    f1 = _ratio(2 * precision * recall, precision + recall)
    iou = _ratio(hits, truth + predicted - hits)
    accuracy = float(hits.sum() / m.sum()) if m.sum() else 0.0
    return accuracy, ClassScores(names=list(names), precision=precision.tolist(), recall=recall.tolist(),
                                 f1=f1.tolist(), iou=iou.tolist())

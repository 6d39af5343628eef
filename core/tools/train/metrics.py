# SPDX-License-Identifier: GPL-2.0-or-later
"""Validation metrics, from one confusion matrix per epoch (rows: truth, columns: prediction).

Pixel models (UnetClassifier, DeepLab): accuracy over all pixels, precision, recall and F1 per class and the IoU
per class with its mean (mIoU) over the classes, background included, as arcgis.learn's ``per_class_metrics`` and
``mIOU`` report them.  FeatureClassifier: accuracy and the confusion matrix itself.  Detectors' average precision comes from
:mod:`.detection` (the shared matching rule); :func:`metric_table` prints it.
"""

from __future__ import annotations

import numpy as np

from ...engine.class_scores import scores_of


def epoch_metrics(matrix: np.ndarray, names: list[str], pixels: bool) -> dict:
    """The plain numbers an epoch records (JSON-ready): accuracy and, for pixels, mIoU and per-class scores."""
    accuracy, per_class = scores_of(matrix, names)
    out: dict = {"accuracy": accuracy}
    if pixels:
        present = [i for i in range(len(names)) if matrix[i].sum() + matrix[:, i].sum() > 0]
        out["miou"] = float(np.mean([per_class.iou[i] for i in present])) if present else 0.0
        out["per_class"] = {name: {"precision": per_class.precision[i], "recall": per_class.recall[i],
                                   "f1": per_class.f1[i], "iou": per_class.iou[i]} for i, name in enumerate(names)}
    else:
        out["confusion_matrix"] = matrix.astype(int).tolist()
    return out


def metric_table(metrics: dict) -> list[str]:
    """The per-class table written to the log after each epoch."""
    if "average_precision" in metrics:
        aps = metrics["average_precision"]
        width = max(len(n) for n in aps)
        lines = [f"  {'class':<{width}}  AP@{metrics['iou_threshold']:g}  precision  recall     F1"]
        for name, r in aps.items():
            ap = "   none" if r["ap"] is None else f"{r['ap']:7.4f}"  # no object of the class among the validation chips
            lines.append(f"  {name:<{width}}  {ap}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:.4f}")
        return lines + [f"  mAP {metrics['map']:.4f}"]
    rows = metrics.get("per_class")
    if not rows:
        matrix = metrics.get("confusion_matrix") or []
        return ["  confusion (rows: truth) " + " | ".join(" ".join(f"{v:5d}" for v in row) for row in matrix)]
    width = max(len(n) for n in rows)
    lines = [f"  {'class':<{width}}  precision  recall     F1    IoU"]
    for name, r in rows.items():
        lines.append(f"  {name:<{width}}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:.4f}  {r['iou']:.4f}")
    return lines

# SPDX-License-Identifier: GPL-2.0-or-later
"""Training arcgis.learn's anchor detectors, SingleShotDetector and RetinaNet, on PASCAL_VOC_rectangles chips.

The chips reach the network as Detect Objects gives them to these families (ImageNet's normalisation for 8-bit RGB,
``NormalizationStats`` otherwise: :mod:`.chips`); the targets are :class:`.detection.DetectionReader`'s (boxes in
chip pixels, 1-based labels) and are augmented with the pixels (:func:`.detection.detection_batches`).  The losses
are arcgis.learn's (:mod:`.anchor_losses`).  Validation each epoch: the loss in eval mode, then the raw head outputs
decoded by the shared decoder exactly as Detect Objects decodes them (:func:`core.detection.decode.decode_anchors`,
threshold 0.2 and NMS overlap 0.1, what arcgis.learn's own validation metric uses) and matched against the truth by
the shared rule (:mod:`core.detection.matching`): AP per class and mAP at IoU 0.5.

ARGUMENTS (ArcGIS's names): SingleShotDetector ``grids`` (anchor grids; empty: chosen from the training boxes as
arcgis.learn's SSD version 2 chooses them, :func:`default_grids`), ``zooms`` ([1.0]), ``ratios`` ([[1.0, 1.0]]),
``focal_loss`` and ``location_loss_factor``; RetinaNet ``scales`` ([1, 2^-1/3, 2^-2/3]) and ``ratios``
([0.5, 1, 2]).  They go into the ``.emd`` (``Grids``/``Zooms``/``Ratios``/``SSDVersion`` 2, or
``ModelParameters.scales``/``ratios``), which is what builds the network here, in Detect Objects and in arcgis.learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ArgumentError
from .detection import DetectionTrainer
from .layouts import TrainingData, voc_objects

ANCHOR_DETECTORS = ("SingleShotDetector", "RetinaNet")
VALIDATION_THRESHOLD, VALIDATION_NMS = 0.2, 0.1


# -- the anchor settings of the .emd ------------------------------------------------------------------------------
def _wh_iou(boxes: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU of (height, width) pairs placed on a common corner, [n, k]."""
    inter = np.minimum(boxes[:, None, 0], centroids[None, :, 0]) * np.minimum(boxes[:, None, 1], centroids[None, :, 1])
    union = boxes.prod(1)[:, None] + centroids.prod(1)[None, :] - inter
    return inter / union


def _kmeans(boxes: np.ndarray, k: int) -> np.ndarray:
    """k centroids of (height, width) pairs, distance 1 - IoU, starting from boxes spread over the sizes."""
    order = np.argsort(boxes.prod(1), kind="stable")
    centroids = boxes[order[np.linspace(0, len(boxes) - 1, k).round().astype(int)]]
    assigned = np.full(len(boxes), -1)
    for _ in range(100):
        nearest = _wh_iou(boxes, centroids).argmax(1)
        if np.array_equal(nearest, assigned):
            break
        assigned = nearest
        centroids = np.stack([boxes[assigned == i].mean(0) if (assigned == i).any() else centroids[i]
                              for i in range(k)])
    return centroids


def default_grids(sizes: np.ndarray) -> list[int]:
    """arcgis.learn's SSD (version 2) choice of grids when none is given: k-means of the boxes' (height, width) as
    fractions of the chip (distance 1 - IoU) with 1, then 2, 3, 4 centroids while the mean best IoU grows by 0.05 or
    more; each centroid's larger side s gives a grid of round(1 / s) cells, largest grid first.  The centroids start
    from boxes spread over the sizes, so the choice is the same on every run (arcgis.learn draws them at random)."""
    boxes = sizes[(sizes > 0).all(1)]
    if not len(boxes):
        return [4, 2, 1]
    centroids = _kmeans(boxes, 1)
    mean_iou = _wh_iou(boxes, centroids).max(1).mean()
    for k in range(2, min(4, len(boxes)) + 1):
        more = _kmeans(boxes, k)
        more_iou = _wh_iou(boxes, more).max(1).mean()
        if more_iou - mean_iou < 0.05:
            break
        centroids, mean_iou = more, more_iou
    sides = centroids.max(1)
    return sorted({max(int(round(1 / s)), 1) for s in sides if s > 0}, reverse=True)


def object_sizes(data: TrainingData, chip: tuple[int, int]) -> np.ndarray:
    """(height, width) of every training object as fractions of the chip."""
    rows, cols = chip
    out = [((y2 - y1) / rows, (x2 - x1) / cols) for label in data.labels for _, (x1, y1, x2, y2) in voc_objects(label)]
    return np.asarray(out, np.float64).reshape(-1, 2)


def _numbers(args: dict[str, Any], key: str, default: list, pairs: bool = False) -> list:
    values = args.get(key, default)
    ok = isinstance(values, list) and values and all(
        (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) and x > 0 for x in v))
        if pairs else (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0) for v in values)
    if not ok:
        shape = "a list of [height, width] pairs, e.g. [[1.0, 1.0], [1.0, 0.5]]" if pairs else \
            "a list of positive numbers, e.g. [1.0, 0.5]"
        raise ArgumentError(f"ARGUMENTS: {key} must be {shape}, not {values!r}")
    return [[float(x) for x in v] for v in values] if pairs else list(values)


def anchor_emd(emd: dict[str, Any], args: dict[str, Any], data: TrainingData,
               chip: tuple[int, int]) -> tuple[dict[str, Any], str]:
    """The ``.emd`` with the family's anchor keys, and a line for the log saying which anchors."""
    out = dict(emd)
    if emd["ModelName"] == "SingleShotDetector":
        grids = _numbers(args, "grids", []) if "grids" in args else default_grids(object_sizes(data, chip))
        if any(not isinstance(g, int) for g in grids):
            raise ArgumentError(f"ARGUMENTS: grids must be whole numbers of cells, not {grids}")
        zooms = [float(z) for z in _numbers(args, "zooms", [1.0])]
        ratios = _numbers(args, "ratios", [[1.0, 1.0]], pairs=True)
        out.update(backbone=emd["ModelParameters"]["backbone"], Grids=grids, Zooms=zooms, Ratios=ratios,
                   SSDVersion=2)
        how = "given" if "grids" in args else "chosen from the training boxes"
        return out, f"SSD anchors: grids {grids} ({how}), zooms {zooms}, ratios {ratios}"
    scales = [float(s) for s in _numbers(args, "scales", [1.0, 2 ** (-1 / 3), 2 ** (-2 / 3)])]
    ratios = [float(r) for r in _numbers(args, "ratios", [0.5, 1.0, 2.0])]
    out["ModelParameters"] = {**emd["ModelParameters"], "scales": scales, "ratios": ratios}
    return out, f"RetinaNet anchors: scales {[round(s, 4) for s in scales]}, ratios {ratios}"


# -- the trainer ----------------------------------------------------------------------------------------------------
class AnchorDetectionTrainer(DetectionTrainer):
    """:class:`DetectionTrainer` for the raw-anchor heads: arcgis.learn's losses, Detect Objects' decoding."""

    def configure(self, emd: dict[str, Any], args: dict[str, Any]) -> None:
        """The family and its anchors (from the ``.emd`` that built the network) and the loss options."""
        self.emd, self.family = emd, emd["ModelName"]
        self.geometry: dict[str, Any] = {"hw": tuple(self.reader.shape[1:]), "focal": bool(args.get("focal_loss")),
                                         "location_factor": args.get("location_loss_factor")}
        if self.family == "SingleShotDetector":
            from ...backends.arcgis_learn.ssd import ssd_anchors, ssd_settings

            anchors, cells = ssd_anchors(*ssd_settings(emd, self.geometry["hw"][0]))
            self.geometry.update(anchors=anchors.to(self.device), cells=cells.to(self.device))

    def _anchors_for(self, outputs) -> None:  # noqa: ANN001 - RetinaNet's anchors follow its pyramid's sizes
        if self.family == "RetinaNet" and "anchors" not in self.geometry:
            from ...backends.arcgis_learn.retinanet import retinanet_anchors, retinanet_settings

            scales, ratios = retinanet_settings(self.emd)
            self.geometry["anchors"] = retinanet_anchors(outputs[2], ratios, scales).to(self.device)

    def _loss(self, images, targets):  # noqa: ANN001, ANN202
        from .anchor_losses import batch_loss

        torch = self.torch
        with torch.autocast(self.device.type, enabled=self.amp):
            outputs = self.module(images.to(self.device))
        self._anchors_for(outputs)
        return batch_loss(self.family, outputs, targets, self.geometry), outputs

    def _validation_mode(self) -> None:
        self.module.eval()

    def predict(self, images) -> list[dict[str, np.ndarray]]:  # noqa: ANN001
        """Detections as Detect Objects makes them (the shared decoder), labels 1-based."""
        from ...backends.arcgis_learn.retinanet import retinanet_raw_outputs
        from ...backends.arcgis_learn.ssd import ssd_raw_outputs
        from ...detection.decode import decode_anchors

        with self.torch.no_grad():
            outputs = self.module.eval()(images.to(self.device))
        self._anchors_for(outputs)
        hw, g = self.geometry["hw"], self.geometry
        found = []
        for i in range(images.shape[0]):
            classes, offsets = outputs[0][i].float(), outputs[1][i].float()
            raw = ssd_raw_outputs(classes, offsets, g["anchors"], g["cells"], hw) \
                if self.family == "SingleShotDetector" else retinanet_raw_outputs(classes, offsets, g["anchors"], hw)
            raw = {k: v.cpu().numpy() if hasattr(v, "cpu") else v for k, v in raw.items()}
            chip = decode_anchors(raw, VALIDATION_THRESHOLD, VALIDATION_NMS)
            found.append({"boxes": chip.boxes.astype(np.float32), "scores": chip.scores.astype(np.float32),
                          "labels": chip.classes.astype(np.int64) + 1})
        return found

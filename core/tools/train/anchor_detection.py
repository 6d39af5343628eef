# SPDX-License-Identifier: GPL-2.0-or-later
"""Training arcgis.learn's anchor detectors, SingleShotDetector and RetinaNet, on PASCAL_VOC_rectangles chips.

The chips reach the network as Detect Objects gives them to these families (ImageNet's normalisation for 8-bit RGB,
``NormalizationStats`` otherwise: :mod:`.chips`); the targets are :class:`.detection.DetectionReader`'s (boxes in
chip pixels, 1-based labels) and are augmented with the pixels (:func:`.detection.detection_batches`).  The losses
are arcgis.learn's (:mod:`.anchor_losses`).  Validation each epoch: the loss in eval mode, then the raw head outputs
decoded by the shared decoder exactly as Detect Objects decodes them (:func:`core.detection.decode.decode_anchors`,
threshold 0.2 and NMS overlap 0.1, what arcgis.learn's own validation metric uses) and matched against the truth by
the shared rule (:mod:`core.detection.matching`): AP per class and mAP at IoU 0.5.

Training mode keeps RetinaNet's shared head subnets' batch norms in eval mode (:func:`train_mode`), so that the
network trained is the network Detect Objects runs.

ARGUMENTS (ArcGIS's names): SingleShotDetector ``grids`` (anchor grids; empty: chosen from the training boxes as
arcgis.learn's SSD version 2 chooses them, :func:`default_grids`, or one fine grid on the cut ResNet where the
whole ResNet's map would be upsampled to them, :func:`fine_grid`), ``zooms`` ([1.0]), ``ratios`` ([[1.0, 1.0]]),
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


def fine_grid(grids: list[int], backbone: str, chip: int) -> tuple[list[int], list[float], int] | None:
    """(grids, zooms, the whole body's map size) replacing ``grids`` chosen from the boxes when arcgis.learn's head
    would reach their first grid by upsampling the whole ResNet's map, a map smaller than the grid (64-pixel chips:
    2 x 2 cells of 32 pixels, from which an SSD learns to place boxes on new chips only slowly: measured, mAP 0.2
    after 12 epochs).  Instead: one grid of the fewest cells over 8 for which arcgis.learn's own rule cuts the
    ResNet before its last stage (a map of chip / 16), with one zoom per chosen grid so that the anchors keep the
    sizes the boxes asked for (grid 3 -> grid 9, zoom 3).  None where the whole body's map reaches the first grid
    by a convolution, or arcgis.learn cuts the body anyway."""
    from ...backends.arcgis_learn.ssd_versions import body_cut

    cut, feature, _ = body_cut(backbone, chip, grids)
    if cut == 3 or grids[0] <= feature:
        return None
    fine = 9
    while body_cut(backbone, chip, [fine])[0] != 3:
        fine += 1
    return [fine], sorted({round(fine / g, 4) for g in grids}), feature


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
        backbone = emd["ModelParameters"]["backbone"]
        grids = _numbers(args, "grids", []) if "grids" in args else default_grids(object_sizes(data, chip))
        if any(not isinstance(g, int) for g in grids):
            raise ArgumentError(f"ARGUMENTS: grids must be whole numbers of cells, not {grids}")
        zooms = [float(z) for z in _numbers(args, "zooms", [1.0])]
        ratios = _numbers(args, "ratios", [[1.0, 1.0]], pairs=True)
        how = "given" if "grids" in args else "chosen from the training boxes"
        finer = None if "grids" in args or "zooms" in args else fine_grid(grids, backbone, chip[0])
        if finer is not None:
            how = (f"chosen from the training boxes: grids {grids} would be upsampled from the {finer[2]} x "
                   f"{finer[2]} map of the whole {backbone}, so one grid of {finer[0][0]} cells on the map of the "
                   f"{backbone} cut before its last stage, with zooms {finer[1]} keeping the anchor sizes")
            grids, zooms = finer[0], finer[1]
        out.update(backbone=backbone, Grids=grids, Zooms=zooms, Ratios=ratios, SSDVersion=2)
        return out, f"SSD anchors: grids {grids} ({how}), zooms {zooms}, ratios {ratios}"
    scales = [float(s) for s in _numbers(args, "scales", [1.0, 2 ** (-1 / 3), 2 ** (-2 / 3)])]
    ratios = [float(r) for r in _numbers(args, "ratios", [0.5, 1.0, 2.0])]
    out["ModelParameters"] = {**emd["ModelParameters"], "scales": scales, "ratios": ratios}
    return out, f"RetinaNet anchors: scales {[round(s, 4) for s in scales]}, ratios {ratios}"


# -- the trainer ----------------------------------------------------------------------------------------------------
def shared_head_norms(module, family: str) -> list:  # noqa: ANN001
    """RetinaNet's ``classifier`` and ``box_regressor`` batch norms.  Each subnet runs on the five pyramid levels
    in turn, so in training mode a batch norm normalises each level by that level's own statistics, while eval mode
    (the validation, Detect Objects, ArcGIS Pro) uses one running average of all levels: the network trained is
    not the network run (measured: a loss of 0.45 in training mode was 10.6 in eval mode).  Kept in eval mode while
    training, they are the same in both; the keys and the inference network stay arcgis.learn's."""
    if family != "RetinaNet":
        return []
    return [m for head in (module.classifier, module.box_regressor) for m in head.modules()
            if "BatchNorm" in type(m).__name__]


def train_mode(module, family: str) -> None:  # noqa: ANN001
    """Training mode, except RetinaNet's head subnets' batch norms (:func:`shared_head_norms`), which stay in eval
    mode: their statistics stay fixed (a fresh network's 0 and 1, or those of the model fine-tuned), so each is a
    learned scale and shift, the same in training and in Detect Objects."""
    module.train()
    for norm in shared_head_norms(module, family):
        norm.eval()


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

    def train_mode(self) -> None:
        train_mode(self.module, getattr(self, "family", ""))

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

    def predict(self, images, min_score: float | None = None) -> list[dict[str, np.ndarray]]:  # noqa: ANN001
        """Detections as Detect Objects makes them (the shared decoder, whose threshold is the validation's:
        ``min_score`` is the R-CNN heads'), labels 1-based."""
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

# SPDX-License-Identifier: GPL-2.0-or-later
"""Training the torchvision detectors: FasterRCNN on PASCAL_VOC_rectangles chips, MaskRCNN on RCNN_Masks chips.

The chips reach the network as the inference side gives them (``core.engine.normalize``'s R-CNN rule): ``x / 255``
for 8-bit RGB, ``(x - band_min) / (band_max - band_min)`` otherwise; the network's own transform standardises them.
A target is the chip's boxes (x1, y1, x2, y2 in chip pixels, clipped to the chip; boxes thinner than a pixel are
dropped, torchvision refuses them) and their labels (``Classes`` position + 1, 0 being the background).

Validation each epoch: the loss (torchvision computes it only in training mode, so the batch norms are put in eval
mode to leave their statistics alone), then the detections of the network in eval mode matched against the truth by
the shared rule of :mod:`core.detection.matching` (Compute Accuracy For Object Detection's): average precision per
class and their mean (mAP) at IoU 0.5 (of the boxes; MaskRCNN: of the masks, as arcgis.learn measures it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ...detection.matching import DetectionTally
from ...errors import ArgumentError, InputDataError
from .chips import ChipNormalisation, ChipReader, read_array
from .layouts import TrainingData, class_position, mask_files, voc_objects
from .loop import Trainer
from .roi_pooling import use_small_map_pooling

DETECTORS = ("FasterRCNN", "MaskRCNN")
MIN_IOU = 0.5
#: the lowest score a validation detection counts with, per family (arcgis.learn's ``detect_thresh``); others: any
#: the network gives (its ``box_score_thresh``, 0.05)
VALIDATION_SCORE = {"MaskRCNN": 0.5}
SAMPLE_SCORE = 0.5  # show_results.png draws the detections scoring this or more


def rcnn_normalisation(norm: ChipNormalisation) -> ChipNormalisation:
    """The scaling the R-CNN inference applies (0..1), with the same ``.emd`` keys as ``norm``."""
    if norm.imagenet:
        return ChipNormalisation(scale=np.full(len(norm.scale), 1.0 / 255.0), offset=np.zeros(len(norm.scale)),
                                 imagenet=True)
    low, high = np.asarray(norm.stats["band_min_values"]), np.asarray(norm.stats["band_max_values"])
    span = np.where(high - low == 0, 1.0, high - low)
    return ChipNormalisation(scale=1.0 / span, offset=-low / span, imagenet=False, stats=norm.stats)


def set_box_sampling(module, args: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN001
    """ARGUMENTS ``box_batch_size_per_image`` and ``box_positive_fraction`` into the R-CNN's proposal sampler (they
    shape training only; the weights and the detections do not depend on them); returns them for the ``.emd``
    (``Kwargs`` / ``MaskRCNNkwargs``, where arcgis.learn keeps the torchvision arguments it was given)."""
    given = {k: args[k] for k in ("box_batch_size_per_image", "box_positive_fraction") if k in args}
    sampler = module.roi_heads.fg_bg_sampler
    if "box_batch_size_per_image" in given:
        if given["box_batch_size_per_image"] < 1:
            raise ArgumentError("ARGUMENTS: box_batch_size_per_image must be 1 or more")
        sampler.batch_size_per_image = int(given["box_batch_size_per_image"])
    if "box_positive_fraction" in given:
        sampler.positive_fraction = float(given["box_positive_fraction"])
    return given


def scan_objects(data: TrainingData) -> list[int]:
    """Objects per class (``Classes`` order) over every chip."""
    counts = [0] * len(data.classes)
    if data.layout == "RCNN_Masks":
        for image in data.images:
            for position, path in mask_files(data, image):
                counts[position] += len(np.setdiff1d(np.unique(read_array(path)[0]), [0]))
        return counts
    for label in data.labels:
        for name, _ in voc_objects(label):
            counts[class_position(data, name)] += 1
    return counts


class DetectionReader(ChipReader):
    """Chip ``i`` scaled to 0..1 and its target ``{"boxes": [n, 4], "labels": [n]}`` (numpy)."""

    def target(self, i: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        rows, cols = self.shape[1], self.shape[2]
        boxes, labels = [], []
        for name, (x1, y1, x2, y2) in voc_objects(self.data.labels[i]):
            x1, x2 = np.clip([x1, x2], 0, cols)
            y1, y2 = np.clip([y1, y2], 0, rows)
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                boxes.append((x1, y1, x2, y2))
                labels.append(class_position(self.data, name) + 1)
        return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64)}


class MaskReader(ChipReader):
    """RCNN_Masks: chip ``i`` scaled to 0..1 and ``{"boxes", "labels", "masks" [n, H, W] uint8}``, one instance per
    number of each ``labels/<value>/<chip>.tif`` (its box: the instance's pixels' bounds)."""

    def target(self, i: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        rows, cols = self.shape[1], self.shape[2]
        boxes, labels, masks = [], [], []
        for position, path in mask_files(self.data, self.data.images[i]):
            numbers = read_array(path)[0]
            if numbers.shape != (rows, cols):
                raise InputDataError(f"Mask '{path}' is {numbers.shape[1]} x {numbers.shape[0]} pixels, its chip "
                                     f"{cols} x {rows}")
            for number in np.setdiff1d(np.unique(numbers), [0]):
                mask = numbers == number
                ys, xs = np.nonzero(mask)
                boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
                labels.append(position + 1)
                masks.append(mask)
        return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64),
                "masks": np.asarray(masks, np.uint8).reshape(-1, rows, cols)}


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of boolean masks ``a [N, H, W]`` and ``b [M, H, W]``."""
    pixels = int(np.prod(a.shape[1:]))  # no detection: a is [0, H, W]
    a2 = a.reshape(len(a), pixels).astype(np.float64)
    b2 = b.reshape(len(b), pixels).astype(np.float64)
    inter = a2 @ b2.T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _turn_masks(masks: np.ndarray, k: int, flip: bool) -> np.ndarray:
    masks = np.rot90(masks, k % 4, axes=(-2, -1))
    return np.ascontiguousarray(masks[..., ::-1] if flip else masks)


def _turn(image: np.ndarray, boxes: np.ndarray, k: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """``np.rot90(image, k)`` (counter-clockwise) then a left-right mirror, the boxes moved with the pixels."""
    out = boxes.copy()
    for _ in range(k % 4):
        width = image.shape[-1]
        image = np.rot90(image, 1, axes=(-2, -1))
        out = np.stack([out[:, 1], width - out[:, 2], out[:, 3], width - out[:, 0]], axis=1).reshape(-1, 4)
    if flip:
        width = image.shape[-1]
        image = image[..., ::-1]
        out = np.stack([width - out[:, 2], out[:, 1], width - out[:, 0], out[:, 3]], axis=1).reshape(-1, 4)
    return np.ascontiguousarray(image), out.astype(np.float32)


def detection_batches(reader: DetectionReader, indices: Sequence[int], batch_size: int, torch,  # noqa: ANN001
                      generator=None, augment: bool = False) -> Iterator[tuple]:  # noqa: ANN001
    """(images ``[B, C, H, W]``, list of target dicts of tensors), ``batch_size`` chips at a time; with ``augment``
    each chip turned by a random multiple of 90 degrees (square chips) and maybe mirrored, boxes following."""
    square = reader.shape[1] == reader.shape[2]
    for start in range(0, len(indices), batch_size):
        images, targets = [], []
        for i in indices[start:start + batch_size]:
            image, target = reader.image(int(i)), reader.target(int(i))
            boxes, masks = target["boxes"], target.get("masks")
            if augment:
                draws = torch.randint(0, 4, (2,), generator=generator).tolist()
                k, flip = draws[0] if square else 2 * (draws[0] % 2), draws[1] % 2 == 1
                image, boxes = _turn(image, boxes, k, flip)
                masks = None if masks is None else _turn_masks(masks, k, flip)
            images.append(image)
            targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(target["labels"])})
            if masks is not None:
                targets[-1]["masks"] = torch.from_numpy(masks)
        yield torch.from_numpy(np.stack(images)), targets


def detection_metrics(tally: DetectionTally, names: list[str]) -> dict[str, Any]:
    """AP per class (None: no truth in the validation chips) and mAP at IoU 0.5, JSON-ready."""
    by_index = {c.class_value: c for c in tally.classes()}
    per_class = {}
    for i, name in enumerate(names):
        c = by_index.get(i + 1)
        per_class[name] = {"ap": c.ap if c else None, "precision": c.precision if c else 0.0,
                           "recall": c.recall if c else 0.0, "f1": c.f1 if c else 0.0}
    mean = tally.mean_ap()
    return {"map": 0.0 if mean is None else mean, "iou_threshold": tally.min_iou, "average_precision": per_class}


class DetectionTrainer(Trainer):
    """:class:`Trainer` for torchvision detectors: the loss is the sum of the network's losses.  On the CPU the
    R-CNN's RoIAlign poolers run as matrix products where the map is small (:mod:`.roi_pooling`: the same numbers,
    a fifth of a MaskRCNN step saved)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - Trainer's
        super().__init__(*args, **kwargs)
        if self.device.type == "cpu":
            use_small_map_pooling(self.module)

    def _train_batches(self, epoch: int):  # noqa: ANN202
        order, gen = self._epoch_order(epoch)
        return detection_batches(self.reader, order, self.s.batch_size, self.torch, gen, self.s.augmentation)

    def _loss(self, images, targets):  # noqa: ANN001, ANN202
        torch = self.torch
        moved = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, enabled=self.amp):
            losses = self.module(list(images.to(self.device)), moved)
        return sum(v.float() for v in losses.values()), None

    def _eval_batch_norms(self) -> None:
        for sub in self.module.modules():
            if "BatchNorm" in type(sub).__name__:
                sub.eval()

    def _validation_mode(self) -> None:
        """How the validation loss is computed: torchvision's detectors give their losses only in training mode."""
        self.module.train()
        self._eval_batch_norms()

    def predict(self, images, min_score: float | None = None) -> list[dict[str, np.ndarray]]:  # noqa: ANN001
        """Detections of the network in eval mode (boxes, scores, labels as numpy); with ``min_score``, only those
        scoring over it (the heads' own threshold, so that weaker ones cost nothing; the stronger ones are the same:
        non-maximum suppression only ever removes a box for a stronger one)."""
        heads = self.module.roi_heads
        kept = heads.score_thresh
        if min_score is not None:
            heads.score_thresh = max(float(min_score), kept)
        try:
            with self.torch.no_grad():
                out = self.module.eval()(list(images.to(self.device)))
        finally:
            heads.score_thresh = kept
        return [{k: v.detach().float().cpu().numpy() if k != "labels" else v.cpu().numpy() for k, v in o.items()}
                for o in out]

    def validate(self) -> tuple[float, dict[str, Any]]:
        torch = self.torch
        tally = DetectionTally(min_iou=MIN_IOU)
        total, count = 0.0, 0
        for images, targets in detection_batches(self.reader, self.valid_idx, self.s.batch_size, torch):
            self._validation_mode()
            with torch.no_grad():
                loss, _ = self._loss(images, targets)
            total += float(loss) * len(images)
            count += len(images)
            for found, truth in zip(self.predict(images, VALIDATION_SCORE.get(self.s.model_type)), targets):
                if "masks" in truth:  # MaskRCNN: the IoU of the masks (the detection's at 0.5), as arcgis.learn
                    iou = mask_iou(found["masks"][:, 0] >= 0.5, truth["masks"].numpy() > 0)
                    tally.add_image(found["scores"], found["labels"].tolist(), truth["labels"].tolist(), iou)
                else:
                    tally.add_boxes(found["boxes"], found["scores"], found["labels"].tolist(),
                                    truth["boxes"].numpy(), truth["labels"].tolist())
        self.train_mode()
        return total / max(count, 1), detection_metrics(tally, self.names)

    def samples(self, count: int) -> list[tuple]:
        """(chip, truth target, detections) of the first validation chips, for show_results.png."""
        from .chips import read_array

        out = []
        for i in self.valid_idx[:count]:
            images, targets = next(detection_batches(self.reader, [i], 1, self.torch))
            found = self.predict(images, SAMPLE_SCORE)[0]
            truth = {k: v.numpy() for k, v in targets[0].items() if k != "masks"}
            out.append((read_array(self.reader.data.images[i]), truth, found))
        self.train_mode()
        return out

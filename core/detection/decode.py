# SPDX-License-Identifier: GPL-2.0-or-later
"""Object detector outputs -> boxes, scores, classes (and rotated boxes or instance masks), per chip.

Every layout a detector is exported with is decoded into one :class:`ChipDetections` per chip, in
chip pixel coordinates (x = column, y = row, pixel edges: a box covering columns 10..19 has
``x1 = 10, x2 = 20``).  The layouts (the README's "output layouts" table says the same):

``yolo_v5``   one output ``[B, N, 5 + nc]``: cx, cy, w, h, objectness, nc class scores (YOLOv5/v7);
              score = objectness x class score.
``yolo_v8``   one output ``[B, 4 + nc, N]``: cx, cy, w, h, nc class scores (YOLOv8/v11, no objectness).
``yolo_obb``  one output ``[B, 4 + nc + 1, N]``: as v8 plus the box angle in radians (Ultralytics OBB);
              the result is a rotated rectangle.
``yolo_seg``  ``[B, 4 + nc + nm, N]`` plus prototypes ``[B, nm, mh, mw]`` (Ultralytics segmentation):
              mask = sigmoid(coefficients . prototypes), upsampled bilinearly to the chip, cut to the box.
``torchvision`` TorchScript returning ``(losses, detections)`` or a list of dicts, one per image, with
              ``boxes`` [N, 4] (x1, y1, x2, y2), ``scores`` [N], ``labels`` [N] (1-based: 0 is the
              background) and optionally ``masks`` [N, 1, H, W] (probabilities): torchvision's Mask R-CNN,
              Faster R-CNN, RetinaNet, SSD, FCOS, and arcgis.learn's exports of them.
``separate``  an ONNX model with separate boxes / scores / labels (/ masks) outputs, named so, per image
              (``[N, 4]``, batch 1) or batched (``[B, N, 4]``); labels 1-based as torchvision exports them.
``anchors``   raw per-anchor outputs, one dict per image: ``anchor_boxes`` [A, 4] (x1, y1, x2, y2 pixels),
              ``anchor_scores`` [A, nc] probabilities, ``class_rule`` ``each`` (every class above the threshold is
              a candidate, NMS per class, the ``top_k`` best of each class kept: arcgis.learn's SSD) or ``best``
              (each anchor's best class, one NMS over all classes: arcgis.learn's RetinaNet).  The rebuilt
              arcgis.learn heads return this; the threshold and the NMS are applied here, with the run's
              ``threshold`` and ``nms_overlap``, by the same :func:`core.detection.nms.nms_boxes` the tool uses.

Which one: the model definition's ``DetectionLayout`` key (or Deepness's ``det_type`` metadata, or
Ultralytics's ``task`` metadata) when present, else the output shapes when they fit only one layout.
Masks are thresholded at 0.5, as torchvision and Ultralytics do.  Class slot ``i`` (0-based YOLO index,
torchvision label - 1) is ``Classes[i]`` of the model definition, as arcgis.learn and Esri's raster
functions look classes up by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputDataError, ModelDefinitionError
from ..model.definition import ClassInfo, ModelDefinition, palette
from .nms import nms_boxes, nms_top_k, priority_order

LAYOUTS = ("yolo_v5", "yolo_v8", "yolo_obb", "yolo_seg", "torchvision", "separate", "anchors")
MASK_THRESHOLD = 0.5

#: Deepness's det_type values -> our layouts
_DEEPNESS_DET_TYPES = {
    "yolo_v5_or_v7_default": "yolo_v5", "yolo_ultralytics": "yolo_v8", "yolo_ultralytics_obb": "yolo_obb",
    "yolo_ultralytics_segmentation": "yolo_seg", "yolo_v9": "yolo_v8",
}
_ULTRALYTICS_TASKS = {"detect": "yolo_v8", "obb": "yolo_obb", "segment": "yolo_seg"}

LAYOUT_HELP = (
    "supported layouts: YOLOv5/v7 [B, N, 5+classes]; YOLOv8/v11 [B, 4+classes, N]; Ultralytics OBB "
    "[B, 4+classes+1, N]; Ultralytics segmentation [B, 4+classes+32, N] + prototypes [B, 32, h, w]; "
    "torchvision-style (losses, detections) or a list of dicts with boxes/scores/labels(/masks); ONNX with "
    "separate boxes/scores/labels(/masks) outputs. Set \"DetectionLayout\" in the .emd to one of "
    + ", ".join(LAYOUTS) + " if the shapes are ambiguous")


@dataclass
class ChipDetections:
    """The objects one chip's model output holds, in chip pixel coordinates."""

    boxes: np.ndarray  # [N, 4] float64 x1, y1, x2, y2 (for rotated boxes: their axis-aligned extent)
    scores: np.ndarray  # [N] 0..1
    classes: np.ndarray  # [N] int: class slot (index into the class table)
    corners: np.ndarray | None = None  # [N, 4, 2] rotated box corners (x, y), or None
    masks: list[tuple[int, int, np.ndarray]] | None = None  # per object (x0, y0, bool mask crop), or None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: np.ndarray) -> ChipDetections:
        index = np.asarray(index, np.int64)
        return ChipDetections(
            self.boxes[index], self.scores[index], self.classes[index],
            None if self.corners is None else self.corners[index],
            None if self.masks is None else [self.masks[i] for i in index.tolist()])

    @staticmethod
    def empty(with_corners: bool = False, with_masks: bool = False) -> ChipDetections:
        return ChipDetections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64),
                              np.zeros((0, 4, 2)) if with_corners else None, [] if with_masks else None)


@dataclass
class ClassTable:
    """Class slot -> (name, value, colour)."""

    classes: list[ClassInfo]
    generated: bool = False  # names made up because neither the definition nor the model had any
    first_value: int = 0

    def info(self, slot: int) -> ClassInfo:
        if 0 <= slot < len(self.classes):
            return self.classes[slot]
        value = slot + self.first_value
        return ClassInfo(value, f"class {value}", None)


def _flatten(out: Any) -> list:
    """A TorchScript result as a flat list of leaves (arrays or dicts)."""
    if isinstance(out, (list, tuple)):
        return [leaf for item in out for leaf in _flatten(item)]
    return [out]


def describe_outputs(outputs: Any) -> str:
    """The shapes a model returned, for error messages."""
    def one(o: Any) -> str:
        if isinstance(o, np.ndarray):
            return "[" + ", ".join(map(str, o.shape)) + "]"
        if isinstance(o, dict):
            return "{" + ", ".join(f"{k}: {one(v)}" for k, v in o.items()) + "}"
        if isinstance(o, (list, tuple)):
            return "(" + ", ".join(one(v) for v in o) + ")"
        return type(o).__name__
    return one(outputs)


def torchvision_detections(outputs: Any) -> list[dict[str, np.ndarray]] | None:
    """The per-image detection dicts in a torchvision-style result, or None if it has none."""
    if isinstance(outputs, (list, tuple)) and len(outputs) == 2 and isinstance(outputs[0], dict) \
            and isinstance(outputs[1], (list, tuple)):
        outputs = outputs[1]  # (losses, detections): scripted torchvision detectors return both
    if isinstance(outputs, dict) and "boxes" in outputs:
        outputs = [outputs]
    if isinstance(outputs, (list, tuple)) and outputs and all(isinstance(d, dict) and "boxes" in d for d in outputs):
        return list(outputs)
    return None


def anchor_outputs(outputs: Any) -> list[dict[str, Any]] | None:
    """The per-image raw anchor dicts (layout ``anchors``) in a result, or None if it has none."""
    if isinstance(outputs, (list, tuple)) and outputs and \
            all(isinstance(d, dict) and "anchor_boxes" in d and "anchor_scores" in d for d in outputs):
        return list(outputs)
    return None


def _separate_roles(names: Sequence[str], arrays: Sequence[np.ndarray]) -> dict[str, int] | None:
    roles: dict[str, int] = {}
    for i, name in enumerate(names):
        low = name.lower()
        for role, keys in (("boxes", ("box", "bbox")), ("scores", ("score", "conf")),
                           ("labels", ("label", "class")), ("masks", ("mask",))):
            if any(k in low for k in keys) and role not in roles:
                roles[role] = i
                break
    if {"boxes", "scores", "labels"} <= set(roles):
        return roles
    # unnamed: by shape ([N, 4] float, [N] float, [N] int, [N, 1, H, W])
    roles = {}
    for i, a in enumerate(arrays):
        if a.ndim in (2, 3) and a.shape[-1] == 4 and "boxes" not in roles:
            roles["boxes"] = i
        elif a.ndim == 4 and "masks" not in roles:
            roles["masks"] = i
        elif a.ndim in (1, 2) and a.dtype.kind in "iu" and "labels" not in roles:
            roles["labels"] = i
        elif a.ndim in (1, 2) and a.dtype.kind == "f" and "scores" not in roles:
            roles["scores"] = i
    return roles if {"boxes", "scores", "labels"} <= set(roles) else None


def choose_layout(md: ModelDefinition, outputs: Any, output_names: Sequence[str], n_classes: int | None,
                  metadata: dict[str, Any] | None = None) -> str:
    """Which layout a model's outputs are in (see the module docstring), or a clear error."""
    metadata = metadata or {}
    declared = md.extra.get("DetectionLayout")
    if not declared and metadata.get("det_type"):
        declared = _DEEPNESS_DET_TYPES.get(str(metadata["det_type"]).strip().lower())
    if not declared and metadata.get("task"):
        declared = _ULTRALYTICS_TASKS.get(str(metadata["task"]).strip().lower())
    if declared:
        declared = str(declared).strip().lower()
        if declared not in LAYOUTS:
            raise ModelDefinitionError(f"DetectionLayout '{declared}' is unknown; {LAYOUT_HELP}")
        return declared
    if anchor_outputs(outputs) is not None:
        return "anchors"
    if torchvision_detections(outputs) is not None:
        return "torchvision"
    arrays = [o for o in _flatten(outputs) if isinstance(o, np.ndarray)]
    if len(arrays) >= 3 and _separate_roles(list(output_names), arrays) is not None:
        return "separate"
    if len(arrays) == 2 and arrays[0].ndim == 3 and arrays[1].ndim == 4:
        return "yolo_seg"
    if len(arrays) == 1 and arrays[0].ndim == 3:
        _, a, b = arrays[0].shape
        if n_classes:
            v8 = a == 4 + n_classes and b != 4 + n_classes
            v5 = b == 5 + n_classes and a != 5 + n_classes
            obb = a == 5 + n_classes and b != 5 + n_classes
            if [v8, v5, obb].count(True) == 1:
                return "yolo_v8" if v8 else ("yolo_v5" if v5 else "yolo_obb")
        elif a < b and a > 4:
            return "yolo_v8"  # no class count to tell v8 from OBB: assume the common case, v8
        elif b < a and b > 5:
            return "yolo_v5"
    raise InputDataError(f"The detector returned {describe_outputs(outputs)}"
                         + (f" with {n_classes} classes" if n_classes else "")
                         + f", which matches no detection layout; {LAYOUT_HELP}")


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = xywh.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float64)


def obb_corners(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Corners [N, 4, 2] of rotated boxes (Ultralytics xywhr: angle in radians, y down)."""
    cos, sin = np.cos(angle), np.sin(angle)
    v1 = np.stack([w / 2 * cos, w / 2 * sin], axis=-1)
    v2 = np.stack([-h / 2 * sin, h / 2 * cos], axis=-1)
    c = np.stack([cx, cy], axis=-1)
    return np.stack([c + v1 + v2, c + v1 - v2, c - v1 - v2, c - v1 + v2], axis=1).astype(np.float64)


def _bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize [C, h, w] to [C, out_h, out_w] bilinearly (half-pixel centres, as torch align_corners=False)."""
    _, h, w = image.shape
    ys = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = image[:, y0][:, :, x0] * (1 - fx) + image[:, y0][:, :, x1] * fx
    bottom = image[:, y1][:, :, x0] * (1 - fx) + image[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def _crop_masks(full: np.ndarray, boxes: np.ndarray, threshold: float = MASK_THRESHOLD) -> list[tuple[int, int, np.ndarray]]:
    """Per object: the thresholded mask inside its box (one pixel of margin), as (x0, y0, crop)."""
    h, w = full.shape[-2:]
    out = []
    for k in range(full.shape[0]):
        x1, y1, x2, y2 = boxes[k]
        c0, r0 = max(0, int(np.floor(x1)) - 1), max(0, int(np.floor(y1)) - 1)
        c1, r1 = min(w, int(np.ceil(x2)) + 1), min(h, int(np.ceil(y2)) + 1)
        if c1 <= c0 or r1 <= r0:
            out.append((c0, r0, np.zeros((0, 0), bool)))
            continue
        out.append((c0, r0, full[k, r0:r1, c0:c1] > threshold))
    return out


def _full_masks(masks: np.ndarray, threshold: float = MASK_THRESHOLD) -> list[tuple[int, int, np.ndarray]]:
    """Whole-chip masks [N, (1,) H, W] of torchvision models: keep each one's bounding crop."""
    if masks.ndim == 4:
        masks = masks[:, 0]
    out = []
    for k in range(masks.shape[0]):
        m = masks[k] > threshold
        rows, cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        if not rows.size:
            out.append((0, 0, np.zeros((0, 0), bool)))
            continue
        out.append((int(cols[0]), int(rows[0]), m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]))
    return out


@dataclass
class DetectionDecoder:
    """Decodes a batch of model outputs into one :class:`ChipDetections` per chip."""

    layout: str
    n_classes: int | None
    chip_h: int
    chip_w: int
    output_names: list[str] = field(default_factory=list)
    with_masks: bool = False  # the output has instance masks (yolo_seg, or a masks output / key)

    @property
    def label_offset(self) -> int:
        """torchvision-style labels count from 1 (0 is the background): slot = label - 1; YOLO's from 0."""
        return 1 if self.layout in ("torchvision", "separate", "anchors") else 0

    @property
    def rotated(self) -> bool:
        return self.layout == "yolo_obb"

    def decode(self, outputs: Any, batch: int, threshold: float, nms_overlap: float = 1.0) -> list[ChipDetections]:
        """Everything scoring at least ``threshold`` in each chip of the batch (raw anchor outputs: above it, then
        suppressed at ``nms_overlap``)."""
        if self.layout == "anchors":
            dets = anchor_outputs(outputs)
            if dets is None or len(dets) != batch:
                raise InputDataError(f"The detector returned {describe_outputs(outputs)} for {batch} images; raw "
                                     "anchor outputs come as one dict per image")
            return [decode_anchors(d, threshold, nms_overlap) for d in dets]
        if self.layout == "torchvision":
            dets = torchvision_detections(outputs)
            if dets is None or len(dets) != batch:
                raise InputDataError(f"The detector returned {describe_outputs(outputs)} for {batch} images; "
                                     "a torchvision-style model returns one dict per image")
            return [self._dict(d, threshold) for d in dets]
        arrays = [o for o in _flatten(outputs) if isinstance(o, np.ndarray)]
        if self.layout == "separate":
            roles = _separate_roles(self.output_names, arrays)
            if roles is None:
                raise InputDataError(f"The detector returned {describe_outputs(outputs)}: no boxes/scores/labels "
                                     f"outputs found; {LAYOUT_HELP}")
            parts = {k: arrays[i] for k, i in roles.items()}
            if parts["boxes"].ndim == 2:  # one image per call
                if batch != 1:
                    raise InputDataError("This model returns detections for one image per call: use batch_size 1")
                parts = {k: v[None] for k, v in parts.items()}
            return [self._dict({k: v[b] for k, v in parts.items()}, threshold) for b in range(batch)]
        out = arrays[0]
        if out.ndim != 3 or out.shape[0] != batch:
            raise InputDataError(f"The detector returned {describe_outputs(outputs)}; the '{self.layout}' layout "
                                 f"needs [batch, ..., ...] for {batch} images; {LAYOUT_HELP}")
        if self.layout == "yolo_v5":
            return [self._yolo(out[b], threshold, objectness=True) for b in range(batch)]
        rows = np.transpose(out, (0, 2, 1))
        protos = arrays[1] if self.layout == "yolo_seg" and len(arrays) > 1 else None
        if self.layout == "yolo_seg" and protos is None:
            raise InputDataError(f"The detector returned {describe_outputs(outputs)}: a segmentation model also "
                                 "returns its mask prototypes [B, 32, h, w]")
        return [self._yolo(rows[b], threshold, protos=None if protos is None else protos[b]) for b in range(batch)]

    def _classes_in(self, width: int, extra: int) -> int:
        nc = self.n_classes if self.n_classes else width - extra
        if nc <= 0 or width < extra + nc:
            raise InputDataError(f"The '{self.layout}' output has {width} values per candidate, too few for "
                                 f"{nc} classes; {LAYOUT_HELP}")
        return nc

    def _yolo(self, rows: np.ndarray, threshold: float, objectness: bool = False,
              protos: np.ndarray | None = None) -> ChipDetections:
        rows = rows.astype(np.float32, copy=False)
        width = rows.shape[1]
        if objectness:
            nc = self._classes_in(width, 5)
            cls = rows[:, 5:5 + nc] * rows[:, 4:5]
        elif self.layout == "yolo_obb":
            nc = self._classes_in(width, 5)
            cls = rows[:, 4:4 + nc]
        elif self.layout == "yolo_seg":
            nm = protos.shape[0]  # type: ignore[union-attr]
            nc = self._classes_in(width, 4 + nm)
            cls = rows[:, 4:4 + nc]
        else:
            nc = self._classes_in(width, 4)
            cls = rows[:, 4:4 + nc]
        slot = cls.argmax(axis=1)
        score = cls[np.arange(cls.shape[0]), slot]
        keep = np.nonzero(score >= threshold)[0]
        sel = rows[keep]
        boxes = _xywh_to_xyxy(sel[:, :4])
        det = ChipDetections(boxes, score[keep].astype(np.float64), slot[keep].astype(np.int64))
        if self.layout == "yolo_obb":
            corners = obb_corners(sel[:, 0], sel[:, 1], sel[:, 2], sel[:, 3], sel[:, 4 + nc])
            det.corners = corners
            det.boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        elif self.layout == "yolo_seg":
            assert protos is not None
            nm, mh, mw = protos.shape
            coef = sel[:, 4 + nc:4 + nc + nm]
            if coef.shape[0]:
                logits = (coef @ protos.reshape(nm, -1)).reshape(-1, mh, mw)
                probs = 1.0 / (1.0 + np.exp(-logits))
                full = _bilinear(probs, self.chip_h, self.chip_w)
                inside = np.zeros_like(full, bool)
                for k, (x1, y1, x2, y2) in enumerate(boxes):  # Ultralytics cuts each mask to its box
                    inside[k, max(0, int(round(y1))):max(0, int(round(y2))),
                           max(0, int(round(x1))):max(0, int(round(x2)))] = True
                det.masks = _crop_masks(np.where(inside, full, 0.0), boxes)
            else:
                det.masks = []
        return det

    def _dict(self, d: dict[str, np.ndarray], threshold: float) -> ChipDetections:
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
        scores = np.asarray(d.get("scores", np.ones(len(boxes))), np.float64).reshape(-1)
        labels = np.asarray(d.get("labels", np.ones(len(boxes))), np.float64).reshape(-1).astype(np.int64)
        if not (len(boxes) == len(scores) == len(labels)):
            raise InputDataError(f"The detector returned {len(boxes)} boxes, {len(scores)} scores and {len(labels)} "
                                 "labels for one image: they must be as many")
        keep = np.nonzero(scores >= threshold)[0]
        det = ChipDetections(boxes[keep], scores[keep], labels[keep] - self.label_offset)
        if d.get("masks") is not None:
            masks = np.asarray(d["masks"])
            if masks.shape[0] != len(scores):
                raise InputDataError(f"The detector returned {masks.shape[0]} masks for {len(scores)} boxes")
            if masks.shape[0] and (masks.ndim not in (3, 4) or tuple(masks.shape[-2:]) != (self.chip_h, self.chip_w)):
                raise InputDataError(
                    f"The detector returned masks of shape {list(masks.shape)} for tiles of {self.chip_w}x"
                    f"{self.chip_h} pixels: instance masks must cover the tile ([N, 1, {self.chip_h}, {self.chip_w}]); "
                    "masks of another size are not stretched over it")
            det.masks = _full_masks(masks[keep].astype(np.float32))
        return det


def decode_anchors(d: dict[str, Any], threshold: float, nms_overlap: float) -> ChipDetections:
    """One image's raw anchor outputs (layout ``anchors``) -> its objects: candidates scoring above ``threshold``,
    suppressed per class (``class_rule`` ``each``, then the ``top_k`` best of each class) or over all classes
    (``best``), most confident first."""
    boxes = np.asarray(d["anchor_boxes"], np.float64).reshape(-1, 4)
    probs = np.asarray(d["anchor_scores"], np.float64)
    probs = probs.reshape(len(boxes), -1)
    rule = str(d.get("class_rule", "each"))
    if rule == "best":
        slots = probs.argmax(axis=1) if probs.shape[1] else np.zeros(len(boxes), np.int64)
        scores = probs[np.arange(len(boxes)), slots] if probs.shape[1] else np.zeros(len(boxes))
        idx = np.nonzero(scores > threshold)[0]
        det = ChipDetections(boxes[idx], scores[idx], slots[idx].astype(np.int64))
        return det.take(nms_boxes(det.boxes, det.scores, None, nms_overlap))
    if rule != "each":
        raise InputDataError(f"Raw anchor outputs with class_rule '{rule}': expected 'each' or 'best'")
    idx, slots = np.nonzero(probs > threshold)
    det = ChipDetections(boxes[idx], probs[idx, slots], slots.astype(np.int64))
    top_k = int(d.get("top_k") or 0)
    if not top_k:
        return det.take(nms_boxes(det.boxes, det.scores, det.classes, nms_overlap))
    keep = []
    for c in np.unique(det.classes):  # the top_k of each class: greedy NMS stops there
        mine = np.nonzero(det.classes == c)[0]
        keep.append(mine[nms_top_k(det.boxes[mine], det.scores[mine], nms_overlap, top_k)])
    keep_all = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return det.take(keep_all[priority_order(det.scores[keep_all])])  # most confident first


def make_decoder(md: ModelDefinition, probe: Any, output_names: Sequence[str], n_classes: int | None,
                 metadata: dict[str, Any] | None, chip_h: int, chip_w: int) -> DetectionDecoder:
    """The decoder for a model, from its output on a probe batch (see :func:`choose_layout`)."""
    layout = choose_layout(md, probe, output_names, n_classes, metadata)
    with_masks = layout == "yolo_seg"
    if layout == "torchvision":
        dets = torchvision_detections(probe) or []
        with_masks = any(d.get("masks") is not None for d in dets)
    elif layout == "separate":
        arrays = [o for o in _flatten(probe) if isinstance(o, np.ndarray)]
        roles = _separate_roles(list(output_names), arrays) or {}
        with_masks = "masks" in roles
    return DetectionDecoder(layout, n_classes, chip_h, chip_w, list(output_names), with_masks)


def class_table(md: ModelDefinition, metadata: dict[str, Any] | None, n_slots: int | None,
                first_value: int = 0) -> ClassTable:
    """The classes of a detector: the definition's Classes, else the model's ``names`` metadata, else numbers
    (slot i -> value ``i + first_value``: 1-based for torchvision-style labels)."""
    if md.classes:
        return ClassTable(list(md.classes))
    names = (metadata or {}).get("names")
    if isinstance(names, dict):
        try:
            lookup = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            lookup = {}
        if lookup:
            colours = palette(max(lookup) + 1)
            return ClassTable([ClassInfo(k, lookup.get(k, f"class {k}"), colours[k]) for k in range(max(lookup) + 1)])
    if isinstance(names, list) and names:
        colours = palette(len(names))
        return ClassTable([ClassInfo(i, str(n), colours[i]) for i, n in enumerate(names)])
    n = n_slots or 1
    colours = palette(n)
    return ClassTable([ClassInfo(i + first_value, f"class {i + first_value}", colours[i]) for i in range(n)],
                      generated=True, first_value=first_value)

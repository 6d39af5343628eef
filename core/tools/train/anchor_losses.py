# SPDX-License-Identifier: GPL-2.0-or-later
"""The training losses of arcgis.learn's anchor detectors, SingleShotDetector and RetinaNet, written for this plugin
after arcgis.learn 2.4.4's published rules (``_ssd.py``, ``_retinanet_utils.py``; read for facts, not copied).

Boxes are in the rebuilt heads' frames (:mod:`core.backends.arcgis_learn.ssd` and ``.retinanet``), rows first:

* SSD: corners (row 1, column 1, row 2, column 2) in 0..1 of the chip; anchors (row centre, column centre, height,
  width) in 0..1 and each anchor's cell size.  An anchor is matched to the truth box it overlaps most; every truth
  box also takes the anchor that overlaps it most, whatever the overlap; matches over IoU 0.4 are positives, the
  rest background.  Location loss: the mean absolute difference of the positives' decoded corners (tanh offsets)
  and their truth's; class loss: binary cross-entropy with logits over the N class columns (column 0, the
  background, is never trained), summed and divided by N, optionally focal (alpha 0.25, gamma 1).  A chip's loss is
  their sum (or ``location_loss_factor`` x location + (1 - factor) x class); a batch's the sum of its chips'.
* RetinaNet: centre/size boxes (row, column, height, width) in -1..1; anchors the same.  An anchor over IoU 0.5
  with its best truth box is a positive, under 0.4 background, between them ignored (no forced match).  Location
  loss: smooth L1 of the positives' offsets against the encoded truth (centre shift / anchor size / 0.1, log size
  ratio / 0.2); class loss: focal loss (gamma 2, alpha 0.25 on background, 0.75 on objects) summed over the
  anchors that are not ignored and divided by the positives (at least 1).  A batch's loss is the mean of its chips'.

A chip without objects trains every anchor as background (arcgis.learn's SSD returns 0 for it, an artefact of an
exception it catches; learning the empty chips is what the loss means).
"""

from __future__ import annotations

from typing import Any

SSD_POSITIVE_IOU = 0.4
RETINA_POSITIVE_IOU, RETINA_BACKGROUND_IOU = 0.5, 0.4
RETINA_SCALE = (0.1, 0.1, 0.2, 0.2)


def corners_iou(a, b):  # noqa: ANN001, ANN201 - tensors [N, 4], [M, 4] -> [N, M]
    """IoU of corner boxes (any consistent axis order)."""
    import torch

    low = torch.max(a[:, None, :2], b[None, :, :2])
    high = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def to_corners(cthw):  # noqa: ANN001, ANN201
    import torch

    return torch.cat([cthw[:, :2] - cthw[:, 2:] / 2, cthw[:, :2] + cthw[:, 2:] / 2], dim=1)


def to_centres(corners):  # noqa: ANN001, ANN201
    import torch

    return torch.cat([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], dim=1)


# -- SingleShotDetector -----------------------------------------------------------------------------------------
def ssd_match(truth, anchor_corners):  # noqa: ANN001, ANN201
    """(overlap [A], truth index [A]): each anchor's best truth box; each truth box's best anchor is forced to it
    (overlap 1.99, so it is a positive however small the overlap)."""
    overlaps = corners_iou(truth, anchor_corners)  # [G, A]
    best_anchor = overlaps.argmax(dim=1)
    overlap, index = overlaps.max(dim=0)
    overlap[best_anchor] = 1.99
    for g, a in enumerate(best_anchor.tolist()):  # later truth boxes win a shared anchor, as arcgis.learn's loop
        index[a] = g
    return overlap, index


def ssd_decode(offsets, anchors, cells):  # noqa: ANN001, ANN201
    """Corners of the boxes the offsets make of the anchors (the inference's tanh rule)."""
    import torch

    act = torch.tanh(offsets)
    centres = act[:, :2] / 2 * cells + anchors[:, :2]
    hw = (act[:, 2:] / 2 + 1) * anchors[:, 2:]
    return torch.cat([centres - hw / 2, centres + hw / 2], dim=1)


def ssd_chip_loss(classes, offsets, truth, labels, anchors, cells, focal: bool = False,  # noqa: ANN001, ANN201
                  location_factor: float | None = None):
    """One chip: ``classes`` [A, N + 1] logits, ``offsets`` [A, 4], ``truth`` [G, 4] corners 0..1 (rows first),
    ``labels`` [G] 1-based."""
    import torch
    import torch.nn.functional as F

    n = classes.shape[1] - 1
    target = torch.zeros(classes.shape[0], dtype=torch.long, device=classes.device)
    location = classes.new_zeros(())
    if len(truth):
        overlap, index = ssd_match(truth, to_corners(anchors))
        positive = overlap > SSD_POSITIVE_IOU
        target = torch.where(positive, labels[index], target)
        boxes = ssd_decode(offsets[positive], anchors[positive], cells[positive])
        location = (boxes - truth[index[positive]]).abs().mean()
    one_hot = F.one_hot(target, n + 1)[:, 1:].to(classes.dtype)
    logits = classes[:, 1:]
    weight = None
    if focal:
        p = logits.sigmoid()
        p_t = p * one_hot + (1 - p) * (1 - one_hot)
        weight = ((0.25 * one_hot + 0.75 * (1 - one_hot)) * (1 - p_t)).detach()
    klass = F.binary_cross_entropy_with_logits(logits, one_hot, weight, reduction="sum") / n
    if location_factor is None:
        return location + klass
    return location_factor * location + (1 - location_factor) * klass


# -- RetinaNet --------------------------------------------------------------------------------------------------
def retinanet_encode(truth, anchors):  # noqa: ANN001, ANN201
    """The offsets that decode to ``truth`` on ``anchors`` (both centre/size)."""
    import torch

    centres = (truth[:, :2] - anchors[:, :2]) / anchors[:, 2:]
    sizes = torch.log(truth[:, 2:] / anchors[:, 2:] + 1e-8)
    return torch.cat([centres, sizes], dim=1) / truth.new_tensor(RETINA_SCALE)


def retinanet_match(anchors, truth):  # noqa: ANN001, ANN201
    """Per anchor: the index of its truth box (IoU over 0.5), -1 background (under 0.4), -2 ignored."""
    import torch

    matches = torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
    if not len(truth):
        return matches
    best, index = corners_iou(to_corners(anchors), to_corners(truth)).max(dim=1)
    matches[best >= RETINA_BACKGROUND_IOU] = -2
    matches[best > RETINA_POSITIVE_IOU] = index[best > RETINA_POSITIVE_IOU]
    return matches


def retinanet_chip_loss(classes, offsets, truth, labels, anchors):  # noqa: ANN001, ANN201
    """One chip: ``classes`` [A, N] logits, ``offsets`` [A, 4], ``truth`` [G, 4] centre/size in -1..1 (rows
    first), ``labels`` [G] 1-based, ``anchors`` [A, 4] centre/size."""
    import torch
    import torch.nn.functional as F

    matches = retinanet_match(anchors, truth)
    positive = matches >= 0
    location = classes.new_zeros(())
    if positive.any():
        location = F.smooth_l1_loss(offsets[positive], retinanet_encode(truth[matches[positive]], anchors[positive]))
    kept = matches >= -1
    target = torch.zeros(classes.shape[0], dtype=torch.long, device=classes.device)
    target[positive] = labels[matches[positive]]
    one_hot = F.one_hot(target[kept], classes.shape[1] + 1)[:, 1:].to(classes.dtype)
    logits = classes[kept]
    p = logits.sigmoid()
    weight = (one_hot * (1 - p) + (1 - one_hot) * p).pow(2) * ((1 - one_hot) * 0.25 + one_hot * 0.75)
    focal = F.binary_cross_entropy_with_logits(logits, one_hot, weight.detach(), reduction="sum")
    return location + focal / positive.sum().clamp(min=1)


def batch_loss(family: str, outputs: Any, targets: list[dict[str, Any]], geometry: dict[str, Any]):  # noqa: ANN201
    """The batch's loss for ``family`` from the head's ``outputs`` and the targets (xyxy chip pixels, 1-based
    labels); ``geometry``: the anchors (``anchors``, SSD's ``cells``) and the chip size ``hw``."""
    import torch

    h, w = geometry["hw"]
    classes, offsets = outputs[0].float(), outputs[1].float()
    total = classes.new_zeros(())
    for i, target in enumerate(targets):
        boxes = target["boxes"].to(classes.device, torch.float32)
        labels = target["labels"].to(classes.device)
        rows_first = boxes[:, [1, 0, 3, 2]] / boxes.new_tensor([h, w, h, w])  # corners 0..1
        if family == "SingleShotDetector":
            total = total + ssd_chip_loss(classes[i], offsets[i], rows_first, labels, geometry["anchors"],
                                          geometry["cells"], geometry.get("focal", False),
                                          geometry.get("location_factor"))
        else:
            total = total + retinanet_chip_loss(classes[i], offsets[i], to_centres(rows_first * 2 - 1), labels,
                                                geometry["anchors"])
    return total if family == "SingleShotDetector" else total / max(len(targets), 1)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Every detector output layout decoded from hand-made arrays: boxes, scores, classes, rotated corners, masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dltools.core.detection.decode import choose_layout, class_table, make_decoder, obb_corners
from dltools.core.errors import InputDataError, ModelDefinitionError
from dltools.core.model.loader import load_model_definition


def md(classes: int | None = 2, **extra):
    data = {"Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": "m.onnx", "ImageHeight": 32,
            "ImageWidth": 32, "ExtractBands": [0, 1, 2], **extra}
    if classes:
        data["Classes"] = [{"Value": 10 * (i + 1), "Name": f"c{i}"} for i in range(classes)]
    return load_model_definition(json.dumps(data), check_file=False)


def candidates(rows: list[list[float]], n: int = 8) -> np.ndarray:
    """[N, C] rows padded with zero rows to n candidates."""
    arr = np.zeros((n, len(rows[0])), np.float32)
    arr[:len(rows)] = rows
    return arr


def test_yolo_v5_objectness_times_class():
    rows = candidates([[10, 10, 4, 6, 0.9, 0.2, 0.8], [20, 5, 2, 2, 0.5, 0.9, 0.1], [5, 5, 2, 2, 0.3, 1.0, 0.0]])
    out = rows[None]  # [1, N, 5 + 2]
    m = md()
    dec = make_decoder(m, [out], ["output0"], 2, {}, 32, 32)
    assert dec.layout == "yolo_v5"
    det = dec.decode([out], 1, 0.4)[0]
    assert det.boxes.tolist() == [[8, 7, 12, 13], [19, 4, 21, 6]]
    assert det.scores == pytest.approx([0.72, 0.45])
    assert det.classes.tolist() == [1, 0]
    assert class_table(m, {}, 2).info(1).name == "c1"


def test_yolo_v8_and_names_metadata():
    rows = candidates([[10, 10, 4, 6, 0.2, 0.8], [20, 5, 2, 2, 0.6, 0.1]])
    out = rows.T[None]  # [1, 4 + 2, N]
    m = md(classes=None)
    dec = make_decoder(m, [out], ["output0"], 2, {"names": {0: "car", 1: "truck"}}, 32, 32)
    assert dec.layout == "yolo_v8"
    det = dec.decode([out], 1, 0.5)[0]
    assert det.boxes.tolist() == [[8, 7, 12, 13], [19, 4, 21, 6]] and det.classes.tolist() == [1, 0]
    table = class_table(m, {"names": {0: "car", 1: "truck"}}, 2)
    assert [(c.value, c.name) for c in table.classes] == [(0, "car"), (1, "truck")]


def test_yolo_obb_rotated_corners():
    angle = np.pi / 2
    rows = candidates([[10, 10, 8, 2, 0.9, 0.1, angle]])
    out = rows.T[None]  # [1, 4 + 2 + 1, N]
    dec = make_decoder(md(), [out], ["output0"], 2, {"task": "obb"}, 32, 32)
    assert dec.layout == "yolo_obb" and dec.rotated
    det = dec.decode([out], 1, 0.5)[0]
    assert det.corners[0] == pytest.approx(obb_corners(np.array([10.0]), np.array([10.0]), np.array([8.0]),
                                                       np.array([2.0]), np.array([angle]))[0])
    assert det.boxes[0] == pytest.approx([9, 6, 11, 14])  # 8 wide, turned upright


def test_yolo_seg_masks_from_prototypes():
    nm = 2
    protos = np.full((1, nm, 8, 8), -10.0, np.float32)
    protos[0, 0, 2:4, 2:4] = 10.0  # prototype 0: a block covering chip pixels 8..15 (x4 upsampling)
    rows = candidates([[12, 12, 16, 16, 0.9, 0.1, 1.0, 0.0]])  # box 4..20, coefficients (1, 0)
    out = rows.T[None]  # [1, 4 + 2 + 2, N]
    dec = make_decoder(md(), [out, protos], ["output0", "output1"], 2, {}, 32, 32)
    assert dec.layout == "yolo_seg" and dec.with_masks
    det = dec.decode([out, protos], 1, 0.5)[0]
    x0, y0, mask = det.masks[0]
    full = np.zeros((32, 32), bool)
    full[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
    rows_, cols_ = np.nonzero(full)
    assert (rows_.min(), rows_.max(), cols_.min(), cols_.max()) == (8, 15, 8, 15)


def test_torchvision_dicts_and_losses_tuple():
    det = {"boxes": np.array([[1, 2, 5, 6], [0, 0, 3, 3]], np.float32), "scores": np.array([0.9, 0.2], np.float32),
           "labels": np.array([2, 1], np.int64)}
    for out in ([det], ({}, [det])):
        dec = make_decoder(md(), out, [], 2, {}, 8, 8)
        assert dec.layout == "torchvision" and not dec.with_masks and dec.label_offset == 1
        got = dec.decode(out, 1, 0.5)[0]
        assert got.boxes.tolist() == [[1, 2, 5, 6]] and got.classes.tolist() == [1]


def test_separate_outputs_named_and_batched():
    boxes = np.array([[[1, 1, 4, 4], [0, 0, 0, 0]]], np.float32)
    scores = np.array([[0.8, 0.0]], np.float32)
    labels = np.array([[1, 0]], np.int64)
    masks = np.zeros((1, 2, 1, 8, 8), np.float32)
    masks[0, 0, 0, 1:4, 1:4] = 0.7
    outs = [boxes, labels, scores, masks]
    names = ["dets_boxes", "labels", "scores", "masks"]
    dec = make_decoder(md(), outs, names, 2, {}, 8, 8)
    assert dec.layout == "separate" and dec.with_masks
    got = dec.decode(outs, 1, 0.5)[0]
    assert got.boxes.tolist() == [[1, 1, 4, 4]] and got.classes.tolist() == [0]
    x0, y0, m = got.masks[0]
    assert (x0, y0, m.shape, bool(m.all())) == (1, 1, (3, 3), True)


def test_declared_layout_and_errors():
    out = np.zeros((1, 7, 50), np.float32)  # 4 + 3 classes or 4 + 2 + angle: ambiguous without a class count
    assert choose_layout(md(classes=None, DetectionLayout="yolo_obb"), [out], [], None) == "yolo_obb"
    assert choose_layout(md(classes=3), [out], [], 3) == "yolo_v8"
    assert choose_layout(md(classes=2), [out], [], 2) == "yolo_obb"
    with pytest.raises(ModelDefinitionError, match="DetectionLayout 'yolo_v99' is unknown"):
        choose_layout(md(DetectionLayout="yolo_v99"), [out], [], 2)
    with pytest.raises(InputDataError, match=r"returned \(\[1, 3, 32, 32\]\).*supported layouts: YOLOv5"):
        choose_layout(md(), [np.zeros((1, 3, 32, 32))], [], 2)


@pytest.mark.parametrize("k", range(8))
def test_test_time_transforms_invert_boxes_corners_and_masks(k):
    from dltools.core.detection.decode import ChipDetections
    from dltools.core.detection.geometry import invert_transform
    from dltools.core.engine import augment

    h = w = 16
    mask = np.zeros((h, w), bool)
    mask[2:5, 3:11] = True  # an L shape, 8 wide and 3 tall plus a foot
    mask[5:9, 3:5] = True
    seen = augment.forward(mask[None].astype(np.uint8), k)[0].astype(bool)  # what the model saw
    rows, cols = np.nonzero(seen)
    box = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], float)
    crop = seen[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    det = ChipDetections(box, np.array([0.9]), np.array([0]), None, [(int(cols.min()), int(rows.min()), crop)])
    back = invert_transform(det, k, h, w)
    assert back.boxes[0].tolist() == [3, 2, 11, 9]
    x0, y0, m = back.masks[0]
    full = np.zeros((h, w), bool)
    full[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
    assert (full == mask).all()


def _anchors(rule: str, top_k: int = 0) -> dict:
    """Five anchors, two classes: 0 and 1 overlap (IoU 0.81), 2 lies apart, 3 overlaps 2 only a little (IoU 0.2),
    4 is 0's twin for class 1."""
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [24, 20, 34, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.55, 0.1], [0.1, 0.95]], np.float32)
    out = {"anchor_boxes": boxes, "anchor_scores": scores, "class_rule": rule}
    if top_k:
        out["top_k"] = top_k
    return out


def test_raw_anchor_outputs_each_class_nms_per_class_and_top_k():
    """arcgis.learn's SSD rule: every (anchor, class) above the threshold, NMS within a class, the top_k of each."""
    decoder = make_decoder(md(), [_anchors("each")], [], 2, None, 32, 32)
    assert (decoder.layout, decoder.label_offset) == ("anchors", 1)
    det = decoder.decode([_anchors("each")], 1, threshold=0.5, nms_overlap=0.5)[0]
    # class 0: anchors 0 (0.9), 1 (0.8, suppressed by 0), 3 (0.55); class 1: anchors 4 (0.95), 1 (0.7, IoU 0.81
    # with 4: suppressed), 2 (0.6)
    assert det.classes.tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(det.scores, [0.95, 0.9, 0.6, 0.55], atol=1e-6)
    np.testing.assert_allclose(det.boxes, [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [24, 20, 34, 30]])
    top1 = decoder.decode([_anchors("each", top_k=1)], 1, threshold=0.5, nms_overlap=0.5)[0]
    assert top1.classes.tolist() == [1, 0] and top1.scores.round(2).tolist() == [0.95, 0.9]
    # strictly above the threshold, as arcgis.learn; no suppression at overlap 1.0
    strict = decoder.decode([_anchors("each")], 1, threshold=float(np.float32(0.6)), nms_overlap=1.0)[0]
    assert strict.scores.round(2).tolist() == [0.95, 0.9, 0.8, 0.7]


def test_raw_anchor_outputs_best_class_one_nms_for_all_classes():
    """arcgis.learn's RetinaNet rule: each anchor's best class, then one NMS over every class."""
    decoder = make_decoder(md(), [_anchors("best")], [], 2, None, 32, 32)
    det = decoder.decode([_anchors("best")], 1, threshold=0.5, nms_overlap=0.5)[0]
    # best classes: 0 (0.9), 0 (0.8), 1 (0.6), 0 (0.55), 1 (0.95); anchor 4 (class 1) suppresses 0 and 1 (class 0)
    assert det.classes.tolist() == [1, 1, 0]
    np.testing.assert_allclose(det.scores, [0.95, 0.6, 0.55], atol=1e-6)
    with pytest.raises(InputDataError, match="for 2 images"):
        decoder.decode([_anchors("best")], 2, 0.5, 0.5)
    with pytest.raises(InputDataError, match="class_rule 'other'"):
        decoder.decode([_anchors("other")], 1, 0.5, 0.5)

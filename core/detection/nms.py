# SPDX-License-Identifier: GPL-2.0-or-later
"""Non maximum suppression, fast at 100k+ objects (the merge across tile seams is :mod:`.seams`).

* :func:`candidate_pairs`: every pair of boxes that may touch, from the grid of :mod:`.pairs` (boxes far bigger
  than the grid cell are compared with all the others directly).  Everything below looks only at those pairs.
* :func:`nms_boxes`: greedy NMS of one chip's boxes by IoU, per class (the ``nms_overlap`` argument).
* :func:`nms_polygons`: the Non Maximum Suppression tool's rule (ArcGIS): of two features whose
  intersection over union exceeds ``max_overlap`` the lower-confidence one is removed; with classes,
  first within each class, then among all the remaining features across classes.  Exact polygon areas
  (OGR), except for axis-aligned rectangles, whose IoU comes from their boxes.

Ties in confidence are broken by input order (the earlier feature wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from osgeo import ogr

from ..errors import ArgumentError
from .nms_many import greedy_nms_many, too_many_pairs
from .pairs import touching_pairs

ogr.UseExceptions()

#: Above this many boxes in one tile, per-tile NMS visits cells instead of listing overlapping pairs (nms_many).
MANY_BOXES = 2000


def candidate_pairs(boxes: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, of boxes ``[N, 4]`` (x1, y1, x2, y2) that intersect when grown by ``margin``
    (the grid of :mod:`.pairs`)."""
    return touching_pairs(boxes, margin)


def box_iou_pairs(boxes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """IoU of box pairs (vectorised)."""
    a, b = boxes[i], boxes[j]
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def priority_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep input order."""
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores, np.float64)))


def greedy_suppress(scores: np.ndarray, i: np.ndarray, j: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """Greedy NMS over an undirected 'overlaps too much' relation given as pairs: the surviving mask.

    Features are visited by descending score; a surviving feature removes every later one it is paired
    with.  Only ``alive`` features take part (the others stay removed and suppress nothing).
    """
    n = len(scores)
    keep = np.ones(n, bool) if alive is None else alive.copy()
    if i.size == 0:
        return keep
    use = keep[i] & keep[j]
    i, j = i[use], j[use]
    if i.size == 0:
        return keep
    order = priority_order(scores)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    # orient each pair from the higher-priority feature to the lower one, then group by the former
    src = np.where(rank[i] < rank[j], i, j)
    dst = np.where(rank[i] < rank[j], j, i)
    by = np.argsort(rank[src], kind="stable")
    src, dst = src[by], dst[by]
    starts = np.nonzero(np.concatenate([[True], src[1:] != src[:-1]]))[0]
    ends = np.concatenate([starts[1:], [src.size]])
    for s, e in zip(starts.tolist(), ends.tolist()):
        if keep[src[s]]:
            keep[dst[s:e]] = False
    return keep


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None, iou_threshold: float,
              corners: np.ndarray | None = None) -> np.ndarray:
    """Indices kept by greedy NMS (IoU > ``iou_threshold`` suppresses), per class; rotated boxes by polygon IoU."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, np.int64)
    if iou_threshold >= 1.0:  # no IoU exceeds 1: nothing to compare (100,000 copies of a box cost no pairs)
        return priority_order(scores)
    if corners is None and n > MANY_BOXES and too_many_pairs(boxes):  # 100,000 boxes on one spot: memory by
        # boxes, not by their pairs
        kept = np.nonzero(greedy_nms_many(boxes, scores, classes, iou_threshold))[0]
        return kept[priority_order(scores[kept])]
    i, j = candidate_pairs(boxes)
    if classes is not None:
        same = classes[i] == classes[j]
        i, j = i[same], j[same]
    if corners is not None and i.size:
        polys = [_ring_polygon(c) for c in corners]
        iou = polygon_iou_pairs(polys, i, j)
    else:
        iou = box_iou_pairs(boxes, i, j)
    over = iou > iou_threshold
    keep = greedy_suppress(scores, i[over], j[over])
    kept = np.nonzero(keep)[0]
    return kept[priority_order(scores[kept])]


def nms_top_k(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, k: int) -> np.ndarray:
    """The ``k`` most confident survivors of greedy NMS over one class, most confident first: the first ``k`` of
    :func:`nms_boxes` (a survivor depends only on the more confident ones), found without visiting the rest, so a
    detector's thousands of candidates cost what its ``k`` objects do."""
    kept: list[int] = []
    for i in priority_order(scores).tolist():
        if kept:
            iou = box_iou_pairs(boxes, np.full(len(kept), i), np.asarray(kept))
            if (iou > iou_threshold).any():
                continue
        kept.append(i)
        if len(kept) == k:
            break
    return np.asarray(kept, np.int64)


def _ring_polygon(points: np.ndarray) -> ogr.Geometry:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in points:
        ring.AddPoint_2D(float(x), float(y))
    ring.AddPoint_2D(float(points[0][0]), float(points[0][1]))
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


def polygon_iou_pairs(geoms: Sequence[ogr.Geometry], i: np.ndarray, j: np.ndarray,
                      areas: np.ndarray | None = None) -> np.ndarray:
    """Exact IoU of polygon pairs (OGR intersection areas)."""
    if areas is None:
        areas = np.array([g.GetArea() for g in geoms])
    out = np.zeros(i.size)
    for k, (a, b) in enumerate(zip(i.tolist(), j.tolist())):
        try:
            inter = geoms[a].Intersection(geoms[b])
        except RuntimeError:  # an invalid polygon (self-intersecting ring): intersect its repaired outline
            inter = _repaired(geoms[a]).Intersection(_repaired(geoms[b]))
        ia = inter.GetArea() if inter is not None else 0.0
        union = areas[a] + areas[b] - ia
        out[k] = ia / union if union > 0 else 0.0
    return out


def _repaired(geom: ogr.Geometry) -> ogr.Geometry:
    if geom.IsValid():
        return geom
    fixed = geom.MakeValid() if hasattr(geom, "MakeValid") else None
    return fixed if fixed is not None and fixed.IsValid() else geom.Buffer(0)


def made_valid(geoms: Sequence[ogr.Geometry]) -> tuple[list[ogr.Geometry | None], int, int]:
    """(each geometry, valid: itself, repaired, or None when it cannot be), how many were repaired, how many not.

    Invalid polygons (a bow tie, a ring that touches itself) come from other tools' outputs; they are made valid
    (OGR's MakeValid, else a zero buffer) so that their overlaps can be measured, and the few that cannot be are
    left out, counted, never a reason to stop."""
    out: list[ogr.Geometry | None] = []
    repaired = skipped = 0
    for geom in geoms:
        if geom is None or geom.IsEmpty() or geom.IsValid():
            out.append(geom)
            continue
        try:
            fixed = _repaired(geom)
        except (RuntimeError, ValueError):
            fixed = None
        if fixed is None or fixed.IsEmpty() or not fixed.IsValid():
            out.append(None)
            skipped += 1
        else:
            out.append(fixed)
            repaired += 1
    return out, repaired, skipped


def envelope_boxes(geoms: Sequence[ogr.Geometry]) -> np.ndarray:
    """[N, 4] x1, y1, x2, y2 of OGR geometries."""
    env = np.array([g.GetEnvelope() for g in geoms], np.float64).reshape(-1, 4)  # minx, maxx, miny, maxy
    return env[:, [0, 2, 1, 3]]


def check_max_overlap(value: float) -> float:
    """``MAX_OVERLAP_RATIO`` as a number from 0 to 1; NaN (every comparison false: nothing would be removed) and
    values outside are refused, naming the parameter."""
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ArgumentError(f"MAX_OVERLAP_RATIO must be a number from 0 to 1, not {value}")
    return float(value)


def nms_polygons(geoms: Sequence[ogr.Geometry], scores: np.ndarray, classes: Sequence | None,
                 max_overlap: float) -> np.ndarray:
    """The ArcGIS Non Maximum Suppression rule: a boolean mask of the features kept.

    ``classes`` (any hashable values, or None for one class): first each class is reviewed on its own,
    then all features left are reviewed together across classes.
    """
    check_max_overlap(max_overlap)
    n = len(geoms)
    scores = np.asarray(scores, np.float64)
    if n == 0:
        return np.zeros(0, bool)
    boxes = envelope_boxes(geoms)
    i, j = candidate_pairs(boxes)
    bi = box_iou_pairs(boxes, i, j)
    areas = np.array([g.GetArea() for g in geoms])
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    rect = np.isclose(areas, box_area, rtol=1e-9, atol=0.0) & (box_area > 0)
    iou = bi.copy()
    exact = ~(rect[i] & rect[j]) & (bi > 0)  # boxes that do not overlap cannot have polygons that do
    if exact.any():
        iou[exact] = polygon_iou_pairs(geoms, i[exact], j[exact], areas)
    over = iou > max_overlap
    i, j = i[over], j[over]
    keep = np.ones(n, bool)
    if classes is not None:
        codes = np.unique(np.asarray([str(c) for c in classes]), return_inverse=True)[1]
        same = codes[i] == codes[j]
        keep = greedy_suppress(scores, i[same], j[same])
    return greedy_suppress(scores, i, j, keep)


def suppress_for_tool(wkbs: Sequence[bytes], scores: np.ndarray, classes: Sequence, max_overlap: float,
                      progress: Any) -> np.ndarray:
    """Detect Objects' ``run_nms`` on its output (map geometries as WKB, scores 0-1, class names), whichever kind of
    model found them: :func:`nms_polygons`, and the log line saying how many objects it removed."""
    if not len(wkbs):
        return np.zeros(0, bool)
    keep = nms_polygons([ogr.CreateGeometryFromWkb(w) for w in wkbs], scores, classes, max_overlap)
    progress.info(f"Non maximum suppression (max overlap ratio {max_overlap:g}): {int((~keep).sum())} objects removed")
    return keep

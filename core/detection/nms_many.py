# SPDX-License-Identifier: GPL-2.0-or-later
"""Greedy NMS for a tile with very many boxes, in memory that grows with the boxes, not with their pairs.

Listing every overlapping pair first (:func:`.nms.candidate_pairs`) is right for the usual few hundred
candidates, but a model that answers 100,000 boxes on one spot makes 5e9 pairs (the review saw 24 GB go). Here
boxes are put in a grid of cells once; then, in the order of greedy NMS (score, then input order), each box still
alive is compared with the boxes in its own cells only and removes those it overlaps too much. The result is the
same set as the pairwise greedy NMS: a box is only ever removed by a more confident survivor that it intersects,
and every box it intersects shares a cell with it.
"""

from __future__ import annotations

import numpy as np

#: A box covering more cells than this is compared with every box (as in candidate_pairs).
_MAX_CELLS = 64


def _iou_one(boxes: np.ndarray, i: int, others: np.ndarray) -> np.ndarray:
    a, b = boxes[i], boxes[others]
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class _Cells:
    """Which boxes touch which grid cell: (cell key, box) pairs sorted by key, looked up by binary search."""

    def __init__(self, boxes: np.ndarray) -> None:
        size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cell = float(np.percentile(size, 90)) if len(boxes) > 10 else float(size.max())
        self.cell = max(cell, 1e-9 * max(1.0, float(np.abs(boxes).max())), 1e-12)
        self.x0, self.y0 = boxes[:, 0].min(), boxes[:, 1].min()
        self.c = self._cells(boxes)
        cx0, cy0, cx1, cy1 = self.c
        self.stride = int(cx1.max()) + 2
        counts = (cx1 - cx0 + 1) * (cy1 - cy0 + 1)
        self.big = np.nonzero(counts > _MAX_CELLS)[0]
        small = np.nonzero(counts <= _MAX_CELLS)[0]
        c = counts[small]
        owner = np.repeat(small, c)
        k = np.arange(owner.size) - np.repeat(np.cumsum(c) - c, c)
        nx = (cx1 - cx0 + 1)[owner]
        key = (cy0[owner] + k // nx) * self.stride + cx0[owner] + k % nx
        order = np.argsort(key, kind="stable")
        self.keys, self.owners = key[order], owner[order]
        #: boxes that share a cell with another box: only they can remove or be removed (all, with a big box)
        starts = np.concatenate([[True], self.keys[1:] != self.keys[:-1]]) if self.keys.size else np.zeros(0, bool)
        group = np.cumsum(starts) - 1
        shared = np.bincount(group)[group] > 1 if self.keys.size else np.zeros(0, bool)
        sizes = np.bincount(group) if self.keys.size else np.zeros(0, np.int64)
        #: how many pairs listing them would make (boxes in one cell pair up; a big box pairs with every box)
        self.pairs = int((sizes * (sizes - 1) // 2).sum()) + int(self.big.size) * len(boxes)
        self.crowded = np.zeros(len(boxes), bool)
        self.crowded[self.owners[shared]] = True
        if self.big.size:
            self.crowded[:] = True

    def _cells(self, boxes: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.floor((boxes[:, 0] - self.x0) / self.cell).astype(np.int64),
                np.floor((boxes[:, 1] - self.y0) / self.cell).astype(np.int64),
                np.floor((boxes[:, 2] - self.x0) / self.cell).astype(np.int64),
                np.floor((boxes[:, 3] - self.y0) / self.cell).astype(np.int64))

    def near(self, i: int, n: int) -> np.ndarray:
        """The boxes that share a cell with box ``i`` (every box when ``i`` is big), big boxes included."""
        cx0, cy0, cx1, cy1 = (int(v[i]) for v in self.c)
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > _MAX_CELLS:
            return np.arange(n)
        keys = np.array([y * self.stride + x for y in range(cy0, cy1 + 1) for x in range(cx0, cx1 + 1)], np.int64)
        lo = np.searchsorted(self.keys, keys, "left")
        hi = np.searchsorted(self.keys, keys, "right")
        parts = [self.owners[a:b] for a, b in zip(lo.tolist(), hi.tolist()) if b > a]
        parts.append(self.big)
        return np.unique(np.concatenate(parts)) if parts else self.big


def too_many_pairs(boxes: np.ndarray, per_box: int = 50) -> bool:
    """Whether listing the overlapping pairs of ``boxes`` would make more than ``per_box`` pairs per box (the
    pairwise NMS is then too big for memory; when it is not, it is the faster one)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return len(boxes) > 1 and _Cells(boxes).pairs > per_box * len(boxes)


def greedy_nms_many(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None,
                    iou_threshold: float) -> np.ndarray:
    """The boxes kept by greedy NMS (IoU > ``iou_threshold`` removes; per class), as a boolean mask."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    alive = np.ones(n, bool)
    if n == 0:
        return alive
    order = np.lexsort((np.arange(n), -np.asarray(scores, np.float64)))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    cells = _Cells(boxes)
    for i in order[cells.crowded[order]].tolist():  # a box alone in its cells neither removes nor is removed
        if not alive[i]:
            continue
        cand = cells.near(i, n)
        cand = cand[alive[cand] & (rank[cand] > rank[i])]
        if classes is not None and cand.size:
            cand = cand[classes[cand] == classes[i]]
        if cand.size:
            alive[cand[_iou_one(boxes, i, cand) > iou_threshold]] = False
    return alive

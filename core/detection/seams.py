# SPDX-License-Identifier: GPL-2.0-or-later
"""The merge of the objects of a whole raster across tile seams, in memory that grows with the objects.

Objects of one class from different chips are (a) **united** when at least one of them is cut by its chip's edge
(its box touches an edge of the chip that is not the raster's edge) and the two cover each other (they overlap by
at least half the smaller one's extent on both axes: a piece and the whole object, or two pieces seen by
overlapping chips), or when both are cut and they meet at the seam (overlap that much on one axis, touch on the
other: the pieces of an object cut by chips without padding); (b) **duplicates** otherwise when
their IoU exceeds ``nms_overlap``: the lower confidence one is dropped; (c) a united object whose box now covers
another object of its class (IoU above ``max(nms_overlap, 0.5)``) drops the less confident of the two.

How it stays O(n log n) and O(n): identical objects (same box, class, chip and cut flag) are folded into one before
any pair is looked for (a model answering 100,000 copies of a box makes one candidate, not 5e9 pairs); the touching
pairs come from :mod:`.pairs` in bounded chunks and are filtered at once (same class, different chips); the pieces
are united by a union-find over numpy arrays, chunk by chunk. Only the few pairs that suppress are kept.

:func:`merge_graph` is the merge before its final greedy step (groups and who suppresses whom), so that the
streaming run (:func:`split_final`) can tell which groups are final while other blocks still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .nms import box_iou_pairs, greedy_suppress, priority_order
from .pairs import iter_pairs

#: Pixels by which two boxes may miss each other and still be pieces of one object.
TOUCH = 1.0


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = parent[x]
    while True:
        rr = parent[r]
        if (rr == r).all():
            return r
        r = rr


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the components of ``a[k]`` and ``b[k]``; each root is the smallest index of its component."""
    while a.size:
        ra, rb = _find(parent, a), _find(parent, b)
        diff = ra != rb
        a, b = np.minimum(ra, rb)[diff], np.maximum(ra, rb)[diff]
        np.minimum.at(parent, b, a)
    while True:  # flatten, so the next chunk's finds are short
        nxt = parent[parent]
        if (nxt == parent).all():
            return
        parent[:] = nxt


def _join_pairs(boxes: np.ndarray, cut: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Which pairs are pieces of one object (see the module docstring)."""
    a, b = boxes[i], boxes[j]
    ov_x = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ov_y = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    min_w = np.minimum(a[:, 2] - a[:, 0], b[:, 2] - b[:, 0])
    min_h = np.minimum(a[:, 3] - a[:, 1], b[:, 3] - b[:, 1])
    sub_x, sub_y = ov_x >= 0.5 * min_w, ov_y >= 0.5 * min_h
    touch_x, touch_y = ov_x >= -TOUCH, ov_y >= -TOUCH
    cover = (cut[i] | cut[j]) & sub_x & sub_y
    # boxes that only meet at a seam are two pieces only when both are cut: with padding, a whole object's chip
    # sees past its box, so a whole box beside a cut one is another object (two discs side by side)
    meet = cut[i] & cut[j] & ((sub_x & touch_y) | (sub_y & touch_x))
    return cover | meet


@dataclass
class MergeGraph:
    """The merge before its greedy step.

    ``members`` (object indices grouped, each group by descending confidence) split at ``starts``; each group's
    box, best score and class. Suppression is decided between **nodes**: a group of united pieces is one node, and
    so is each set of identical objects (same box, class and chip) that is united with nothing, since its copies
    touch the same objects and are kept or dropped together; (``ni``, ``nj``) are the pairs of nodes of which the
    later one (in the greedy order) is dropped, ``node`` each group's node."""

    members: np.ndarray
    starts: np.ndarray
    gbox: np.ndarray
    gscore: np.ndarray
    gcls: np.ndarray
    node: np.ndarray
    ni: np.ndarray
    nj: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(np.concatenate([self.starts, [self.members.size]]))

    def group(self, g: int) -> np.ndarray:
        end = self.starts[g + 1] if g + 1 < self.starts.size else self.members.size
        return self.members[self.starts[g]:end]

    def kept_mask(self) -> np.ndarray:
        """Which groups greedy suppression keeps (by group confidence, ties by group order)."""
        rank = np.empty(self.gscore.size, np.int64)
        rank[priority_order(self.gscore)] = np.arange(self.gscore.size)
        first = np.full(int(self.node.max(initial=-1)) + 1, self.gscore.size, np.int64)
        np.minimum.at(first, self.node, rank)
        return greedy_suppress(-first.astype(np.float64), self.ni, self.nj)[self.node]

    def kept(self) -> np.ndarray:
        """Indices of the groups kept, the most confident first."""
        kept = np.flatnonzero(self.kept_mask())
        return kept[priority_order(self.gscore[kept])]

    def select(self, groups: np.ndarray) -> Groups:
        """The members of ``groups`` (group indices, in that order) as one array, without a loop over groups."""
        rank = np.full(self.starts.size, -1, np.int64)
        rank[groups] = np.arange(groups.size)
        of = np.repeat(rank, self.sizes)  # each member's place in ``groups`` (-1: not asked for)
        pos = np.flatnonzero(of >= 0)
        pos = pos[np.argsort(of[pos], kind="stable")]
        sizes = self.sizes[groups]
        return Groups(self.members[pos], (np.cumsum(sizes) - sizes).astype(np.int64))


@dataclass
class Groups:
    """Output objects as groups of object indices: ``members`` of each group by descending confidence (the first
    is the object whose class and confidence the group takes), split at ``starts``."""

    members: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.size)

    @property
    def first(self) -> np.ndarray:
        return self.members[self.starts]

    def united_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """[G, 4]: the union of each group's boxes."""
        if not len(self):
            return np.zeros((0, 4))
        b = boxes[self.members]
        return np.stack([np.minimum.reduceat(b[:, 0], self.starts), np.minimum.reduceat(b[:, 1], self.starts),
                         np.maximum.reduceat(b[:, 2], self.starts), np.maximum.reduceat(b[:, 3], self.starts)],
                        axis=1)

    def take(self, which: np.ndarray) -> Groups:
        """The groups ``which`` (a boolean mask), in their order."""
        sizes = np.diff(np.concatenate([self.starts, [self.members.size]]))
        keep = np.repeat(which, sizes)
        kept_sizes = sizes[which]
        return Groups(self.members[keep], (np.cumsum(kept_sizes) - kept_sizes).astype(np.int64))

    def as_list(self) -> list[np.ndarray]:
        return np.split(self.members, self.starts[1:]) if len(self) else []


def _fold_identical(boxes: np.ndarray, classes: np.ndarray, chips: np.ndarray,
                    cut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first index of each distinct object, each object's distinct one): identical boxes of one class, chip and
    cut flag pair with the same objects, so the pairs are looked for once."""
    n = len(boxes)
    order = np.lexsort((np.arange(n), cut, chips, classes, boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0]))
    b, c, ch, cu = boxes[order], classes[order], chips[order], cut[order]
    new = np.ones(n, bool)
    new[1:] = (b[1:] != b[:-1]).any(axis=1) | (c[1:] != c[:-1]) | (ch[1:] != ch[:-1]) | (cu[1:] != cu[:-1])
    rep_sorted = np.cumsum(new) - 1
    inverse = np.empty(n, np.int64)
    inverse[order] = rep_sorted
    return order[new], inverse


def _object_roots(n: int, rep_parent: np.ndarray, first: np.ndarray,
                  inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each object's component root (its smallest object index), from the components of the distinct objects,
    and whether each distinct object is united with another."""
    comp_size = np.bincount(rep_parent, minlength=rep_parent.size)
    comp_min = np.full(rep_parent.size, n, np.int64)
    np.minimum.at(comp_min, rep_parent, first)
    joined = comp_size[rep_parent] > 1
    rr = rep_parent[inverse]
    return np.where(joined[inverse], comp_min[rr], np.arange(n)), joined


#: Above this many chips the objects are not screened chip by chip (every object then looks for pairs).
_SCREEN_CHIPS = 256


def _near_other_chips(boxes: np.ndarray, chips: np.ndarray) -> np.ndarray:
    """Which objects come near the area of another chip's objects (only they can pair): the objects in the middle
    of a tile, most of them, are left out before any pair is looked for."""
    ids, inverse = np.unique(chips, return_inverse=True)
    if ids.size < 2:
        return np.zeros(len(boxes), bool)
    if ids.size > _SCREEN_CHIPS:
        return np.ones(len(boxes), bool)
    g = boxes + np.array([-2 * TOUCH, -2 * TOUCH, 2 * TOUCH, 2 * TOUCH])
    hull = np.stack([np.full(ids.size, np.inf), np.full(ids.size, np.inf), np.full(ids.size, -np.inf),
                     np.full(ids.size, -np.inf)], axis=1)
    np.minimum.at(hull[:, 0], inverse, boxes[:, 0])
    np.minimum.at(hull[:, 1], inverse, boxes[:, 1])
    np.maximum.at(hull[:, 2], inverse, boxes[:, 2])
    np.maximum.at(hull[:, 3], inverse, boxes[:, 3])
    near = np.zeros(len(boxes), bool)
    for k in range(ids.size):
        h = hull[k]
        near |= (inverse != k) & (g[:, 0] <= h[2]) & (h[0] <= g[:, 2]) & (g[:, 1] <= h[3]) & (h[1] <= g[:, 3])
    return near


def _pieces_and_duplicates(rb: np.ndarray, rc: np.ndarray, rch: np.ndarray, rcut: np.ndarray,
                           iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over distinct objects: each one's component root, and the duplicate pairs (i, j)."""
    parent = np.arange(len(rb))
    dups_i: list[np.ndarray] = []
    dups_j: list[np.ndarray] = []
    near = _near_other_chips(rb, rch)
    at = np.flatnonzero(near)

    def same_class_other_chip(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (rc[at[i]] == rc[at[j]]) & (rch[at[i]] != rch[at[j]])

    for i, j in iter_pairs(rb[at], TOUCH, same_class_other_chip):
        i, j = at[i], at[j]
        join = _join_pairs(rb, rcut, i, j)
        _union(parent, i[join], j[join])
        if iou_threshold < 1.0:
            dup = ~rcut[i] & ~rcut[j] & ~join
            dup[dup] = box_iou_pairs(rb, i[dup], j[dup]) > iou_threshold
            dups_i.append(i[dup])
            dups_j.append(j[dup])
    empty = np.zeros(0, np.int64)
    return (parent, np.concatenate(dups_i) if dups_i else empty, np.concatenate(dups_j) if dups_j else empty)


def merge_graph(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, chips: np.ndarray, cut: np.ndarray,
                iou_threshold: float) -> MergeGraph:
    """Groups of pieces and the suppressing pairs among them (see the module docstring)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(scores)
    first, inverse = _fold_identical(boxes, classes, chips, cut)
    parent, di, dj = _pieces_and_duplicates(boxes[first], classes[first], chips[first], cut[first], iou_threshold)
    root, joined = _object_roots(n, parent, first, inverse)
    order = priority_order(scores)
    members = order[np.argsort(root[order], kind="stable")]
    rs = root[members]
    starts = np.flatnonzero(np.concatenate([[True], rs[1:] != rs[:-1]]))
    sizes = np.diff(np.concatenate([starts, [n]]))
    best = members[starts]
    gbox = np.stack([np.minimum.reduceat(boxes[members, 0], starts), np.minimum.reduceat(boxes[members, 1], starts),
                     np.maximum.reduceat(boxes[members, 2], starts), np.maximum.reduceat(boxes[members, 3], starts)],
                    axis=1)
    gidx = np.empty(n, np.int64)
    gidx[members] = np.repeat(np.arange(starts.size), sizes)
    # a node per united group, and one per set of identical objects united with nothing
    rep_node = np.where(joined, -1, np.arange(first.size))
    rep_node[joined] = first.size + gidx[first[joined]]
    _, node_of_rep = np.unique(rep_node, return_inverse=True)
    node = node_of_rep[inverse[best]]
    ni, nj = node_of_rep[di], node_of_rep[dj]
    differ = ni != nj
    graph = MergeGraph(members=members, starts=starts, gbox=gbox, gscore=scores[best], gcls=classes[best],
                       node=node, ni=ni[differ], nj=nj[differ])
    if (sizes > 1).any() and iou_threshold < 1.0:
        ei, ej = _united_overlaps(graph, sizes > 1, max(iou_threshold, 0.5))
        graph.ni, graph.nj = np.concatenate([graph.ni, ei]), np.concatenate([graph.nj, ej])
    return graph


def _united_overlaps(graph: MergeGraph, multi: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of nodes (a united group, any node of its class) whose boxes overlap by more than ``threshold``."""
    nodes = int(graph.node.max()) + 1
    one = np.zeros(nodes, np.int64)  # a group of each node: identical boxes, so one box per node
    one[graph.node] = np.arange(graph.node.size)
    nbox, ncls, nmulti = graph.gbox[one], graph.gcls[one], multi[one]

    def involves_multi(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (nmulti[i] | nmulti[j]) & (ncls[i] == ncls[j])

    parts_i, parts_j = [], []
    for i, j in iter_pairs(nbox, 0.0, involves_multi):
        over = box_iou_pairs(nbox, i, j) > threshold
        parts_i.append(i[over])
        parts_j.append(j[over])
    if not parts_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(parts_i), np.concatenate(parts_j)


def seam_merge(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, chips: np.ndarray, cut: np.ndarray,
               iou_threshold: float) -> list[np.ndarray]:
    """Merge objects across chips (see the module docstring): a list of groups of object indices.

    Each group is one output object: a single object, or the pieces to unite; groups are sorted by their
    best member (highest confidence first), and each group's indices by descending confidence.
    ``boxes`` are in one pixel grid for the whole raster; ``chips`` says which chip found each object;
    ``cut`` whether its box touches an inner edge of that chip.
    """
    return merge_groups(boxes, scores, classes, chips, cut, iou_threshold).as_list()


def merge_groups(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, chips: np.ndarray, cut: np.ndarray,
                 iou_threshold: float) -> Groups:
    """:func:`seam_merge` as :class:`Groups` (no array per group: what a run of millions of objects uses)."""
    if len(scores) == 0:
        return Groups(np.zeros(0, np.int64), np.zeros(0, np.int64))
    graph = merge_graph(boxes, np.asarray(scores, np.float64), np.asarray(classes), np.asarray(chips),
                        np.asarray(cut, bool), iou_threshold)
    return graph.select(graph.kept())


#: Pixels past a box within which an object of another block may still pair with it (two boxes pair when they
#: come within 2 * TOUCH of each other).
REACH = 2 * TOUCH + 1


def outside(interior: tuple[float, float, float, float]) -> Callable[[np.ndarray], np.ndarray]:
    """The ``reaches`` of :func:`split_final` for a block: boxes not strictly inside ``interior`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = interior

    def reaches(b: np.ndarray) -> np.ndarray:
        return ~((b[:, 0] > x0) & (b[:, 1] > y0) & (b[:, 2] < x1) & (b[:, 3] < y1))
    return reaches


def split_final(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, chips: np.ndarray, cut: np.ndarray,
                iou_threshold: float,
                reaches: Callable[[np.ndarray], np.ndarray]) -> tuple[Groups, np.ndarray]:
    """Objects of finished blocks: (the groups already final and kept, most confident first; which objects to hold).

    ``reaches(boxes)`` says which boxes reach where objects not given here may still come from: the tiles of other
    blocks (:func:`outside` a block's interior), or of blocks not done yet. Objects lie in their own tiles, so they
    can only pair with a group whose box, grown by :data:`REACH`, reaches their tiles; and a united group can only
    drop (or be dropped by) a group whose box it overlaps by more than half, which lies within that group's box
    grown by its own width and height. A group is final when neither reaches, for it and for every group it is
    linked with (united, or dropping or dropped), since greedy suppression is decided within such a linked set
    alone. Those are decided here exactly as the merge of the whole raster would; the rest are held."""
    n = len(scores)
    if n == 0:
        return Groups(np.zeros(0, np.int64), np.zeros(0, np.int64)), np.zeros(0, bool)
    graph = merge_graph(boxes, np.asarray(scores, np.float64), np.asarray(classes), np.asarray(chips),
                        np.asarray(cut, bool), iou_threshold)
    gb = graph.gbox
    grow_x, grow_y = gb[:, 2] - gb[:, 0] + REACH, gb[:, 3] - gb[:, 1] + REACH
    near = reaches(np.stack([gb[:, 0] - grow_x, gb[:, 1] - grow_y, gb[:, 2] + grow_x, gb[:, 3] + grow_y], axis=1))
    nodes = int(graph.node.max()) + 1
    parent = np.arange(nodes)
    _union(parent, graph.ni, graph.nj)
    held_set = np.zeros(nodes, bool)
    held_set[parent[graph.node[near]]] = True
    held_group = held_set[parent[graph.node]]
    kept = np.flatnonzero(graph.kept_mask() & ~held_group)
    kept = kept[priority_order(graph.gscore[kept])]
    held = np.zeros(n, bool)
    held[graph.members] = np.repeat(held_group, graph.sizes)
    return graph.select(kept), held

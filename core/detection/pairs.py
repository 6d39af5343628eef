# SPDX-License-Identifier: GPL-2.0-or-later
"""The pairs of boxes that touch, found through a grid and handed out in chunks, so memory never holds them all.

:func:`.nms.candidate_pairs` lists every pair of boxes that share a grid cell, then removes the repeats; that is
right for a tile's few hundred candidates, but the seam merge of a whole raster sees hundreds of thousands of
objects, and a model may answer 100,000 boxes on one spot (the review saw 24 GB go). Here:

* each pair is produced once, by the cell that holds the top-left corner of the two boxes' intersection, so no
  global ``unique`` over all pairs is needed;
* pairs come out in chunks of at most about :data:`CHUNK` candidates, each filtered by the caller's rule before the
  next is built, so memory is bounded by the chunk and by what the caller keeps;
* the cell size ignores outliers (a box of +-1e30 does not make one cell of the whole raster): such a box covers
  too many cells and is compared with every other box directly, which costs one pass over the boxes.

Time grows with the pairs that share a cell: about linear for objects spread over a raster; boxes piled on one spot
cost the square of their number in time (callers fold identical boxes into one first), never in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: Candidate pairs built at once (each takes a few dozen bytes while it is filtered).
CHUNK = 1 << 20
#: A box covering more cells than this is compared with every box instead of entering the grid.
MAX_CELLS = 64
#: Cell indices beyond this are taken for nonsense coordinates (the box is then compared directly).
_FAR_CELLS = float(2 ** 40)

PairFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _Grid:
    """Which grid cells each box covers; the boxes too big (or too far) for the grid are listed apart."""

    def __init__(self, b: np.ndarray) -> None:
        n = len(b)
        finite = np.isfinite(b).all(axis=1)
        size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        sizes = size[finite]
        cell = float(np.percentile(sizes, 90)) if sizes.size > 10 else float(sizes.max(initial=0.0))
        magnitude = float(np.median(np.abs(b[finite]))) if finite.any() else 1.0
        self.cell = max(cell, 1e-9 * max(1.0, magnitude), 1e-12)
        with np.errstate(invalid="ignore", over="ignore"):
            f = np.floor(b / self.cell)
            span = (f[:, 2] - f[:, 0] + 1) * (f[:, 3] - f[:, 1] + 1)
            big = ~finite | ~(span <= MAX_CELLS) | ~(np.abs(f) < _FAR_CELLS).all(axis=1)
        self.big = np.flatnonzero(big)
        small = np.flatnonzero(~big)
        self.origin = f[small][:, :2].min(axis=0) if small.size else np.zeros(2)
        c = np.zeros((n, 4), np.int64)
        c[small] = (f[small] - np.concatenate([self.origin, self.origin])).astype(np.int64)
        self.c = c
        counts = (c[small, 2] - c[small, 0] + 1) * (c[small, 3] - c[small, 1] + 1)
        owner = np.repeat(small, counts)
        k = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
        nx = c[owner, 2] - c[owner, 0] + 1
        gx, gy = c[owner, 0] + k % nx, c[owner, 1] + k // nx
        stride = int(gx.max(initial=0)) + 2
        if (int(gy.max(initial=0)) + 2) * stride < 2 ** 62:  # one integer key sorts fastest
            order = np.argsort(gy * stride + gx, kind="stable")
        else:
            order = np.lexsort((owner, gx, gy))
        self.gx, self.gy, self.owner = gx[order], gy[order], owner[order]

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cell of points, computed as the boxes' corners were (so a corner's cell is its box's)."""
        return (np.floor(x / self.cell) - self.origin[0]).astype(np.int64), \
            (np.floor(y / self.cell) - self.origin[1]).astype(np.int64)


def _hits(b: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (b[a, 0] <= b[c, 2]) & (b[c, 0] <= b[a, 2]) & (b[a, 1] <= b[c, 3]) & (b[c, 1] <= b[a, 3])


def _cell_pairs(grid: _Grid, b: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of grid boxes sharing a cell, each once (from the cell of their intersection's top-left corner)."""
    m = grid.owner.size
    if m < 2:
        return
    change = np.flatnonzero((grid.gx[1:] != grid.gx[:-1]) | (grid.gy[1:] != grid.gy[:-1])) + 1
    bounds = np.concatenate([[0], change, [m]])
    group_end = np.repeat(bounds[1:], np.diff(bounds))
    cnt = group_end - np.arange(m) - 1  # partners after each entry in its cell
    cum = np.cumsum(cnt)
    p0 = 0
    while p0 < m:
        base = cum[p0 - 1] if p0 else 0
        p1 = max(p0 + 1, int(np.searchsorted(cum, base + chunk, "right")))
        pos = np.arange(p0, min(p1, m))
        c = cnt[pos]
        p0 = min(p1, m)
        if not c.sum():
            continue
        first = np.repeat(pos, c)
        second = first + 1 + np.arange(first.size) - np.repeat(np.cumsum(c) - c, c)
        a, d = grid.owner[first], grid.owner[second]
        hit = _hits(b, a, d)
        a, d, first = a[hit], d[hit], first[hit]
        rx, ry = grid.cell_of(np.maximum(b[a, 0], b[d, 0]), np.maximum(b[a, 1], b[d, 1]))
        own = (rx == grid.gx[first]) & (ry == grid.gy[first])
        yield a[own], d[own]


def _big_pairs(grid: _Grid, b: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each big box against every small box and every later big box."""
    n = len(b)
    is_big = np.zeros(n, bool)
    is_big[grid.big] = True
    for i in grid.big.tolist():
        for s in range(0, n, chunk):
            others = np.arange(s, min(n, s + chunk))
            others = others[~is_big[others] | (others > i)]
            with np.errstate(invalid="ignore"):
                hit = _hits(b, np.full(others.size, i), others)
            yield np.full(int(hit.sum()), i, np.int64), others[hit]


def iter_pairs(boxes: np.ndarray, margin: float = 0.0, keep: PairFilter | None = None,
               chunk: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of index pairs ``(i, j)`` of boxes ``[N, 4]`` (x1, y1, x2, y2) that intersect when grown by
    ``margin``, each pair once (in either order), those ``keep(i, j)`` refuses left out."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4) + np.array([-margin, -margin, margin, margin])
    if len(b) < 2:
        return
    grid = _Grid(b)
    for source in (_cell_pairs(grid, b, chunk), _big_pairs(grid, b, chunk)):
        for i, j in source:
            if keep is not None and i.size:
                ok = keep(i, j)
                i, j = i[ok], j[ok]
            if i.size:
                yield i, j


def touching_pairs(boxes: np.ndarray, margin: float = 0.0, keep: PairFilter | None = None,
                   chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """All of :func:`iter_pairs` at once, ``i < j`` (for callers that keep few of them)."""
    parts = list(iter_pairs(boxes, margin, keep, chunk))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    return np.minimum(i, j), np.maximum(i, j)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects' block sink: objects no seam can touch are written as soon as their block is done; only those
near a seam wait for their neighbours, so memory grows with the seams, not with the objects of the raster.

When a block is done, :func:`core.detection.seams.split_final` merges its objects among themselves and tells
which groups no object of another block can reach (in the block's *interior*: past every other block's tiles,
their padding included); those are decided exactly as the merge of the whole raster would decide them, turned into
map geometries and appended to the run's :class:`.objects.ObjectStore`. The others are held, and merged together at
the end. Blocks finish in any order (in-process, in a child process, on Dask): the objects are the same, only their
order in the output follows the blocks. ``RUN_NMS`` compares every object with every other, so with it every object
is held to the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from osgeo import ogr

from ...detection.decode import ClassTable
from ...detection.geometry import box_polygons_wkb
from ...detection.nms import suppress_for_tool
from ...detection.seams import Groups, merge_groups, outside, split_final
from ...engine.blocks import BlockJob
from ...progress import Progress
from ...raster.gdal_io import RasterGrid
from ...raster.grid import TileGrid
from ...raster.mask import GridMask
from .objects import ObjectStore, RawObjects

ogr.UseExceptions()


def block_interior(chips: TileGrid, job: BlockJob) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1), open: the pixels of ``job``'s area that no tile of another block covers (the tiles'
    windows grow with the column and row, the last one moved inward included, so the neighbours decide)."""
    (r0, r1), (c0, c1) = job.rows, job.cols
    x0 = chips.chip_window(0, c0 - 1)[0] + chips.tile_w if c0 > 0 else -np.inf
    x1 = chips.chip_window(0, c1)[0] if c1 < chips.cols else np.inf
    y0 = chips.chip_window(r0 - 1, 0)[1] + chips.tile_h if r0 > 0 else -np.inf
    y1 = chips.chip_window(r1, 0)[1] if r1 < chips.rows else np.inf
    return float(x0), float(y0), float(x1), float(y1)


#: Held objects below this many are not settled before the end.
SETTLE_MIN = 50_000


class PendingBlocks:
    """The blocks not done yet, and whether boxes reach any of their tiles (through a summed-area table)."""

    def __init__(self, chips: TileGrid, jobs: list[BlockJob]) -> None:
        rows = max(j.block_row for j in jobs) + 1
        cols = max(j.block_col for j in jobs) + 1
        self.todo = np.zeros((rows, cols), bool)
        left, right = np.full(cols, np.inf), np.full(cols, -np.inf)
        top, bottom = np.full(rows, np.inf), np.full(rows, -np.inf)
        for j in jobs:  # each block's tiles' windows, from its first tile to its last
            self.todo[j.block_row, j.block_col] = True
            x0 = chips.chip_window(0, j.cols[0])[0]
            x1 = chips.chip_window(0, j.cols[1] - 1)[0] + chips.tile_w
            y0 = chips.chip_window(j.rows[0], 0)[1]
            y1 = chips.chip_window(j.rows[1] - 1, 0)[1] + chips.tile_h
            left[j.block_col], right[j.block_col] = min(left[j.block_col], x0), max(right[j.block_col], x1)
            top[j.block_row], bottom[j.block_row] = min(top[j.block_row], y0), max(bottom[j.block_row], y1)
        self.left, self.right, self.top, self.bottom = left, right, top, bottom

    def done(self, job: BlockJob) -> None:
        self.todo[job.block_row, job.block_col] = False

    def reached(self, boxes: np.ndarray) -> np.ndarray:
        """Which boxes (x0, y0, x1, y1) touch a tile of a block not done yet."""
        c0 = np.searchsorted(self.right, boxes[:, 0], "left")  # the first block column ending at or after x0
        c1 = np.searchsorted(self.left, boxes[:, 2], "right") - 1  # the last one starting at or before x1
        r0 = np.searchsorted(self.bottom, boxes[:, 1], "left")
        r1 = np.searchsorted(self.top, boxes[:, 3], "right") - 1
        table = np.zeros((self.todo.shape[0] + 1, self.todo.shape[1] + 1), np.int64)
        table[1:, 1:] = self.todo.cumsum(0).cumsum(1)
        empty = (c1 < c0) | (r1 < r0)
        c0, c1 = np.clip(c0, 0, self.todo.shape[1] - 1), np.clip(c1, 0, self.todo.shape[1] - 1)
        r0, r1 = np.clip(r0, 0, self.todo.shape[0] - 1), np.clip(r1, 0, self.todo.shape[0] - 1)
        count = table[r1 + 1, c1 + 1] - table[r0, c1 + 1] - table[r1 + 1, c0] + table[r0, c0]
        return ~empty & (count > 0)


@dataclass
class ObjectStream:
    """The sink the block engine writes Detect Objects' blocks to (see the module docstring)."""

    chips: TileGrid
    grid: RasterGrid
    table: ClassTable
    nms_overlap: float
    with_masks: bool
    store: ObjectStore
    mask: GridMask | None = None
    #: ``RUN_NMS``: hold every object to the end
    hold_all: bool = False
    #: the objects held, by job index (merged in job order, so ties fall as in one merge of the whole raster)
    held: dict[int, RawObjects] = field(default_factory=dict)
    #: the blocks not done yet (none: every block is taken for pending, nothing held is settled before the end)
    pending: PendingBlocks | None = None
    settle_at: float = 0
    held_count: int = 0
    dropped: Counter = field(default_factory=Counter)
    found: int = 0
    merged: int = 0
    streamed: int = 0
    settled: int = 0
    outside_mask: int = 0

    def __post_init__(self) -> None:
        self.settle_at = SETTLE_MIN if self.pending is not None else np.inf

    def write(self, job: BlockJob, raw: RawObjects) -> None:
        self.dropped.update(raw.dropped)
        boxes, scores, classes, chips, cut = raw.arrays()
        self.found += len(scores)
        if self.hold_all:
            self.held[job.index] = RawObjects(raw.boxes, raw.scores, raw.classes, raw.chips, raw.cut, raw.shapes)
            return
        if len(scores):
            self._split_block(job, raw, boxes, scores, classes, chips, cut)
        if self.pending is None:
            return
        self.pending.done(job)
        if self.held_count > self.settle_at:
            self._settle()

    def _split_block(self, job: BlockJob, raw: RawObjects, boxes: np.ndarray, scores: np.ndarray,
                     classes: np.ndarray, chips: np.ndarray, cut: np.ndarray) -> None:
        groups, held = split_final(boxes, scores, classes, chips, cut, self.nms_overlap,
                                   outside(block_interior(self.chips, job)))
        self.merged += len(groups)
        before = self.store.count
        self._emit(groups, boxes, scores, classes, raw.shapes)
        self.streamed += self.store.count - before
        if held.any():
            self.held[job.index] = raw.subset(held)
            self.held_count += int(held.sum())

    def _settle(self) -> None:
        """Decide the held objects no block still running can reach; the held ones still waiting set the next
        threshold (twice as many), so each object is looked at a few times at most and memory follows the seams
        of the blocks in progress, not the raster."""
        order = sorted(self.held)
        pool = RawObjects()
        for index in order:
            pool.extend(self.held[index])
        sizes = [sum(map(len, self.held[index].scores)) for index in order]
        boxes, scores, classes, chips, cut = pool.arrays()
        groups, held = split_final(boxes, scores, classes, chips, cut, self.nms_overlap, self.pending.reached)
        self.merged += len(groups)
        before = self.store.count
        self._emit(groups, boxes, scores, classes, pool.shapes)
        self.settled += self.store.count - before
        starts = np.cumsum([0] + sizes).tolist()
        self.held = {}
        for index, a, b in zip(order, starts[:-1], starts[1:]):
            keep = np.flatnonzero(held[a:b]) + a
            if keep.size:
                self.held[index] = RawObjects([boxes[keep]], [scores[keep]], [classes[keep]], [chips[keep]],
                                              [cut[keep]], [pool.shapes[k] for k in keep.tolist()])
        self.held_count = int(held.sum())
        self.settle_at = max(SETTLE_MIN, 2 * self.held_count)

    def close(self) -> None:
        """Every block is in (the held objects are merged by :meth:`finish`)."""

    def abort(self) -> None:
        self.held = {}
        self.store.discard()

    def finish(self, run_nms: bool, max_overlap_ratio: float, progress: Progress) -> None:
        """Merge the held objects, write them, and close the store."""
        held = RawObjects()
        for index in sorted(self.held):
            held.extend(self.held.pop(index))
        boxes, scores, classes, chips, cut = held.arrays()
        groups = merge_groups(boxes, scores, classes, chips, cut, self.nms_overlap)
        self.merged += len(groups)
        self._emit(groups, boxes, scores, classes, held.shapes, run_nms, max_overlap_ratio, progress)
        if self.mask is not None:
            progress.info(f"MASK '{self.mask.name}': {self.outside_mask} objects whose centre lies outside its "
                          "polygons are dropped")
        self.store.finish()

    def _emit(self, groups: Groups, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
              shapes: list, run_nms: bool = False, max_overlap_ratio: float = 0.0,
              progress: Progress | None = None) -> None:
        """Merged groups -> map geometries -> (MASK, ``RUN_NMS``) -> the store."""
        united = groups.united_boxes(boxes)
        if self.mask is not None and len(groups):
            inside = self.mask.contains_pixels((united[:, 0] + united[:, 2]) / 2, (united[:, 1] + united[:, 3]) / 2)
            self.outside_mask += int((~inside).sum())
            groups, united = groups.take(inside), united[inside]
        if not len(groups):
            return
        first = groups.first
        wkbs = self._geometries(groups, united, shapes)
        group_scores, group_classes = scores[first], classes[first]
        if run_nms:
            keep = suppress_for_tool(wkbs, group_scores, [self.table.info(int(c)).name for c in group_classes],
                                     max_overlap_ratio, progress)
            wkbs = [w for w, k in zip(wkbs, keep.tolist()) if k]
            group_scores, group_classes = group_scores[keep], group_classes[keep]
        self.store.add(wkbs, group_classes, group_scores)

    def _geometries(self, groups: Groups, united: np.ndarray, shapes: list) -> list[bytes]:
        if shapes and shapes[0] is not None:  # rotated boxes or masks: the union of the pieces' shapes
            wkbs = []
            for g in groups.as_list():
                geom = ogr.CreateGeometryFromWkb(shapes[int(g[0])])
                for k in g[1:].tolist():
                    geom = geom.Union(ogr.CreateGeometryFromWkb(shapes[k]))
                if self.with_masks and geom.GetGeometryType() == ogr.wkbPolygon:
                    geom = ogr.ForceToMultiPolygon(geom)
                wkbs.append(geom.ExportToIsoWkb())
            return wkbs
        # axis-aligned boxes: the union of the pieces' boxes, as WKB polygons straight from numpy
        return box_polygons_wkb(self.grid.geotransform, united)

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
from ...detection.seams import seam_merge, split_final
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
    dropped: Counter = field(default_factory=Counter)
    found: int = 0
    merged: int = 0
    streamed: int = 0
    outside_mask: int = 0

    def write(self, job: BlockJob, raw: RawObjects) -> None:
        self.dropped.update(raw.dropped)
        boxes, scores, classes, chips, cut = raw.arrays()
        self.found += len(scores)
        if self.hold_all:
            self.held[job.index] = RawObjects(raw.boxes, raw.scores, raw.classes, raw.chips, raw.cut, raw.shapes)
            return
        if not len(scores):
            return
        groups, held = split_final(boxes, scores, classes, chips, cut, self.nms_overlap,
                                   block_interior(self.chips, job))
        self.merged += len(groups)
        before = self.store.count
        self._emit(groups, boxes, scores, classes, raw.shapes)
        self.streamed += self.store.count - before
        if held.any():
            self.held[job.index] = raw.subset(held)

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
        groups = seam_merge(boxes, scores, classes, chips, cut, self.nms_overlap)
        self.merged += len(groups)
        self._emit(groups, boxes, scores, classes, held.shapes, run_nms, max_overlap_ratio, progress)
        if self.mask is not None:
            progress.info(f"MASK '{self.mask.name}': {self.outside_mask} objects whose centre lies outside its "
                          "polygons are dropped")
        self.store.finish()

    def _emit(self, groups: list[np.ndarray], boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
              shapes: list, run_nms: bool = False, max_overlap_ratio: float = 0.0,
              progress: Progress | None = None) -> None:
        """Merged groups -> map geometries -> (MASK, ``RUN_NMS``) -> the store."""
        if self.mask is not None and groups:
            centres = np.array([[(boxes[g, 0].min() + boxes[g, 2].max()) / 2,
                                 (boxes[g, 1].min() + boxes[g, 3].max()) / 2] for g in groups])
            inside = self.mask.contains_pixels(centres[:, 0], centres[:, 1])
            self.outside_mask += int((~inside).sum())
            groups = [g for g, keep in zip(groups, inside.tolist()) if keep]
        if not groups:
            return
        first = np.array([int(g[0]) for g in groups], np.int64)
        wkbs = self._geometries(groups, boxes, shapes)
        group_scores, group_classes = scores[first], classes[first]
        if run_nms:
            keep = suppress_for_tool(wkbs, group_scores, [self.table.info(int(c)).name for c in group_classes],
                                     max_overlap_ratio, progress)
            wkbs = [w for w, k in zip(wkbs, keep.tolist()) if k]
            group_scores, group_classes = group_scores[keep], group_classes[keep]
        self.store.add(wkbs, group_classes, group_scores)

    def _geometries(self, groups: list[np.ndarray], boxes: np.ndarray, shapes: list) -> list[bytes]:
        gt = self.grid.geotransform
        if shapes and shapes[0] is not None:  # rotated boxes or masks: the union of the pieces' shapes
            wkbs = []
            for g in groups:
                geom = ogr.CreateGeometryFromWkb(shapes[int(g[0])])
                for k in g[1:].tolist():
                    geom = geom.Union(ogr.CreateGeometryFromWkb(shapes[k]))
                if self.with_masks and geom.GetGeometryType() == ogr.wkbPolygon:
                    geom = ogr.ForceToMultiPolygon(geom)
                wkbs.append(geom.ExportToIsoWkb())
            return wkbs
        # axis-aligned boxes: the union of the pieces' boxes, as WKB polygons straight from numpy
        united = np.array([[boxes[g, 0].min(), boxes[g, 1].min(), boxes[g, 2].max(), boxes[g, 3].max()]
                           if len(g) > 1 else boxes[g[0]] for g in groups]).reshape(-1, 4)
        return box_polygons_wkb(gt, united)

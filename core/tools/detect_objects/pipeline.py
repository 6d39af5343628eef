# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects Using Deep Learning: raster in, georeferenced polygons out.

1. The raster is cut into the same padded tiles as Classify Pixels (:class:`core.raster.grid.TileGrid`, the last
   tile of a row or column moved inward, the margin past the raster mirrored or zero-filled: ``edge_fill``)
   and into blocks of tiles run by the block engine (:mod:`core.engine.blocks`): in-process threads, or a Dask
   cluster with ``scheduler``.  :class:`DetectionTask` is one block job: the shared tile reader
   (:class:`core.engine.tile_reader.TileReader`: window + halo, NoData zeroed, normalised, batched as the run's
   :mod:`core.engine.contract` says), the model, and the block's objects in raster pixel coordinates as its
   result, independent of every other block.
2. Per tile (:mod:`core.detection.decode`): decode the model's layout, drop scores below ``threshold``,
   NMS within the tile (``nms_overlap``, per class), then ``exclude_pad_detections``: keep the objects whose
   centre lies in the tile's centre (arcgis.learn's rule), each marked when it is cut by the tile's edge.
   Nothing is lost by leaving the others out: a box off its tile's centre has its centre in a neighbour's centre
   and lies within ``padding`` of it, so that neighbour sees all of it (and more) and judges it itself; an object
   larger than the padding is found in pieces, each kept by the tile whose centre holds the piece's centre.
   Keeping the off-centre pieces too (as this plugin once did) kept what a tile sees badly: slivers at its edge,
   and halves of objects that then joined two neighbours into one.
3. One global merge over the raster (:func:`core.detection.seams.seam_merge`): pieces of an object cut by tile seams are
   united, copies seen by two chips reduced to the most confident one.
4. Pixel coordinates -> map coordinates through the raster's full geotransform (rotation terms too, any
   CRS).  Boxes become 4-corner polygons, rotated boxes their corners, instance masks their outline at
   pixel precision (GDAL polygonize of the mask, holes kept).
5. ``run_nms``: the Non Maximum Suppression tool's rule (:func:`core.detection.nms.nms_polygons`) on the result.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from osgeo import ogr

from ...arguments.specs import resolve_arguments
from ...backends import Backend, DeviceRequest, open_backend
from ...detection.decode import ChipDetections, ClassTable, DetectionDecoder, class_table, make_decoder
from ...detection.geometry import (
    box_corners,
    clip_mask,
    concat,
    invert_transform,
    mask_geometry,
    ring_geometry,
)
from ...detection.nms import box_iou_pairs, check_max_overlap, nms_boxes
from ...detection.screen import dropped_lines, screen
from ...engine import augment
from ...engine.blocks import BlockJob, block_jobs, chips_per_block, run_in_process
from ...engine.contract import ModelContract, decide_contract
from ...engine.normalize import build_normaliser, resolve_bands
from ...engine.pixels import TileReader
from ...engine.tile_reader import log_mask, open_model_source
from ...errors import InputDataError
from ...model.definition import ClassInfo, ModelDefinition
from ...model.probe import meta_value
from ...prf.choice import model_to_run
from ...progress import NullProgress, Progress
from ...raster.gdal_io import (
    RasterGrid,
    RasterSource,
    bounded_gdal_cache,
    data_band_count,
    dataset_grid,
    open_raster,
)
from ...raster.grid import TileGrid
from ...raster.request import BandSource, RasterRequest, processing_grid
from .objects import DetectedObject, ObjectStore, RawObjects
from .stream import ObjectStream, PendingBlocks

ogr.UseExceptions()

DETECTION_TYPES = ("ObjectDetection", "InstanceDetection")


@dataclass
class DetectionResult:
    #: the objects, in a temporary file for a model run (iterate it once; ``discard()`` when written)
    objects: list[DetectedObject] | ObjectStore
    classes: list[ClassInfo]
    geometry_type: str  # "Polygon" or "MultiPolygon"
    crs_wkt: str
    layout: str
    tiles: int
    batch_size: int
    tile_size: tuple[int, int]
    padding: int
    device: str
    before_merge: int
    after_merge: int
    seconds: float
    model_seconds: float
    merge_seconds: float
    per_class: dict[str, int] = field(default_factory=dict)
    extra_fields: list[tuple[str, str]] = field(default_factory=list)  # (name, "string"|"double"|"integer")
    blocks: int = 0

    def summary_lines(self) -> list[str]:
        lines = [
            f"Done: {self.tiles} tiles of {self.tile_size[0]}x{self.tile_size[1]} in {self.blocks} "
            f"block{'' if self.blocks == 1 else 's'} (padding "
            f"{self.padding}, batch size {self.batch_size}), layout {self.layout}, {self.device}",
            f"Objects: {self.before_merge} found in tiles, {self.after_merge} after the seam merge, "
            f"{len(self.objects)} written",
            f"Time: {self.seconds:.1f} s ({self.model_seconds:.1f} s in the model, {self.merge_seconds:.2f} s merging)",
        ]
        if self.per_class:
            lines.append("Objects per class:")
            lines += [f"  {name}: {n}" for name, n in sorted(self.per_class.items())]
        return lines


@dataclass
class DetectionSetup:
    """Everything a block needs, fixed once per run (picklable apart from the backend)."""

    grid: RasterGrid
    chips: TileGrid
    decoder: DetectionDecoder
    contract: ModelContract
    exclude_pad: bool
    #: how many classes the model has (class slots 0..n-1); None when the classes are only numbered
    n_slots: int | None = None

    @property
    def threshold(self) -> float:
        return float(self.contract.threshold or 0.0)

    @property
    def nms_overlap(self) -> float:
        return float(self.contract.nms_overlap or 0.0)


def _chip_cut(boxes: np.ndarray, window: tuple[int, int, int, int], grid: RasterGrid) -> np.ndarray:
    """Which boxes (raster pixels) touch an edge of their chip that lies inside the raster."""
    x, y, w, h = window
    tol = 1.0
    left = (boxes[:, 0] <= x + tol) & (x > 0)
    top = (boxes[:, 1] <= y + tol) & (y > 0)
    right = (boxes[:, 2] >= x + w - tol) & (x + w < grid.width)
    bottom = (boxes[:, 3] >= y + h - tol) & (y + h < grid.height)
    return left | top | right | bottom


def chip_objects(setup: DetectionSetup, per_transform: list[ChipDetections], row: int, col: int,
                 out: RawObjects) -> None:
    """Threshold (done by the decoder), in-chip NMS, test-time merge, centre rule; add to ``out``."""
    chips, grid = setup.chips, setup.grid
    det = concat(per_transform) if len(per_transform) > 1 else per_transform[0]
    keep = nms_boxes(det.boxes, det.scores, det.classes, setup.nms_overlap, det.corners)
    det = det.take(keep)
    if len(per_transform) > 1 and len(det):  # confidence = mean over the transforms of the best match
        total = np.zeros(len(det))
        for t in per_transform:
            if not len(t):
                continue
            ii = np.repeat(np.arange(len(det)), len(t))
            jj = np.tile(np.arange(len(t)), len(det))
            iou = box_iou_pairs(np.concatenate([det.boxes, t.boxes]), ii, jj + len(det))
            match = (iou > max(setup.nms_overlap, 0.5)) & (det.classes[ii] == t.classes[jj])
            best = np.zeros(len(det))
            np.maximum.at(best, ii[match], t.scores[jj[match]])
            total += best
        det.scores = total / len(per_transform)
    wx, wy, ww, wh = chips.chip_window(row, col)
    shift = np.array([wx, wy, wx, wy], np.float64)
    # the centre rule reads the model's own box; what lies past the tile (a guess) or past the raster's edge
    # (zeros, or the mirrored raster) is not observed, so the object itself is clipped to both; an object then
    # lies in its tile, which is what lets a block's objects away from other blocks' tiles be written at once
    raw_boxes = det.boxes + shift
    lo = [max(wx, 0), max(wy, 0)] * 2
    hi = [min(wx + ww, grid.width), min(wy + wh, grid.height)] * 2
    boxes = np.clip(raw_boxes, lo, hi)
    # the chip's own centre: for the last chip of a row or column, moved inward, that overlaps the previous
    # chip's, so both may keep an object there; the seam merge then keeps one
    cx, cy = chips.core_origin(row, col)
    mx, my = (raw_boxes[:, 0] + raw_boxes[:, 2]) / 2, (raw_boxes[:, 1] + raw_boxes[:, 3]) / 2
    centre = (mx >= cx) & (mx < cx + chips.core_w) & (my >= cy) & (my < cy + chips.core_h)
    cut = _chip_cut(boxes, (wx, wy, ww, wh), grid)
    inside = ((mx >= 0) & (mx < grid.width) & (my >= 0) & (my < grid.height)
              & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    if setup.exclude_pad:  # arcgis.learn's rule: the chip whose centre holds the box's centre judges it
        sel = np.nonzero(inside & centre)[0]
    else:
        sel = np.nonzero(inside)[0]
        off = ~centre[sel] & ~cut[sel]  # arcgis.learn: whole copies off the centre rank below the centre copy
        det.scores = det.scores.copy()
        det.scores[sel[off]] = setup.threshold + det.scores[sel[off]] * 1e-4
    det = det.take(sel)
    gt = grid.geotransform
    shapes: list = [None] * len(det)
    if det.masks is not None:
        shapes = [mask_geometry(gt, *clip_mask(wx + x0, wy + y0, m, grid.width, grid.height))
                  for x0, y0, m in det.masks]
    elif det.corners is not None:
        footprint = ring_geometry(gt, box_corners(np.array([0.0, 0.0, grid.width, grid.height])))
        shapes = [ring_geometry(gt, c + shift[:2]).Intersection(footprint) for c in det.corners]
    det.boxes = boxes[sel]
    good = np.array([s is not None and not s.IsEmpty() and s.GetArea() > 0 for s in shapes]
                    if det.masks is not None or det.corners is not None else [True] * len(det), bool)
    if not good.all():  # e.g. an instance whose mask has no pixel above the threshold: no outline, no object
        det = det.take(np.nonzero(good)[0])
        shapes = [s for s, g in zip(shapes, good) if g]
    out.add(det, row * chips.cols + col, cut[sel][good], [None if s is None else s.ExportToIsoWkb() for s in shapes])


@dataclass
class DetectionTask:
    """One Detect Objects block job (see :class:`core.engine.blocks.BlockTask`): the block's objects, raster pixels."""

    reader: TileReader
    setup: DetectionSetup

    def units(self, job: BlockJob) -> int:
        if self.reader.mask is None:
            return job.chip_count
        return len(self.reader.needed(range(*job.rows), range(*job.cols)))

    def load(self, job: BlockJob):
        rows, cols = range(*job.rows), range(*job.cols)
        data, valid, wx0, wy0 = self.reader.read(rows, cols)
        return None, self.reader.batches(data, valid, rows, cols, wx0, wy0)

    def infer(self, backend: Backend, arr: np.ndarray) -> list[tuple[int, Any]]:
        """The raw output for each test-time transform (decoded by the writer stage)."""
        outs = []
        contract = self.setup.contract
        for k in contract.transforms:
            outs.append((k, backend.run_structured(contract.feeds(augment.forward(arr, k) if k else arr))))
        return outs

    def start(self, job: BlockJob, context: Any) -> RawObjects:
        return RawObjects()

    def fold(self, acc: RawObjects, metas: list, output: list[tuple[int, Any]]) -> None:
        setup, chips = self.setup, self.setup.chips
        per_chip: list[list[ChipDetections]] = [[] for _ in metas]
        for k, raw in output:
            for b, det in enumerate(setup.decoder.decode(raw, len(metas), setup.threshold, setup.nms_overlap)):
                det = screen(det, setup.n_slots, chips.tile_w, chips.tile_h, acc.dropped)
                per_chip[b].append(invert_transform(det, k, chips.tile_h, chips.tile_w))
        for (r, c), dets in zip(metas, per_chip):
            chip_objects(setup, dets, r, c, acc)

    def finish(self, acc: RawObjects) -> RawObjects:
        return acc


def detection_grid(raster: str, request: RasterRequest | None) -> tuple[RasterGrid, bool]:
    """The processing grid; a rotated raster is processed on its own grid (mapped through its geotransform)."""
    ds = open_raster(raster)
    native = dataset_grid(ds, allow_rotated=True)
    ds = None
    rotated = native.geotransform[2] != 0 or native.geotransform[4] != 0
    if not rotated:
        return processing_grid(raster, request)[1], False
    if request is not None and (request.extent is not None or request.cell_size is not None):
        raise InputDataError(f"Raster '{os.path.basename(raster)}' has a rotated geotransform: it is processed on its "
                             "own grid, so a processing extent or cell size cannot be applied (warp it north-up first)")
    if not native.crs_wkt:
        raise InputDataError(f"Raster '{os.path.basename(raster)}' has no coordinate reference system: assign one")
    return native, True


def detect_objects(raster: str, md: ModelDefinition, arguments: str | dict | None = None,
                   request: RasterRequest | None = None, device: DeviceRequest | None = None,
                   progress: Progress | None = None, run_nms: bool = False, max_overlap_ratio: float = 0.0,
                   scheduler: str = "", retries: int = 2, allow_custom_code: bool = False) -> DetectionResult:
    """Detect objects in ``raster`` with ``md``: the merged, georeferenced objects (see the module docstring).

    ``scheduler``: empty = in-process threads; ``local``, ``local:N`` or ``tcp://host:port`` = the same block
    jobs on a Dask cluster (:mod:`core.engine.cluster`), each failed block retried ``retries`` times.
    A model run by its own Python function (``md.custom_function``) runs only with ``allow_custom_code``
    (on a cluster too: its file is shipped and checked by SHA-256, :func:`core.prf.function_model.function_model_ref`).
    """
    progress = progress or NullProgress()
    started = time.perf_counter()
    if run_nms:
        check_max_overlap(max_overlap_ratio)  # before the run, not after it
    if md.model_type not in DETECTION_TYPES:
        raise InputDataError(f"ModelType '{md.model_type}' is not an object detection model: use the tool for "
                             f"{md.model_type} models (Describe Model tells which)")
    md = model_to_run(md, allow_custom_code, progress)
    if md.custom_function:
        from .function import custom_detect_objects

        grid = processing_grid(raster, request)[1]
        found, stats = custom_detect_objects(raster, md, arguments, grid, device or DeviceRequest(), progress,
                                             allow_custom_code, run_nms, max_overlap_ratio, scheduler, retries,
                                             request.grid_mask(grid) if request is not None else None)
        result = DetectionResult(objects=[DetectedObject(*o) for o in found], **stats)
        for line in result.summary_lines():
            progress.info(line)
        return result
    args = resolve_arguments(md, "detect_objects", arguments, progress)
    device = (device or DeviceRequest()).take_arguments(args)
    grid, rotated = detection_grid(raster, request)
    if rotated:
        source = RasterSource(raster, open_model_source_bands(raster, md), grid, allow_rotated=True)
    else:
        source = open_model_source(raster, md, grid)
    model_file = md.require_model_file()
    detection = (float(args["threshold"]), float(args["nms_overlap"]))  # for R-CNN heads that apply them inside
    backend = open_backend(model_file, md.model_format_kind or "onnx", device, progress, definition=md.raw,
                           trust=md.code_trust, detection=detection)
    try:
        with bounded_gdal_cache():
            normaliser = build_normaliser(md, source.bands, source.dtype, source.band_range)
            progress.info(f"Normalisation: {normaliser.description}")
            setup, table = _setup(md, args, grid, backend, len(source.bands), progress)
            contract = setup.contract
            mask = request.grid_mask(grid) if request is not None else None
            task = DetectionTask(TileReader(BandSource(source, mask), setup.chips, normaliser, contract.batch_size,
                                            contract.channels), setup)
            log_mask(task.reader, progress)
            per_block = chips_per_block(setup.chips, 4.0 * contract.channels + 8, int(args.get("block_size") or 0),
                                        contract.batch_size)
            jobs = block_jobs(setup.chips, per_block)
            progress.info(f"Blocks: {len(jobs)} of up to {per_block[1]} x {per_block[0]} tiles; edges "
                          f"{'mirrored' if setup.chips.mirrored else 'zero-filled'}")
            sink = ObjectStream(chips=setup.chips, grid=grid, table=table, nms_overlap=setup.nms_overlap,
                                with_masks=setup.decoder.with_masks, store=ObjectStore(table), mask=mask,
                                hold_all=run_nms, pending=None if run_nms else PendingBlocks(setup.chips, jobs))
            if scheduler:
                from ...engine.cluster import ModelRef, run_on_cluster

                ref = ModelRef.for_file(model_file, md.model_format_kind or "onnx", device, definition=md.raw,
                                        detection=detection, trust=md.code_trust)
                run_on_cluster(task, ref, jobs, sink, progress, scheduler, retries)
            else:
                run_in_process(task, backend, jobs, sink, progress)
    finally:
        source.close()
        backend.close()
    merge_start = time.perf_counter()
    for line in dropped_lines(sink.dropped):
        progress.warning(line)
    try:
        sink.finish(run_nms, max_overlap_ratio, progress)
    except BaseException:
        sink.store.discard()
        raise
    merge_seconds = time.perf_counter() - merge_start
    progress.set_progress(100.0)
    if not run_nms:
        progress.info(f"Objects written as their blocks finished: {sink.streamed}; once the blocks beside them "
                      f"were done: {sink.settled}; at the end: {sink.store.count - sink.streamed - sink.settled}")
    geometry_type = "MultiPolygon" if setup.decoder.with_masks else "Polygon"
    result = DetectionResult(
        objects=sink.store, classes=table.classes, geometry_type=geometry_type, crs_wkt=grid.crs_wkt,
        layout=setup.decoder.layout, tiles=setup.chips.count, batch_size=setup.contract.batch_size,
        tile_size=(setup.chips.tile_w, setup.chips.tile_h), padding=setup.chips.pad, device=backend.describe(),
        before_merge=sink.found, after_merge=sink.merged, seconds=time.perf_counter() - started,
        model_seconds=backend.model_seconds, merge_seconds=merge_seconds, per_class=dict(sink.store.per_class),
        blocks=len(jobs))
    for line in result.summary_lines():
        progress.info(line)
    return result


def open_model_source_bands(raster: str, md: ModelDefinition) -> list[int]:
    probe = RasterSource(raster, [0], allow_rotated=True)
    try:
        return resolve_bands(md, data_band_count(probe.ds, raster), probe.band_names(), probe.name)
    finally:
        probe.close()


def _setup(md: ModelDefinition, args: dict, grid: RasterGrid, backend: Backend, channels: int,
           progress: Progress) -> tuple[DetectionSetup, ClassTable]:
    contract = decide_contract(md, args, "detect_objects", inputs=backend.inputs, outputs=backend.outputs,
                               channels=channels)
    chips = TileGrid(grid.width, grid.height, contract.tile_height, contract.tile_width, int(args.get("padding", 0)),
                     str(args.get("edge_fill") or "mirror"))
    metadata = getattr(backend, "metadata", {}) or {}
    meta = {k: meta_value(v) for k, v in metadata.items()}
    probe = backend.run_structured(contract.feeds(contract.probe_inputs()[0]))
    names = [o.name for o in backend.outputs]
    n_classes = len(md.classes) or (len(meta["names"]) if isinstance(meta.get("names"), (dict, list)) else None)
    decoder = make_decoder(md, probe, names, n_classes, meta, contract.tile_height, contract.tile_width)
    table = class_table(md, meta, n_classes, first_value=decoder.label_offset)
    if decoder.layout == "separate" and any(isinstance(o, np.ndarray) and o.ndim == 2 and o.shape[-1] == 4
                                            for o in _leaves(probe)):
        # per-image outputs ([N, 4] boxes, not [B, N, 4]): one tile per call
        contract = decide_contract(md, args, "detect_objects", inputs=backend.inputs, outputs=backend.outputs,
                                   channels=channels, per_image_outputs=True)
    if contract.batch.why:
        progress.info(contract.batch.log_line())
    progress.info(f"Tiles: {chips.count} ({chips.cols} x {chips.rows}) of {contract.tile_width}x"
                  f"{contract.tile_height} pixels with padding {chips.pad}, batch size {contract.batch_size}, output "
                  f"layout {decoder.layout}" + (", instance masks" if decoder.with_masks else "")
                  + contract.augmentation_text())
    if table.generated:
        progress.warning("Neither the model definition nor the model names its classes: they are numbered")
    setup = DetectionSetup(grid=grid, chips=chips, decoder=decoder, contract=contract,
                           exclude_pad=bool(args["exclude_pad_detections"]),
                           n_slots=None if table.generated else len(table.classes))
    return setup, table


def _leaves(out: Any) -> list:
    if isinstance(out, (list, tuple)):
        return [leaf for o in out for leaf in _leaves(o)]
    return [out]

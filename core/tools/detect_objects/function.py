# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects with the model's own Python raster function: ``vectorize`` per block.

The tool reads the raster in blocks of ``(bands, ty + 2*padding, tx + 2*padding)`` exactly as for
``updatePixels``, on the block engine (see :mod:`core.prf.raster_blocks`: the shared reader, ``edge_fill`` and
``block_size``), and calls ``vectorize(raster_pixels=..., raster_mask=...)``.
The function returns ``output_vectors``: Esri JSON features whose polygon ``rings`` are in the block's pixel
space, ``[x = column, y = row]`` from the top-left of the block without its padding (as Esri documents), with
attributes ``Class`` (the class name; ``Classname``/``Label`` also read, or ``Classvalue``/``Value``) and
``Confidence`` (0-100; a value of at most 1 is taken as 0-1 and scaled).  The tool maps the rings to map
coordinates, names the classes from the model definition, and applies Non Maximum Suppression when asked.
``getGeometryType()`` must say polygons (4), as every Esri detector does; the fields ``getFields()`` declares
besides Class and Confidence are added to the output, filled from each feature's attributes.  Classes and
confidences are read as Classify Objects reads them (:mod:`core.prf.features`); the function runs on the block
engine as any detector, in-process or on Dask (:func:`core.engine.cluster.run_jobs`), and ``run_nms`` is the
same step as for a model file (:func:`core.detection.nms.suppress_for_tool`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from osgeo import ogr

from ...detection.nms import suppress_for_tool
from ...engine.blocks import BlockJob, ResultSink
from ...engine.cluster import run_jobs
from ...engine.tile_reader import log_mask
from ...model.definition import ClassInfo, ModelDefinition
from ...prf.features import feature_attributes, feature_class, feature_confidence, given_name
from ...prf.function_model import FunctionModel, function_model_ref
from ...prf.host import CustomFunctionError, PythonRasterFunction
from ...prf.raster_blocks import FunctionBlockTask, FunctionRun
from ...prf.sources import raster_bands
from ...progress import NullProgress, Progress
from ...raster.gdal_io import bounded_gdal_cache

#: Esri field types -> the kinds the tool writes; the fields it writes itself are not repeated.
_FIELD_KINDS = {"esrifieldtypestring": "string", "esrifieldtypedouble": "double", "esrifieldtypesingle": "double",
                "esrifieldtypeinteger": "integer", "esrifieldtypesmallinteger": "integer",
                "esrifieldtypeoid": None, "esrifieldtypegeometry": None}
_OWN_FIELDS = {"class", "classname", "classvalue", "value", "confidence", "shape", "oid", "objectid", "fid"}


def extra_fields_of(fields: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """getFields() entries the output gains besides Class, ClassValue and Confidence: (name, kind)."""
    out = []
    for f in fields:
        name = str(f.get("name") or "").strip()
        kind = _FIELD_KINDS.get(str(f.get("type", "esriFieldTypeString")).lower(), "string")
        if name and kind and name.lower() not in _OWN_FIELDS and name not in {n for n, _ in out}:
            out.append((name, kind))
    return out


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    try:
        return float(value) if kind == "double" else int(value) if kind == "integer" else str(value)
    except (TypeError, ValueError):
        return None


def _class_of(attrs: dict[str, Any], md: ModelDefinition, prf: PythonRasterFunction) -> ClassInfo:
    """The definition's class the feature names; a class it does not list is kept by name (value 0)."""
    info = feature_class(attrs, list(md.classes))
    if info is not None:
        return info
    name = given_name(attrs)
    if name is not None:
        return ClassInfo(0, name)
    raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned a feature without a class on {prf.where}: "
                              f"set attributes 'Class' (the name) or 'Classvalue'")


def _ring(points: Any, x0: int, y0: int, gt: tuple[float, ...], prf: PythonRasterFunction) -> ogr.Geometry:
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        pts = np.empty((0,))
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned a ring that is not a list of at least "
                                  f"3 [x, y] points on {prf.where}: {str(points)[:80]}")
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in pts:
        px, py = x0 + x, y0 + y
        ring.AddPoint_2D(gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5])
    ring.CloseRings()
    return ring


@dataclass
class FunctionDetectionTask(FunctionBlockTask):
    """``vectorize`` per chip on the block engine (see :class:`core.prf.raster_blocks.FunctionBlockTask`); a block's
    result is its objects in map coordinates: ``(WKB, ClassInfo, confidence 0-100, extra values)``.

    A feature whose box centre lies in the part of the chip's centre that another chip answers for (the
    overlap of a last chip moved inward, ``edge_fill mirror``) is that chip's, and dropped here, so no object is
    reported twice; everything else the function returns is kept, as ArcGIS keeps it."""

    md: ModelDefinition
    geotransform: tuple[float, ...]
    extra_fields: list[tuple[str, str]]

    def _foreign(self, r: int, c: int, x: float, y: float) -> bool:
        chips = self.reader.chips
        ox, oy = chips.core_origin(r, c)
        kx, ky, kw, kh = self.kept(r, c)
        inside_core = (max(ox, 0) <= x < min(ox + chips.core_w, chips.width)
                       and max(oy, 0) <= y < min(oy + chips.core_h, chips.height))
        return inside_core and not (kx <= x < kx + kw and ky <= y < ky + kh)

    def infer(self, model: FunctionModel, batch: Any) -> list[list[tuple]]:
        arrs, masks, metas = batch
        prf, md, gt = model.prf, self.md, self.geotransform
        results = []
        for chip, valid, (r, c) in zip(arrs, masks, metas):
            x0, y0 = self.locate(prf, r, c)
            featureset = model.call(prf.vectorize, self.pixel_blocks(chip, valid))
            found = []
            for feature in featureset.get("features", []):
                attrs = feature_attributes(feature)
                rings = (feature.get("geometry") or {}).get("rings") if isinstance(feature, dict) else None
                if not rings:
                    raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned a feature without "
                                              f"geometry.rings on {prf.where}")
                poly = ogr.Geometry(ogr.wkbPolygon)
                for ring in rings:
                    poly.AddGeometry(_ring(ring, x0, y0, gt, prf))
                try:
                    score = feature_confidence(attrs)
                except ValueError as exc:
                    raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned {exc} on {prf.where}") from None
                info = _class_of(attrs, md, prf)
                pts = np.asarray(rings[0], dtype=np.float64)
                cx, cy = (pts[:, 0].min() + pts[:, 0].max()) / 2, (pts[:, 1].min() + pts[:, 1].max()) / 2
                if self._foreign(r, c, x0 + cx, y0 + cy):
                    continue
                found.append((bytes(poly.ExportToIsoWkb()), info, score,
                              tuple(_typed(attrs.get(name), kind) for name, kind in self.extra_fields)))
            results.append(found)
        return results

    def start(self, job: BlockJob, context: Any) -> list[tuple]:
        return []

    def fold(self, acc: list[tuple], metas: list, output: list[list[tuple]]) -> None:
        for found in output:
            acc.extend(found)

    def finish(self, acc: list[tuple]) -> list[tuple]:
        return acc


def _inside(mask: Any, found: list[tuple], gt: tuple[float, ...], progress: Progress) -> list[tuple]:
    """The objects whose box centre lies inside the mask's polygons (all of them without a mask), as the tool
    keeps a model file's objects; the log says how many were dropped."""
    if mask is None or not found:
        return found
    boxes = np.array([ogr.CreateGeometryFromWkb(wkb).GetEnvelope() for wkb, *_ in found])  # xmin, xmax, ymin, ymax
    px = ((boxes[:, 0] + boxes[:, 1]) / 2 - gt[0]) / gt[1]  # the processing grid is north-up
    py = ((boxes[:, 2] + boxes[:, 3]) / 2 - gt[3]) / gt[5]
    inside = mask.contains_pixels(px, py)
    progress.info(f"MASK '{mask.name}': {int((~inside).sum())} objects whose centre lies outside its polygons "
                  "are dropped")
    return [obj for obj, keep in zip(found, inside.tolist()) if keep]


def custom_detect_objects(raster: str, md: ModelDefinition, arguments: str | dict | None, grid: Any, device: Any,
                          progress: Progress | None, allowed: bool, run_nms: bool = False,
                          max_overlap_ratio: float = 0.0, scheduler: str = "", retries: int = 2,
                          mask: Any = None) -> tuple[list[tuple[bytes, str, int, float]], dict]:
    """Detect Objects with the model's function on ``grid``, on the block engine.

    Returns the objects as ``(WKB in map coordinates, class name, class value, confidence 0-100)`` and the
    run's figures, which :func:`.pipeline.detect_objects` turns into its ``DetectionResult``.  With a ``mask``
    (a GridMask on ``grid``) only the chips touching it are read and given to the function, and objects whose box
    centre lies outside its polygons are dropped.
    """
    progress = progress or NullProgress()
    started = time.perf_counter()
    prf = PythonRasterFunction(md, allowed, device, progress)
    geometry_type = prf.geometry_type()
    if geometry_type != 4:
        raise CustomFunctionError(f"getGeometryType() of '{prf.shown}' returns {geometry_type}; Detect Objects "
                                  "writes polygons (4), as Esri's detectors do")
    fields = prf.fields()
    extra_fields = extra_fields_of(fields)
    if fields:
        progress.info("Fields the function declares: " + ", ".join(str(f.get("name")) for f in fields)
                      + (f" (written besides Class, ClassValue, Confidence: {', '.join(n for n, _ in extra_fields)})"
                         if extra_fields else " (written: Class, ClassValue, Confidence)"))

    run = FunctionRun.open(prf, md, arguments, raster_bands(raster, md, prf.shown, prf.rasters()[0], grid), progress)
    run.source.mask = mask
    conf = run.conf
    model = FunctionModel(prf)
    sink = ResultSink()
    try:
        task = FunctionDetectionTask(reader=run.reader(), input_mask=conf.input_mask, parts=run.source.parts, md=md,
                                     geotransform=tuple(grid.geotransform), extra_fields=extra_fields)
        log_mask(task.reader, progress)
        jobs = run.jobs(np.dtype(task.reader.dtype).itemsize * run.source.band_count + 1.0)
        progress.info(run.describe(jobs))
        with bounded_gdal_cache():
            run_jobs(task, model, jobs, sink, progress, scheduler, retries,
                     lambda: function_model_ref(prf, md, run.arguments, device, progress, scheduler))
    finally:
        run.source.close()
    found = _inside(mask, [obj for block in sink.in_order() for obj in block], grid.geotransform, progress)
    listed = {k.name.lower() for k in md.classes}
    unlisted = sorted({info.name for _, info, _, _ in found if info.name.lower() not in listed})
    if unlisted:
        progress.warning(f"Classes the model definition does not list (written with ClassValue 0): "
                         f"{', '.join(unlisted)}")
    keep = np.ones(len(found), bool)
    if run_nms and found:
        keep = suppress_for_tool([w for w, _, _, _ in found], np.array([s for _, _, s, _ in found]) / 100.0,
                                 [k.name for _, k, _, _ in found], max_overlap_ratio, progress)
    objects = [(w, k.name, int(k.value), round(s, 4), e) for (w, k, s, e), ok in zip(found, keep.tolist()) if ok]
    progress.set_progress(100.0)
    return objects, dict(
        classes=list(md.classes), geometry_type="Polygon", crs_wkt=grid.crs_wkt,
        layout="the model's Python function", tiles=run.chips.count, batch_size=int(conf.batch_size or 1),
        tile_size=(conf.tx, conf.ty), padding=conf.padding, device=f"'{prf.shown}'", before_merge=len(found),
        after_merge=len(found), seconds=time.perf_counter() - started, model_seconds=model.model_seconds,
        merge_seconds=0.0, per_class=dict(Counter(o[1] for o in objects)), extra_fields=extra_fields,
        blocks=len(jobs))

# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects with the model's own Python raster function: ``vectorize`` per block.

The tool reads the raster in blocks of ``(bands, ty + 2*padding, tx + 2*padding)`` exactly as for
``updatePixels`` (see :mod:`.custom_raster`) and calls ``vectorize(raster_pixels=..., raster_mask=...)``.
The function returns ``output_vectors``: Esri JSON features whose polygon ``rings`` are in the block's pixel
space, ``[x = column, y = row]`` from the top-left of the block without its padding (as Esri documents), with
attributes ``Class`` (the class name; ``Classname``/``Label`` also read, or ``Classvalue``/``Value``) and
``Confidence`` (0-100; a value of at most 1 is taken as 0-1 and scaled).  The tool maps the rings to map
coordinates, names the classes from the model definition, and applies Non Maximum Suppression when asked.
``getGeometryType()`` must say polygons (4), as every Esri detector does; the fields ``getFields()`` declares
besides Class and Confidence are added to the output, filled from each feature's attributes.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import numpy as np
from osgeo import ogr

from ..custom_function import CustomFunctionError, PythonRasterFunction, without_normalisation
from ..definition import ClassInfo, ModelDefinition
from ..errors import CancelledError
from ..nms import nms_polygons
from ..normalize import build_normaliser, resolve_bands
from ..progress import NullProgress, Progress
from ..raster_io import RasterSource, bounded_gdal_cache

_NAME_KEYS = ("Class", "Classname", "ClassName", "Label", "class")
_VALUE_KEYS = ("Classvalue", "ClassValue", "Value")


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
    by_name = {c.name.lower(): c for c in md.classes}
    by_value = {c.value: c for c in md.classes}
    for key in _NAME_KEYS:
        if attrs.get(key) not in (None, "") and str(attrs[key]).lower() in by_name:
            return by_name[str(attrs[key]).lower()]
    for key in _VALUE_KEYS + _NAME_KEYS:
        try:
            value = int(attrs[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value in by_value:
            return by_value[value]
    for key in _NAME_KEYS:
        if attrs.get(key) not in (None, ""):
            return ClassInfo(0, str(attrs[key]))  # a class the definition does not list: kept by name
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


def custom_detect_objects(raster: str, md: ModelDefinition, arguments: str | dict | None, grid: Any, device: Any,
                          progress: Progress | None, allowed: bool, run_nms: bool = False,
                          max_overlap_ratio: float = 0.0) -> tuple[list[tuple[bytes, str, int, float]], dict]:
    """Detect Objects with the model's function on ``grid``.

    Returns the objects as ``(WKB in map coordinates, class name, class value, confidence 0-100)`` and the
    run's figures, which :func:`.detect_objects.detect_objects` turns into its ``DetectionResult``.
    """
    progress = progress or NullProgress()
    started = time.perf_counter()
    prf = PythonRasterFunction(md, allowed, device, progress)
    args = prf.resolve_arguments(arguments)
    if args:
        progress.info("Function arguments: " + ";".join(f"{k} {v}" for k, v in args.items()))
    conf = prf.configuration(args)
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
    probe = RasterSource(raster, [0])
    try:
        bands = conf.bands if conf.bands is not None else resolve_bands(md, probe.ds.RasterCount, probe.band_names(),
                                                                        probe.name)
        if bands and max(bands) >= probe.ds.RasterCount:
            raise CustomFunctionError(f"getConfiguration() of '{prf.shown}' asks for band {max(bands) + 1} "
                                      f"(extractBands {bands}) but raster '{probe.name}' has {probe.ds.RasterCount}")
    finally:
        probe.close()
    source = RasterSource(raster, list(bands), grid)
    p, tx, ty = conf.padding, conf.tx, conf.ty
    gt = grid.geotransform
    geoms: list[ogr.Geometry] = []
    scores: list[float] = []
    classes: list[ClassInfo] = []
    extras: list[tuple] = []
    fn_seconds = 0.0
    unlisted: set[str] = set()
    try:
        normaliser = None
        if conf.data_range is not None:
            normaliser = build_normaliser(without_normalisation(md, conf.data_range), list(range(len(bands))),
                                          source.dtype, lambda i: source.band_range(bands[i]))
        cols, rows = math.ceil(grid.width / tx), math.ceil(grid.height / ty)
        total = cols * rows
        progress.info(f"Blocks: {total} ({cols} x {rows}) of {tx}x{ty} pixels with padding {p}")
        done = 0
        with bounded_gdal_cache():
            for r in range(rows):
                for c in range(cols):
                    if progress.is_canceled():
                        raise CancelledError("The run was cancelled.")
                    x0, y0 = c * tx, r * ty
                    data, valid = source.read(x0 - p, y0 - p, tx + 2 * p, ty + 2 * p)
                    if normaliser is not None:
                        data = normaliser.apply(data.astype(np.float32))
                    blocks: dict[str, Any] = {"raster_pixels": data}
                    if conf.input_mask:
                        blocks["raster_mask"] = np.repeat(valid[None].astype(np.uint8), data.shape[0], axis=0)
                    prf.where = f"the block at column {x0}, row {y0} (block {c + 1} of {cols} in row {r + 1} of {rows})"
                    t0 = time.perf_counter()
                    featureset = prf.vectorize(blocks)
                    fn_seconds += time.perf_counter() - t0
                    for feature in featureset.get("features", []):
                        attrs = feature.get("attributes", {}) if isinstance(feature, dict) else {}
                        rings = (feature.get("geometry") or {}).get("rings") if isinstance(feature, dict) else None
                        if not rings:
                            raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned a feature without "
                                                      f"geometry.rings on {prf.where}")
                        poly = ogr.Geometry(ogr.wkbPolygon)
                        for ring in rings:
                            poly.AddGeometry(_ring(ring, x0, y0, gt, prf))
                        try:
                            score = float(attrs.get("Confidence", attrs.get("Score", 100.0)))
                        except (TypeError, ValueError):
                            raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned Confidence "
                                                      f"{attrs.get('Confidence')!r} on {prf.where}") from None
                        info = _class_of(attrs, md, prf)
                        if info.name.lower() not in {k.name.lower() for k in md.classes}:
                            unlisted.add(info.name)
                        geoms.append(poly)
                        scores.append(score * 100.0 if score <= 1.0 else score)
                        classes.append(info)
                        extras.append(tuple(_typed(attrs.get(name), kind) for name, kind in extra_fields))
                    done += 1
                    progress.set_progress(90.0 * done / total)
    finally:
        source.close()
    if unlisted:
        progress.warning(f"Classes the model definition does not list (written with ClassValue 0): "
                         f"{', '.join(sorted(unlisted))}")
    keep = np.ones(len(geoms), bool)
    if run_nms and geoms:
        keep = nms_polygons(geoms, np.array(scores) / 100.0, [k.name for k in classes], max_overlap_ratio)
        progress.info(f"Non maximum suppression (max overlap ratio {max_overlap_ratio:g}): {int((~keep).sum())} "
                      "objects removed")
    objects = [(g.ExportToIsoWkb(), k.name, int(k.value), round(s, 4), e)
               for g, s, k, e, ok in zip(geoms, scores, classes, extras, keep.tolist()) if ok]
    progress.set_progress(100.0)
    return objects, dict(
        classes=list(md.classes), geometry_type="Polygon", crs_wkt=grid.crs_wkt,
        layout="the model's Python function", tiles=total, batch_size=int(conf.batch_size or 1), tile_size=(tx, ty),
        padding=p, device=f"'{prf.shown}'", before_merge=len(geoms), after_merge=len(geoms),
        seconds=time.perf_counter() - started, model_seconds=fn_seconds, merge_seconds=0.0,
        per_class=dict(Counter(o[1] for o in objects)), extra_fields=extra_fields)

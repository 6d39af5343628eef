# SPDX-License-Identifier: GPL-2.0-or-later
"""The class data of an export, and what of it falls in one chip.

Features are kept in one in-memory OGR layer with a spatial index, so each chip asks only for what
touches it (memory grows with the vector data, never with the raster).  The rules the README repeats:

* A feature belongs to a chip when the part of it inside the chip has an area and is at least
  ``min_polygon_overlap_ratio`` of the feature's area; the part outside is cut off (a box is the
  envelope of the part inside, in chip pixels: column 0 / row 0 is the chip's left / top edge).
* Points become circles of ``buffer_radius`` map units (32 segments a quarter).
* Masks are rasterised with GDAL's rule (a pixel belongs to a polygon when its centre is inside);
  where polygons overlap the later feature (input order) wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from osgeo import ogr

from ...errors import InputDataError
from ...raster.burn import FeatureIndex, window_rectangle
from ...raster.burn import rasterize as burn

ogr.UseExceptions()

_POINTS = (ogr.wkbPoint, ogr.wkbMultiPoint)


@dataclass(frozen=True)
class ChipObject:
    """One feature's part in one chip."""

    value: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in chip pixels
    geometry: ogr.Geometry  # the part inside the chip, map coordinates


def is_point_geometry(wkb: bytes) -> bool:
    return ogr.GT_Flatten(ogr.CreateGeometryFromWkb(wkb).GetGeometryType()) in _POINTS


class ClassFeatures:
    """The class features, in the raster's CRS, behind a spatial index."""

    def __init__(self, items: Iterable[tuple[object, bytes | None, object]], buffer_radius: float = 0.0) -> None:
        self.index = FeatureIndex()
        self.values: set[int] = set()
        self.skipped = 0
        for key, wkb, value in items:
            if wkb is None:
                self.skipped += 1
                continue
            geom = ogr.CreateGeometryFromWkb(wkb)
            if ogr.GT_Flatten(geom.GetGeometryType()) in _POINTS and buffer_radius > 0:
                geom = geom.Buffer(buffer_radius, 32)
            elif not geom.IsValid():
                geom = geom.MakeValid() if hasattr(geom, "MakeValid") else geom.Buffer(0)
            cls = _class_value(key, value)
            self.index.add(cls, geom)
            self.values.add(cls)

    def count(self) -> int:
        return self.index.count()

    def all(self) -> Iterable[tuple[int, ogr.Geometry]]:
        return self.index.all()

    def in_chip(self, gt: tuple[float, ...], width: int, height: int, min_ratio: float) -> list[ChipObject]:
        """The features' parts inside the chip whose geotransform is ``gt`` (a turned chip's is rotated)."""
        rect = chip_rectangle(gt, width, height)
        found = []
        for value, geom in self.index.touching(rect):
            part = geom.Intersection(rect)
            if part is None or part.IsEmpty():
                continue
            area = geom.GetArea()
            part_area = part.GetArea()
            if area <= 0 or part_area <= 0 or part_area < min_ratio * area * (1 - 1e-9):
                continue
            found.append(ChipObject(value, pixel_box(gt, part), part))
        return found


def _class_value(key: object, value: object) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputDataError(f"Feature {key} has class value {value!r}: CLASS_VALUE_FIELD must hold whole numbers "
                             "from 1 (0 is the background)") from None
    if not number.is_integer() or not 1 <= number <= 65535:
        raise InputDataError(f"Feature {key} has class value {value!r}: class values are whole numbers from 1 to "
                             "65535 (0 is the background)")
    return int(number)


chip_rectangle = window_rectangle


def _to_pixels(gt: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates to the (fractional) pixels of ``gt``, rotated geotransforms included."""
    det = gt[1] * gt[5] - gt[2] * gt[4]
    dx, dy = x - gt[0], y - gt[3]
    return (gt[5] * dx - gt[2] * dy) / det, (gt[1] * dy - gt[4] * dx) / det


def _vertices(geometry: ogr.Geometry) -> list[tuple[float, float]]:
    if geometry.GetGeometryCount():
        return [p for k in range(geometry.GetGeometryCount()) for p in _vertices(geometry.GetGeometryRef(k))]
    return [(p[0], p[1]) for p in (geometry.GetPoints() or [])]


def pixel_box(gt: tuple[float, ...], geometry: ogr.Geometry) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 of ``geometry`` in the pixels of ``gt``: the envelope of its vertices there."""
    points = np.array(_vertices(geometry), np.float64).reshape(-1, 2)
    px, py = _to_pixels(gt, points[:, 0], points[:, 1])
    return tuple(round(float(v), 6) + 0.0 for v in (px.min(), py.min(), px.max(), py.max()))  # type: ignore[return-value]


def pixel_rings(gt: tuple[float, ...], geometry: ogr.Geometry) -> list[list[tuple[float, float]]]:
    """The outer rings of a (multi)polygon in the pixels of ``gt`` (for COCO's segmentation)."""
    rings = []
    flat = ogr.GT_Flatten(geometry.GetGeometryType())
    parts = [geometry] if flat == ogr.wkbPolygon else [geometry.GetGeometryRef(i) for i in range(geometry.GetGeometryCount())]
    for part in parts:
        if ogr.GT_Flatten(part.GetGeometryType()) != ogr.wkbPolygon or part.GetGeometryCount() == 0:
            continue
        points = np.array([(p[0], p[1]) for p in part.GetGeometryRef(0).GetPoints()], np.float64)
        px, py = _to_pixels(gt, points[:, 0], points[:, 1])
        rings.append([(round(float(x), 6) + 0.0, round(float(y), 6) + 0.0) for x, y in zip(px, py)])
    return rings


def rasterize(objects: list[ChipObject], values: list[int], gt: tuple[float, ...], width: int, height: int,
              dtype: str = "uint16") -> np.ndarray:
    """A ``[height, width]`` array with ``values[i]`` burnt where ``objects[i]`` covers a pixel's centre."""
    return burn([o.geometry for o in objects], values, gt, width, height, dtype)

# SPDX-License-Identifier: GPL-2.0-or-later
"""The processing mask (``MASK``): polygons that say where a run reads, runs the model and writes.

Deepness calls it the "processed area from polygons", ArcGIS the ``mask`` environment.  A run with a mask
reads and runs only the tiles whose window touches a polygon (for an online layer the tiles outside are never
requested), writes NoData for every output pixel whose centre lies outside the polygons, and keeps only the
objects whose centre lies inside.  Pixels inside keep exactly the values of a run without the mask: a tile that
runs reads its whole window, the context around the polygons included.

:class:`ProcessingMask` is what the caller gives (WKB polygons and their CRS, any CRS); :meth:`ProcessingMask.on_grid`
turns it into a :class:`GridMask` in the processing grid's CRS, which block jobs use (picklable: WKB and the grid,
so a Dask worker rebuilds its own geometry).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import InputDataError
from .gdal_io import RasterGrid, same_crs

ogr.UseExceptions()
_POLYGONS = (ogr.wkbPolygon, ogr.wkbMultiPolygon)


def _srs(wkt: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


@dataclass
class ProcessingMask:
    """Polygons (WKB, in ``crs_wkt``) limiting a run; ``name`` is the layer's name, for messages."""

    wkbs: list[bytes]
    crs_wkt: str
    name: str = "MASK"

    def union_in(self, target_wkt: str) -> ogr.Geometry:
        """The polygons' union in ``target_wkt``; a clear error when there is no polygon at all."""
        parts = []
        for wkb in self.wkbs:
            if not wkb:
                continue
            geom = ogr.CreateGeometryFromWkb(wkb)
            if geom is None or geom.IsEmpty():
                continue
            flat = ogr.GT_Flatten(geom.GetGeometryType())
            if flat == ogr.wkbGeometryCollection:
                pieces = [geom.GetGeometryRef(i).Clone() for i in range(geom.GetGeometryCount())]
            else:
                pieces = [geom]
            parts += [p for p in pieces if ogr.GT_Flatten(p.GetGeometryType()) in _POLYGONS]
        if not parts:
            raise InputDataError(f"MASK '{self.name}' has no polygon: give a polygon layer with at least one "
                                 "feature, or leave MASK empty to process the whole extent")
        collection = ogr.Geometry(ogr.wkbMultiPolygon)
        for p in parts:
            p = p if p.IsValid() else p.MakeValid()
            for piece in ([p] if ogr.GT_Flatten(p.GetGeometryType()) == ogr.wkbPolygon else
                          [p.GetGeometryRef(i) for i in range(p.GetGeometryCount())]):
                if ogr.GT_Flatten(piece.GetGeometryType()) == ogr.wkbPolygon:
                    collection.AddGeometry(piece)
        union = collection.UnionCascaded()
        if self.crs_wkt and target_wkt and not same_crs(self.crs_wkt, target_wkt):
            union.AssignSpatialReference(_srs(self.crs_wkt))
            union.TransformTo(_srs(target_wkt))
        return union

    def bounds_in(self, target_wkt: str) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the polygons in ``target_wkt``."""
        xmin, xmax, ymin, ymax = self.union_in(target_wkt).GetEnvelope()
        return xmin, ymin, xmax, ymax

    def on_grid(self, grid: RasterGrid) -> GridMask:
        """The mask in the processing grid's CRS; an error when it misses the grid altogether."""
        union = self.union_in(grid.crs_wkt)
        mask = GridMask(union.ExportToIsoWkb(), grid, self.name)
        if not mask.touches(0, 0, grid.width, grid.height) or not union.GetArea() > 0:
            xmin, xmax, ymin, ymax = union.GetEnvelope()
            raise InputDataError(
                f"MASK '{self.name}' ({xmin:.3f}, {ymin:.3f}, {xmax:.3f}, {ymax:.3f} in the raster's CRS) does not "
                "overlap the processing extent: there is nothing to process")
        return mask


@dataclass
class GridMask:
    """The mask on one processing grid: which windows touch it, which pixels and points lie inside."""

    wkb: bytes
    grid: RasterGrid
    name: str = "MASK"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}  # OGR objects are rebuilt where the mask is unpickled
        return state

    @property
    def geometry(self) -> ogr.Geometry:
        geom = self._cache.get("geometry")
        if geom is None:
            geom = self._cache["geometry"] = ogr.CreateGeometryFromWkb(self.wkb)
            xmin, xmax, ymin, ymax = geom.GetEnvelope()
            self._cache["envelope"] = (xmin, ymin, xmax, ymax)
        return geom

    def _to_map(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gt = self.grid.geotransform
        return gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5]

    def touches(self, x: int, y: int, w: int, h: int) -> bool:
        """Whether the pixel window (x, y, w, h) of the grid (it may reach outside) meets a polygon."""
        geom = self.geometry
        xs, ys = self._to_map(np.array([x, x + w, x + w, x], float), np.array([y, y, y + h, y + h], float))
        exmin, eymin, exmax, eymax = self._cache["envelope"]
        if xs.max() < exmin or xs.min() > exmax or ys.max() < eymin or ys.min() > eymax:
            return False
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for px, py in zip(xs.tolist() + [xs[0]], ys.tolist() + [ys[0]]):
            ring.AddPoint_2D(px, py)
        window = ogr.Geometry(ogr.wkbPolygon)
        window.AddGeometry(ring)
        return bool(geom.Intersects(window))

    def pixels(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """[h, w] True where the pixel's centre lies inside a polygon (GDAL's rasterisation rule)."""
        if not self.touches(x, y, w, h):
            return np.zeros((h, w), bool)
        gt = self.grid.geotransform
        ds = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Byte)
        ds.SetGeoTransform((gt[0] + x * gt[1] + y * gt[2], gt[1], gt[2], gt[3] + x * gt[4] + y * gt[5], gt[4],
                            gt[5]))
        source = ogr.GetDriverByName("Memory").CreateDataSource("")
        layer = source.CreateLayer("mask", geom_type=ogr.wkbMultiPolygon)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(self.geometry)
        layer.CreateFeature(feature)
        gdal.RasterizeLayer(ds, [1], layer, burn_values=[1])
        return ds.GetRasterBand(1).ReadAsArray() > 0

    def contains_pixels(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Which points, given in grid pixel coordinates (fractions allowed), lie inside a polygon."""
        geom = self.geometry
        xs, ys = self._to_map(np.asarray(px, float), np.asarray(py, float))
        inside = np.zeros(len(xs), bool)
        point = ogr.Geometry(ogr.wkbPoint)
        for i, (mx, my) in enumerate(zip(xs.tolist(), ys.tolist())):
            point.SetPoint_2D(0, mx, my)
            inside[i] = geom.Contains(point)
        return inside

# SPDX-License-Identifier: GPL-2.0-or-later
"""Vector features on a raster grid: a spatial index of valued geometries, and their rasterisation.

What the training-data export (labels of each chip) and the pixel accuracy tool (reference polygons and
points, block by block) share.  The rule is GDAL's: a pixel takes a polygon's value when the pixel's centre is
inside the polygon, a point's when the point lies in the pixel; where features overlap, the later one (input
order) wins.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from osgeo import gdal, ogr

gdal.UseExceptions()
ogr.UseExceptions()

_GDAL_TYPES = {"uint8": gdal.GDT_Byte, "uint16": gdal.GDT_UInt16, "int32": gdal.GDT_Int32}


def window_rectangle(gt: tuple[float, ...], width: int, height: int) -> ogr.Geometry:
    """The map footprint of a ``width`` x ``height`` window whose geotransform is ``gt`` (rotated ones too)."""
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for j, i in ((0, 0), (width, 0), (width, height), (0, height), (0, 0)):
        ring.AddPoint_2D(gt[0] + j * gt[1] + i * gt[2], gt[3] + j * gt[4] + i * gt[5])
    rect = ogr.Geometry(ogr.wkbPolygon)
    rect.AddGeometry(ring)
    return rect


class FeatureIndex:
    """Valued geometries (one integer each) in one CRS, behind OGR's spatial index."""

    def __init__(self) -> None:
        self._ds = ogr.GetDriverByName("Memory").CreateDataSource("features")
        self.layer = self._ds.CreateLayer("features", geom_type=ogr.wkbUnknown)
        self.layer.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))

    def add(self, value: int, geometry: ogr.Geometry) -> None:
        feature = ogr.Feature(self.layer.GetLayerDefn())
        feature.SetField("v", int(value))
        feature.SetGeometry(geometry)
        self.layer.CreateFeature(feature)

    def count(self) -> int:
        return self.layer.GetFeatureCount()

    def all(self) -> Iterator[tuple[int, ogr.Geometry]]:
        self.layer.SetSpatialFilter(None)
        self.layer.ResetReading()
        for feature in self.layer:
            yield feature.GetField("v"), feature.GetGeometryRef().Clone()

    def touching(self, rect: ogr.Geometry) -> Iterator[tuple[int, ogr.Geometry]]:
        """The features whose envelope meets ``rect``'s, in input order."""
        minx, maxx, miny, maxy = rect.GetEnvelope()
        self.layer.SetSpatialFilterRect(minx, miny, maxx, maxy)
        self.layer.ResetReading()
        try:
            for feature in self.layer:
                yield feature.GetField("v"), feature.GetGeometryRef().Clone()
        finally:
            self.layer.SetSpatialFilter(None)


def rasterize(geometries: Sequence[ogr.Geometry], values: Sequence[int], gt: tuple[float, ...], width: int,
              height: int, dtype: str = "uint16", fill: int = 0) -> np.ndarray:
    """A ``[height, width]`` array, ``fill`` where no geometry burns its value (GDAL's rule, later wins)."""
    ds = gdal.GetDriverByName("MEM").Create("", width, height, 1, _GDAL_TYPES[dtype])
    ds.SetGeoTransform(tuple(float(v) for v in gt))
    band = ds.GetRasterBand(1)
    if fill:
        band.Fill(fill)
    if len(geometries):
        mem = ogr.GetDriverByName("Memory").CreateDataSource("burn")
        layer = mem.CreateLayer("burn", geom_type=ogr.wkbUnknown)
        layer.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))
        for geom, value in zip(geometries, values):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("v", int(value))
            feature.SetGeometry(geom)
            layer.CreateFeature(feature)
        gdal.RasterizeLayer(ds, [1], layer, options=["ATTRIBUTE=v"])
    return band.ReadAsArray()

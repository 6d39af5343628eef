# SPDX-License-Identifier: GPL-2.0-or-later
"""Chips and label rasters on disk, and the quarter turns that make rotated copies of them exactly.

Every chip keeps the raster's raw values (no normalisation, as ArcGIS exports).  Its place on the map
goes into the file where the format holds it (GeoTIFF) or into GDAL's ``.aux.xml`` (PNG, JPEG), and
always into a world file beside it (``.tfw``, ``.pgw``, ``.jgw``).  In PIXEL_SPACE the reference is the
input raster's pixel grid instead of the map: x is the column, y minus the row, and there is no CRS.
"""

from __future__ import annotations

import os

import numpy as np
from osgeo import gdal

from ...errors import OutputError

gdal.UseExceptions()

_NUMPY_TO_GDAL = {"uint8": gdal.GDT_Byte, "uint16": gdal.GDT_UInt16, "int16": gdal.GDT_Int16,
                  "uint32": gdal.GDT_UInt32, "int32": gdal.GDT_Int32, "float32": gdal.GDT_Float32,
                  "float64": gdal.GDT_Float64}
_OPTIONS = {"GTiff": ["COMPRESS=LZW"], "PNG": [], "JPEG": ["QUALITY=95"]}


def write_chip(path: str, data: np.ndarray, driver: str, gt: tuple[float, ...], crs_wkt: str,
               world_ext: str | None) -> None:
    """``data [bands, h, w]`` as ``path`` in ``driver``'s format, georeferenced by ``gt``/``crs_wkt``."""
    bands, height, width = data.shape
    gdal_type = _NUMPY_TO_GDAL.get(str(data.dtype))
    if gdal_type is None:
        data = data.astype("float32")
        gdal_type = gdal.GDT_Float32
    mem = gdal.GetDriverByName("MEM").Create("", width, height, bands, gdal_type)
    mem.SetGeoTransform(tuple(float(v) for v in gt))
    if crs_wkt:
        mem.SetProjection(crs_wkt)
    for b in range(bands):
        mem.GetRasterBand(b + 1).WriteArray(data[b])
    try:
        out = gdal.GetDriverByName(driver).CreateCopy(path, mem, options=_OPTIONS.get(driver, []))
        out.FlushCache()
        out = None
    except RuntimeError as exc:
        raise OutputError(f"Cannot write the chip '{path}': {exc}") from exc
    if world_ext:
        write_world_file(os.path.splitext(path)[0] + "." + world_ext, gt)


def write_world_file(path: str, gt: tuple[float, ...]) -> None:
    """ESRI world file: pixel sizes and rotations, then the centre of the top-left pixel."""
    cx = gt[0] + gt[1] / 2 + gt[2] / 2
    cy = gt[3] + gt[4] / 2 + gt[5] / 2
    with open(path, "w", encoding="ascii") as fh:
        fh.write("\n".join(repr(float(v)) for v in (gt[1], gt[4], gt[2], gt[5], cx, cy)) + "\n")


def turn_array(arr: np.ndarray) -> np.ndarray:
    """A quarter turn counter-clockwise of ``[..., h, w]``."""
    return np.rot90(arr, 1, axes=(-2, -1))


def turn_box(box: tuple[float, float, float, float], width: int) -> tuple[float, float, float, float]:
    """A box (x1, y1, x2, y2) of a chip ``width`` pixels wide after :func:`turn_array`."""
    x1, y1, x2, y2 = box
    return (y1, width - x2, y2, width - x1)


def turn_point(point: tuple[float, float], width: int) -> tuple[float, float]:
    x, y = point
    return (y, width - x)


def turn_transform(gt: tuple[float, ...], width: int) -> tuple[float, ...]:
    """The geotransform of the turned chip: each turned pixel keeps its place on the map."""
    return (gt[0] + width * gt[1], gt[2], -gt[1], gt[3] + width * gt[4], gt[5], -gt[4])

# SPDX-License-Identifier: GPL-2.0-or-later
"""Images as objects for Classify Objects: an image folder's files and each image's extent polygon."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osgeo import gdal, ogr

from ...errors import InputDataError
from ...raster.gdal_io import open_raster

gdal.UseExceptions()
ogr.UseExceptions()

#: Image files IMAGE_FOLDER looks at (any GDAL can read).
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".bmp", ".gif", ".vrt", ".webp")


@dataclass
class ImageInfo:
    """An image as one object: its extent polygon (in its CRS, or in pixels when not georeferenced)."""

    path: str
    name: str
    georeferenced: bool = False
    crs_wkt: str = ""
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    extent_wkb: bytes | None = None
    error: str | None = None


def image_info(path: str) -> ImageInfo:
    name = Path(path).name
    try:
        ds = open_raster(path)
    except InputDataError as exc:
        return ImageInfo(str(path), name, error=str(exc))
    try:
        gt = ds.GetGeoTransform(can_return_null=True)
        if gt is not None and (gt[2] != 0 or gt[4] != 0):
            return ImageInfo(str(path), name, error=f"Image '{name}' is rotated (sheared geotransform): warp it north-up")
        georef = gt is not None
        gt = gt or (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
        x0, y0 = gt[0], gt[3]
        x1, y1 = x0 + gt[1] * ds.RasterXSize, y0 + gt[5] * ds.RasterYSize
        bounds = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((bounds[0], bounds[1]), (bounds[2], bounds[1]), (bounds[2], bounds[3]), (bounds[0], bounds[3]),
                     (bounds[0], bounds[1])):
            ring.AddPoint_2D(x, y)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        return ImageInfo(str(path), name, georef, (ds.GetProjection() or "") if georef else "", bounds,
                         bytes(poly.ExportToWkb()))
    finally:
        ds = None


def list_images(folder: str) -> list[str]:
    """The image files directly inside ``folder`` (by extension), sorted by name."""
    p = Path(folder)
    if not p.is_dir():
        raise InputDataError(f"Image folder '{folder}' does not exist or is not a folder")
    files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputDataError(f"Image folder '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files

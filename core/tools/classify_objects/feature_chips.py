# SPDX-License-Identifier: GPL-2.0-or-later
"""Chips around features for Classify Objects: where they are, what they hold.

A chip is always cut on the raster's own pixel grid (its CRS and cell size); the
feature geometry must already be in the raster's CRS.  The rules, which the tool's
help repeats:

* **CropSizeFixed 1** (also the default when the model definition has no such key):
  a window of exactly ImageWidth x ImageHeight raster pixels centred on the centre of
  the feature's bounding box.  The first column is ``floor(cx - ImageWidth / 2 + 0.5)``
  where ``cx`` is the centre in pixel units (column 0 starts at the raster's left
  edge), and the same for rows: the chip's centre lies within half a pixel of the
  feature's centre, and an exact tie moves the chip half a pixel right/down.  Pixels
  are copied, never resampled.
* **CropSizeFixed 0**: the smallest window of whole raster pixels that contains the
  bounding box (every pixel the box touches), widened by ``padding`` pixels on each
  side, at least one pixel.  To keep the aspect ratio the shorter side is then
  widened (half on each side, the odd pixel to the right/bottom) until the window
  has the model's ImageWidth:ImageHeight ratio, with real raster context rather than
  black bars.  The window is resized to ImageWidth x ImageHeight, separately on each
  axis: shrinking uses area averaging (each chip pixel is the area-weighted mean of
  the raster pixels it covers), enlarging uses bilinear interpolation between pixel
  centres (edge pixels are repeated).  Windows over :data:`LARGE_WINDOW_PIXELS`
  pixels are read with GDAL's average resampling instead (using overviews when the
  raster has them), so that a huge feature never reads the raster at full resolution.
* **Outside and NoData**: pixels outside the raster are 0; NoData (masked) pixels
  are set to 0 before anything else, as ArcGIS does.  A feature that does not touch
  the raster's extent, or whose chip holds no valid pixel (inside the polygon when
  blackening), gets no chip and a note instead.
* **BlackenAroundFeature 1**: the feature's polygon is rasterised on the chip's
  final grid (GDAL's default rule: a pixel is inside when its centre is inside the
  polygon) and every pixel outside is set to 0 in all bands.  Points and lines have
  no inside: their chips are not masked (the pipeline logs this once per run); for a
  geometry collection only its polygonal parts count.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr

from ...errors import InputDataError, OutputError
from ...raster.gdal_io import RasterSource
from ...raster.resize import axis_matrix

gdal.UseExceptions()
ogr.UseExceptions()

#: Windows larger than this (in raster pixels) are read decimated by GDAL, not at full resolution.
LARGE_WINDOW_PIXELS = 64 * 1024 * 1024
#: Rows are read in strips of at most this many pixels when a window is resized.
STRIP_PIXELS = 4 * 1024 * 1024

_POLYGONAL = (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface, ogr.wkbPolyhedralSurface,
              ogr.wkbTIN, ogr.wkbTriangle)


@dataclass(frozen=True)
class ChipSpec:
    """How chips are cut: the model's input size and the .emd's crop rules."""

    width: int
    height: int
    crop_size_fixed: bool = True
    blacken: bool = False
    padding: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise InputDataError(f"Chip size {self.width}x{self.height} is not possible")
        if self.padding < 0:
            raise InputDataError(f"padding must be 0 or more, not {self.padding}")


@dataclass(frozen=True)
class Window:
    """A window of raster pixels: first column and row, width and height (may reach outside)."""

    col: int
    row: int
    width: int
    height: int


@dataclass
class Chip:
    """One feature's chip, or the reason it has none (``data`` is None and ``note`` says why)."""

    data: np.ndarray | None  # float32 [bands, height, width], NoData and outside zeroed, blackened
    window: Window | None  # the raster pixels the chip was cut from
    geotransform: tuple[float, float, float, float, float, float] | None  # of the chip's own grid
    note: str | None = None
    masked: bool = False  # BlackenAroundFeature was applied
    valid_fraction: float = 0.0  # share of chip pixels that hold valid data (after blackening)
    #: [height, width] bool: pixels that hold valid data (at least half of what they were resized from), not
    #: NoData, not past the raster, not blackened; a custom function's ``rasters_mask``
    valid: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------ geometry
def geometry_from_wkb(wkb: bytes | bytearray | None) -> ogr.Geometry | None:
    """OGR geometry from WKB (None, empty or unreadable -> None)."""
    if not wkb:
        return None
    try:
        geom = ogr.CreateGeometryFromWkb(bytes(wkb))
    except RuntimeError:
        return None
    if geom is None or geom.IsEmpty():
        return None
    return geom


def polygon_part(geom: ogr.Geometry) -> ogr.Geometry | None:
    """The polygonal part of a geometry (linearised), or None for points and lines."""
    flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat in _POLYGONAL:
        return geom.GetLinearGeometry() if geom.HasCurveGeometry() else geom
    if flat == ogr.wkbGeometryCollection:
        parts = ogr.Geometry(ogr.wkbMultiPolygon)
        for i in range(geom.GetGeometryCount()):
            sub = polygon_part(geom.GetGeometryRef(i))
            if sub is None:
                continue
            sub_flat = ogr.GT_Flatten(sub.GetGeometryType())
            if sub_flat == ogr.wkbPolygon:
                parts.AddGeometry(sub)
            else:
                for j in range(sub.GetGeometryCount()):
                    part = sub.GetGeometryRef(j)
                    if ogr.GT_Flatten(part.GetGeometryType()) == ogr.wkbPolygon:
                        parts.AddGeometry(part)
        return parts if parts.GetGeometryCount() else None
    return None


def is_polygonal(geom: ogr.Geometry) -> bool:
    return polygon_part(geom) is not None


def pixel_box(geotransform: tuple[float, ...], envelope: tuple[float, float, float, float]
              ) -> tuple[float, float, float, float]:
    """OGR envelope (xmin, xmax, ymin, ymax) -> (col_min, row_min, col_max, row_max) in fractional pixels."""
    x0, dx, _, y0, _, dy = geotransform
    xmin, xmax, ymin, ymax = envelope
    c_a, c_b = (xmin - x0) / dx, (xmax - x0) / dx
    r_a, r_b = (ymax - y0) / dy, (ymin - y0) / dy
    return min(c_a, c_b), min(r_a, r_b), max(c_a, c_b), max(r_a, r_b)


_EPS = 1e-7


def chip_window(geotransform: tuple[float, ...], envelope: tuple[float, float, float, float], spec: ChipSpec) -> Window:
    """The raster pixels a feature's chip is cut from (see the module text for the rules)."""
    c_min, r_min, c_max, r_max = pixel_box(geotransform, envelope)
    if spec.crop_size_fixed:
        cx, cy = (c_min + c_max) / 2.0, (r_min + r_max) / 2.0
        col = math.floor(cx - spec.width / 2.0 + 0.5 + _EPS)
        row = math.floor(cy - spec.height / 2.0 + 0.5 + _EPS)
        return Window(col, row, spec.width, spec.height)
    c0 = math.floor(c_min + _EPS) - spec.padding
    r0 = math.floor(r_min + _EPS) - spec.padding
    c1 = max(math.ceil(c_max - _EPS) + spec.padding, c0 + 1)
    r1 = max(math.ceil(r_max - _EPS) + spec.padding, r0 + 1)
    w, h = c1 - c0, r1 - r0
    # widen the short side to the model's aspect ratio (integer arithmetic: no rounding drift)
    if w * spec.height < h * spec.width:
        new_w = -(-h * spec.width // spec.height)
        c0 -= (new_w - w) // 2
        w = new_w
    elif w * spec.height > h * spec.width:
        new_h = -(-w * spec.height // spec.width)
        r0 -= (new_h - h) // 2
        h = new_h
    return Window(c0, r0, w, h)


def window_geotransform(geotransform: tuple[float, ...], window: Window, out_w: int, out_h: int
                        ) -> tuple[float, float, float, float, float, float]:
    """The geotransform of a chip of ``out_w x out_h`` pixels covering ``window``."""
    x0, dx, _, y0, _, dy = geotransform
    return (x0 + window.col * dx, dx * window.width / out_w, 0.0,
            y0 + window.row * dy, 0.0, dy * window.height / out_h)


# ------------------------------------------------------------------------------------------------ reading
def _read_resized(source: RasterSource, window: Window, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """(data [bands, out_h, out_w] with invalid pixels zeroed, valid fraction [out_h, out_w])."""
    if (window.width, window.height) == (out_w, out_h):
        data, valid = source.read(window.col, window.row, window.width, window.height, dtype="float32")
        if not valid.all():
            data[:, ~valid] = 0.0
        return data, valid.astype(np.float32)
    if window.width * window.height > LARGE_WINDOW_PIXELS and not source.warped and \
            source.col_off == 0 and source.row_off == 0:
        return _read_decimated(source, window, out_w, out_h)
    my = axis_matrix(window.height, out_h)
    mx = axis_matrix(window.width, out_w)
    nb = len(source.bands)
    cols = np.zeros((nb, window.height, out_w))
    vcols = np.zeros((window.height, out_w))
    strip = max(1, STRIP_PIXELS // max(1, window.width))
    for r in range(0, window.height, strip):
        h = min(strip, window.height - r)
        data, valid = source.read(window.col, window.row + r, window.width, h, dtype="float32")
        if not valid.all():
            data[:, ~valid] = 0.0
        cols[:, r:r + h] = data.astype(np.float64) @ mx.T
        vcols[r:r + h] = valid.astype(np.float64) @ mx.T
    data = (my @ cols).astype(np.float32)
    valid_frac = (my @ vcols).astype(np.float32)
    return data, valid_frac


def _read_decimated(source: RasterSource, window: Window, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """A huge window read by GDAL straight at (about) the chip size, averaging."""
    ds = source.ds
    grid = source.grid
    nb = len(source.bands)
    data = np.zeros((nb, out_h, out_w), np.float32)
    valid_frac = np.zeros((out_h, out_w), np.float32)
    sx_scale = window.width / out_w
    sy_scale = window.height / out_h
    gx0, gy0 = max(0, window.col), max(0, window.row)
    gx1, gy1 = min(grid.width, window.col + window.width), min(grid.height, window.row + window.height)
    if gx0 >= gx1 or gy0 >= gy1:
        return data, valid_frac
    # chip pixels whose footprint lies over the raster
    ox0 = int(math.floor((gx0 - window.col) / sx_scale))
    oy0 = int(math.floor((gy0 - window.row) / sy_scale))
    ox1 = int(math.ceil((gx1 - window.col) / sx_scale))
    oy1 = int(math.ceil((gy1 - window.row) / sy_scale))
    bw, bh = max(1, ox1 - ox0), max(1, oy1 - oy0)
    block = ds.ReadAsArray(gx0, gy0, gx1 - gx0, gy1 - gy0, buf_xsize=bw, buf_ysize=bh,
                           buf_type=gdal.GDT_Float32, band_list=[b + 1 for b in source.bands],
                           resample_alg=gdal.GRIORA_Average)
    block = np.asarray(block, np.float32).reshape(nb, bh, bw)
    if source.has_mask:
        m = ds.GetRasterBand(source.bands[0] + 1).GetMaskBand().ReadAsArray(
            gx0, gy0, gx1 - gx0, gy1 - gy0, buf_xsize=bw, buf_ysize=bh, resample_alg=gdal.GRIORA_Average)
        v = np.asarray(m, np.float32) / 255.0
    else:
        v = np.ones((bh, bw), np.float32)
    if np.issubdtype(block.dtype, np.floating):
        bad = np.isnan(block).any(axis=0)
        v[bad] = 0.0
        block[:, bad] = 0.0
    block[:, v <= 0] = 0.0
    data[:, oy0:oy0 + bh, ox0:ox0 + bw] = block[:, :out_h - oy0, :out_w - ox0]
    valid_frac[oy0:oy0 + bh, ox0:ox0 + bw] = v[:out_h - oy0, :out_w - ox0]
    return data, valid_frac


class Rasteriser:
    """Burns polygons on a chip-sized grid; reuses one in-memory raster and layer (one thread at a time)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._mem = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal.GDT_Byte)
        self._band = self._mem.GetRasterBand(1)
        self._vec = ogr.GetDriverByName("Memory").CreateDataSource("")
        self._layer = self._vec.CreateLayer("feature", geom_type=ogr.wkbUnknown)
        self._feature = ogr.Feature(self._layer.GetLayerDefn())

    def mask(self, geom: ogr.Geometry, geotransform: tuple[float, ...]) -> np.ndarray:
        """Pixels whose centre lies inside ``geom`` (GDAL's default rule) on the grid ``geotransform``."""
        self._mem.SetGeoTransform(tuple(geotransform))
        self._band.Fill(0)
        for old in list(self._layer):
            self._layer.DeleteFeature(old.GetFID())
        self._feature.SetGeometry(geom)
        self._feature.SetFID(-1)
        self._layer.CreateFeature(self._feature)
        gdal.PushErrorHandler("CPLQuietErrorHandler")  # "no spatial reference": both grids are the raster's CRS
        try:
            gdal.RasterizeLayer(self._mem, [1], self._layer, burn_values=[1])
        finally:
            gdal.PopErrorHandler()
        return self._band.ReadAsArray() > 0


def rasterise_mask(geom: ogr.Geometry, geotransform: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """Pixels of a ``width x height`` grid whose centre lies inside ``geom`` (GDAL's default rule)."""
    return Rasteriser(width, height).mask(geom, geotransform)


# ------------------------------------------------------------------------------------------------ the chip
def raster_extent_geometry(source: RasterSource) -> ogr.Geometry:
    xmin, ymin, xmax, ymax = source.grid.bounds
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)):
        ring.AddPoint_2D(x, y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


def _touches_raster(geom: ogr.Geometry, extent: ogr.Geometry) -> bool:
    try:
        return bool(geom.Intersects(extent))
    except RuntimeError:  # GEOS cannot handle this (invalid) geometry: fall back to its envelope
        xmin, xmax, ymin, ymax = geom.GetEnvelope()
        exmin, exmax, eymin, eymax = extent.GetEnvelope()
        return xmin <= exmax and xmax >= exmin and ymin <= eymax and ymax >= eymin


def extract_chip(source: RasterSource, geom: ogr.Geometry | None, spec: ChipSpec,
                 extent: ogr.Geometry | None = None, rasteriser: Rasteriser | None = None) -> Chip:
    """Cut the chip for one feature (geometry in the raster's CRS); see the module text.

    ``extent`` (the raster's extent polygon) and ``rasteriser`` may be passed to save rebuilding them per chip.
    """
    if geom is None or geom.IsEmpty():
        return Chip(None, None, None, "it has no geometry")
    extent = extent if extent is not None else raster_extent_geometry(source)
    if not _touches_raster(geom, extent):
        return Chip(None, None, None, "it lies entirely outside the raster")
    gt = source.grid.geotransform
    window = chip_window(gt, geom.GetEnvelope(), spec)
    data, valid = _read_resized(source, window, spec.width, spec.height)
    chip_gt = window_geotransform(gt, window, spec.width, spec.height)
    masked = False
    if spec.blacken:
        poly = polygon_part(geom)
        if poly is not None:
            if rasteriser is None or (rasteriser.width, rasteriser.height) != (spec.width, spec.height):
                rasteriser = Rasteriser(spec.width, spec.height)
            inside = rasteriser.mask(poly, chip_gt)
            data *= inside
            valid = valid * inside
            masked = True
    fraction = float(valid.mean())
    if fraction <= 0.0:
        where = "inside the feature" if masked else "in its chip"
        return Chip(None, window, chip_gt, f"the raster has only NoData {where}", masked)
    return Chip(data, window, chip_gt, None, masked, fraction, valid >= 0.5)


# ------------------------------------------------------------------------------------------------ debug PNGs
def chip_png_array(chip: np.ndarray, source_dtype: str, band_ranges: list[tuple[float, float]] | None = None
                   ) -> np.ndarray:
    """What a saved chip PNG holds: 1 band (grey) or the first 3 bands (RGB).

    8- and 16-bit unsigned rasters keep their values (rounded after resizing);
    other types are stretched linearly from each band's minimum..maximum to 0-255.
    """
    bands = chip[:1] if chip.shape[0] < 3 else chip[:3]
    if source_dtype in ("uint8", "uint16"):
        top = 255 if source_dtype == "uint8" else 65535
        return np.clip(np.rint(bands), 0, top).astype(source_dtype)
    out = np.zeros(bands.shape, np.uint8)
    for i in range(bands.shape[0]):
        lo, hi = band_ranges[i] if band_ranges else (float(bands[i].min()), float(bands[i].max()))
        span = hi - lo if hi > lo else 1.0
        out[i] = np.clip(np.rint((bands[i] - lo) / span * 255.0), 0, 255).astype(np.uint8)
    return out


def write_chip_png(path: str, chip: np.ndarray, source_dtype: str, geotransform: tuple[float, ...] | None = None,
                   band_ranges: list[tuple[float, float]] | None = None) -> None:
    """Save a chip as PNG (plus a world file placing it on the map when its grid is known)."""
    arr = chip_png_array(chip, source_dtype, band_ranges)
    gdal_type = gdal.GDT_Byte if arr.dtype == np.uint8 else gdal.GDT_UInt16
    mem = gdal.GetDriverByName("MEM").Create("", arr.shape[2], arr.shape[1], arr.shape[0], gdal_type)
    for i in range(arr.shape[0]):
        mem.GetRasterBand(i + 1).WriteArray(arr[i])
    options = []
    if geotransform is not None:
        mem.SetGeoTransform(tuple(geotransform))
        options.append("WORLDFILE=YES")
    try:
        gdal.GetDriverByName("PNG").CreateCopy(str(path), mem, 0, options)
    except RuntimeError as exc:
        raise OutputError(f"Cannot write chip '{path}': {exc}") from exc
    finally:
        mem = None
    aux = f"{path}.aux.xml"
    if os.path.exists(aux):
        try:
            os.remove(aux)
        except OSError:
            pass

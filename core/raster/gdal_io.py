# SPDX-License-Identifier: GPL-2.0-or-later
"""Windowed raster reading and class-raster writing with GDAL.

Nothing here reads a whole raster: :class:`RasterSource` serves windows (with
zero fill and an invalid mask outside the raster, or mirrored by
:func:`read_mirrored`), and :class:`BlockWriter` writes 2-D blocks in any order,
so memory depends on the block size, never on the raster's width or height.  GDAL's block cache is
bounded for the duration of a run by :func:`bounded_gdal_cache`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from ..errors import InputDataError, OutputError, plain_reason
from ..safe_output import check_output_folder
from .online_reads import http_options, is_online, read_with_retries, service_url, split_http_options

gdal.UseExceptions()

GDAL_TO_NUMPY = {
    gdal.GDT_Byte: "uint8", gdal.GDT_UInt16: "uint16", gdal.GDT_Int16: "int16", gdal.GDT_UInt32: "uint32",
    gdal.GDT_Int32: "int32", gdal.GDT_Float32: "float32", gdal.GDT_Float64: "float64",
}
NUMPY_TO_GDAL = {v: k for k, v in GDAL_TO_NUMPY.items()}
#: GDAL block cache for a run (bytes); GDAL's default grows to 5% of RAM on big rasters.  Windows are read
#: once and blocks written whole, so the cache only holds the tiles that straddle block edges.
RUN_CACHE_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def bounded_gdal_cache(limit: int = RUN_CACHE_BYTES) -> Iterator[None]:
    """Cap GDAL's block cache while a run reads and writes, then restore it."""
    previous = gdal.GetCacheMax()
    gdal.SetCacheMax(min(previous, limit) if previous > 0 else limit)
    try:
        yield
    finally:
        gdal.SetCacheMax(previous)


@dataclass
class RasterGrid:
    """A north-up pixel grid: geotransform, size and CRS (WKT)."""

    geotransform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    crs_wkt: str

    @property
    def cell_size(self) -> tuple[float, float]:
        return abs(self.geotransform[1]), abs(self.geotransform[5])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax)."""
        gt = self.geotransform
        x0, y0 = gt[0], gt[3]
        x1, y1 = x0 + gt[1] * self.width, y0 + gt[5] * self.height
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def same_as(self, other: RasterGrid) -> bool:
        return (self.width == other.width and self.height == other.height
                and all(math.isclose(a, b, rel_tol=0, abs_tol=1e-9 * max(1.0, abs(b)))
                        for a, b in zip(self.geotransform, other.geotransform))
                and same_crs(self.crs_wkt, other.crs_wkt))


def same_crs(a: str, b: str) -> bool:
    if not a or not b:
        return a == b
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def raster_name(path: str) -> str:
    """A raster's name for messages: the file's name, or an online layer's URL."""
    return service_url(str(path)) if is_online(path) else Path(path).name


def data_band_count(ds: gdal.Dataset, path: str) -> int:
    """The bands that hold data: an online layer's alpha band (GDAL adds it so that missing tiles are NoData) is
    its mask, not a band of the image."""
    count = ds.RasterCount
    if is_online(path) and count > 1 and \
            ds.GetRasterBand(count).GetColorInterpretation() == gdal.GCI_AlphaBand:
        return count - 1
    return count


def open_raster(path: str) -> gdal.Dataset:
    """``path`` opened with GDAL; an online layer's description with its HTTP options (credentials, headers) set
    for this thread only and never in the description GDAL holds (core.raster.online_reads)."""
    text, options = split_http_options(path)
    try:
        with http_options(options):
            ds = gdal.Open(text)
    except RuntimeError as exc:
        raise InputDataError(f"Cannot open raster '{raster_name(path)}': {exc}") from exc
    if ds is None:
        raise InputDataError(f"Cannot open raster '{raster_name(path)}'")
    if str(path).lower().endswith(".vrt"):
        _check_vrt_sources(ds, str(path))
    return ds


def _check_vrt_sources(ds: gdal.Dataset, path: str) -> None:
    """A VRT's sources exist and are not the VRT itself: said before the run, not as GDAL's error mid-run."""
    own = Path(path).resolve()
    for source in (ds.GetFileList() or [])[1:]:
        if source.startswith("/vsi"):
            continue  # remote or archived sources: GDAL reports them when read
        if Path(source).resolve() == own:
            raise InputDataError(f"Raster '{Path(path).name}' is a VRT that names itself as its source: it can never "
                                 "be read; point it at the rasters it should combine")
        if not Path(source).exists():
            raise InputDataError(f"Raster '{Path(path).name}' is a VRT whose source '{source}' does not exist: "
                                 "rebuild the VRT (Raster > Miscellaneous > Build Virtual Raster) or restore the file")


def mosaic_items(path: str) -> list[str]:
    """The rasters a VRT mosaic is made of (like a mosaic dataset's items); any other raster is its only item."""
    if not str(path).lower().endswith(".vrt"):
        return [str(path)]
    ds = open_raster(path)
    own = Path(path).resolve()
    files = [f for f in (ds.GetFileList() or []) if Path(f).resolve() != own]
    ds = None
    return files or [str(path)]


_MOSAIC_COUNTER = [0]


def build_mosaic(paths: list[str]) -> str:
    """A virtual mosaic (GDAL VRT in memory) of images sharing one CRS and band count; the reverse of
    :func:`mosaic_items`.  Free it with :func:`release_mosaic`."""
    infos = []
    for path in paths:
        ds = open_raster(path)
        infos.append((Path(path).name, ds.GetProjection() or "", ds.RasterCount,
                      ds.GetGeoTransform(can_return_null=True) is not None))
        ds = None
    missing = [n for n, _, _, g in infos if not g]
    if missing:
        raise InputDataError(f"Images {', '.join(missing)} are not georeferenced, so they cannot be mosaicked: process "
                             "the images separately")
    first = infos[0]
    ref = osr.SpatialReference()
    if first[1]:
        ref.ImportFromWkt(first[1])
    for name, wkt, count, _ in infos[1:]:
        if count != first[2]:
            raise InputDataError(f"Image '{name}' has {count} bands but '{first[0]}' has {first[2]}: a mosaic needs the "
                                 "same bands in every image")
        other = osr.SpatialReference()
        if wkt:
            other.ImportFromWkt(wkt)
        if bool(wkt) != bool(first[1]) or (wkt and not ref.IsSame(other)):
            raise InputDataError(f"Image '{name}' is not in the same CRS as '{first[0]}': a mosaic needs one CRS; "
                                 "reproject the images or process them separately")
    _MOSAIC_COUNTER[0] += 1
    target = f"/vsimem/dltools_mosaic_{_MOSAIC_COUNTER[0]}.vrt"
    try:
        vrt = gdal.BuildVRT(target, paths)
    except RuntimeError as exc:
        raise InputDataError(f"Cannot build a mosaic of the images: {exc}") from exc
    if vrt is None:
        raise InputDataError("Cannot build a mosaic of the images")
    vrt.FlushCache()
    vrt = None
    return target


def release_mosaic(path: str) -> None:
    """Free a mosaic :func:`build_mosaic` made (a file on disk is left alone)."""
    if path.startswith("/vsimem/"):
        gdal.Unlink(path)


def dataset_grid(ds: gdal.Dataset, allow_rotated: bool = False) -> RasterGrid:
    """The raster's grid; a rotated (sheared) geotransform only where the caller maps pixels through it."""
    gt = ds.GetGeoTransform(can_return_null=True)
    if gt is None:
        gt = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    if (gt[2] != 0 or gt[4] != 0) and not allow_rotated:
        raise InputDataError(f"Raster '{ds.GetDescription()}' is rotated (sheared geotransform): warp it north-up first")
    return RasterGrid(tuple(gt), ds.RasterXSize, ds.RasterYSize, ds.GetProjection() or "")


def grid_for_request(native: RasterGrid, extent: tuple[float, float, float, float] | None,
                     cell_size: float | None, crs_wkt: str | None = None) -> RasterGrid:
    """The processing grid: the native grid, cut to ``extent`` and/or resampled to ``cell_size``.

    With the native cell size the extent is snapped outwards to native pixel edges,
    so pixels are read unresampled; with another cell size the grid starts at the
    extent's top-left corner.  ``extent`` is (xmin, ymin, xmax, ymax) in ``crs_wkt``
    (default: the raster's CRS).
    """
    if cell_size is not None and not (math.isfinite(cell_size) and cell_size > 0):
        raise InputDataError(f"CELL_SIZE must be a finite number above 0, not {cell_size}")
    crs = crs_wkt or native.crs_wkt
    nx, ny = native.cell_size
    if extent is None:
        if cell_size is None and same_crs(crs, native.crs_wkt):
            return native
        extent = native.bounds
    xmin, ymin, xmax, ymax = extent
    rb = native.bounds
    if same_crs(crs, native.crs_wkt):
        ix0, iy0, ix1, iy1 = max(xmin, rb[0]), max(ymin, rb[1]), min(xmax, rb[2]), min(ymax, rb[3])
        if ix0 >= ix1 or iy0 >= iy1:
            raise InputDataError(
                f"The processing extent ({xmin:.3f}, {ymin:.3f}, {xmax:.3f}, {ymax:.3f}) does not overlap the raster "
                f"({rb[0]:.3f}, {rb[1]:.3f}, {rb[2]:.3f}, {rb[3]:.3f})")
        xmin, ymin, xmax, ymax = ix0, iy0, ix1, iy1
    if cell_size is None or (math.isclose(cell_size, nx) and math.isclose(cell_size, ny) and same_crs(crs, native.crs_wkt)):
        if not same_crs(crs, native.crs_wkt):
            raise InputDataError("A grid in another CRS needs a cell size")
        gt = native.geotransform
        # pixel positions of the extent's edges; sorted, so south-up rasters (positive row height) and east-to-west
        # ones cut the same window as north-up ones, keeping the raster's own orientation (as without an extent)
        cols = sorted(((xmin - gt[0]) / gt[1], (xmax - gt[0]) / gt[1]))
        rows = sorted(((ymax - gt[3]) / gt[5], (ymin - gt[3]) / gt[5]))
        c0, c1 = math.floor(cols[0] + 1e-9), math.ceil(cols[1] - 1e-9)
        r0, r1 = math.floor(rows[0] + 1e-9), math.ceil(rows[1] - 1e-9)
        return RasterGrid((gt[0] + c0 * gt[1], gt[1], 0.0, gt[3] + r0 * gt[5], 0.0, gt[5]), c1 - c0, r1 - r0,
                          native.crs_wkt)
    if cell_size <= 0:
        raise InputDataError(f"Cell size must be positive, not {cell_size}")
    width = max(1, int(math.ceil((xmax - xmin) / cell_size - 1e-9)))
    height = max(1, int(math.ceil((ymax - ymin) / cell_size - 1e-9)))
    if width * height > 4e10:
        raise InputDataError(f"A cell size of {cell_size} gives a {width} x {height} grid: far too large")
    return RasterGrid((xmin, cell_size, 0.0, ymax, 0.0, -cell_size), width, height, crs)


class RasterSource:
    """Reads windows of chosen bands on a processing grid, with a validity mask.

    If the processing grid is not the raster's own (other cell size, CRS or a
    non-aligned extent) the raster is read through a GDAL warped VRT with
    bilinear resampling (nearest for 8-bit paletted rasters); otherwise pixels are
    read directly.  Windows may reach outside the grid: those pixels are 0 and invalid.
    """

    def __init__(self, path: str, bands: Sequence[int], grid: RasterGrid | None = None,
                 resampling: str = "bilinear", allow_rotated: bool = False) -> None:
        self.path = str(path)
        self._init_args = (self.path, list(bands), grid, resampling, allow_rotated)
        self.ds = open_raster(self.path)
        self.online = is_online(self.path)
        self._http = split_http_options(self.path)[1]  # an online layer's credentials and headers, per read
        self.name = raster_name(self.path)
        self.native = dataset_grid(self.ds, allow_rotated)
        self.grid = grid or self.native
        if not self.native.crs_wkt and self.grid is not self.native and not self.grid.same_as(self.native):
            raise InputDataError(f"Raster '{self.name}' has no CRS, so it cannot be reprojected or resampled")
        self.bands = list(bands)
        if max(self.bands) >= self.ds.RasterCount:
            raise InputDataError(f"Raster '{self.name}' has {self.ds.RasterCount} bands; band {max(self.bands) + 1} "
                                 "was asked for")
        for b in self.bands:
            kind = self.ds.GetRasterBand(b + 1).DataType
            if gdal.DataTypeIsComplex(kind):
                raise InputDataError(
                    f"Raster '{self.name}' band {b + 1} holds complex numbers ({gdal.GetDataTypeName(kind)}): models "
                    "take real values, and casting would silently drop the imaginary part. Convert the band first "
                    "(its amplitude or phase, with the Raster Calculator)")
        self.dtype = GDAL_TO_NUMPY.get(self.ds.GetRasterBand(1).DataType, "float32")
        self.col_off = 0
        self.row_off = 0
        self.warped = False
        self._reader = self.ds
        self._alpha_band: int | None = None
        if not self.grid.same_as(self.native):
            offset = self._aligned_offset()
            if offset is not None:
                self.col_off, self.row_off = offset
            else:
                xmin, ymin, xmax, ymax = self.grid.bounds
                if self.ds.GetRasterBand(1).GetColorTable() is not None:
                    resampling = "near"
                # dstAlpha: grid cells the raster does not cover (past its edge, or NoData) get alpha 0, so they
                # are invalid (NoData in the output) rather than zeros taken for data. The alpha band is read
                # explicitly: GDAL takes it for the bands' mask only with 2 or 4 bands, and it replaces the
                # NoData value the warped bands would otherwise carry.
                options = gdal.WarpOptions(
                    format="VRT", outputBounds=(xmin, ymin, xmax, ymax), width=self.grid.width,
                    height=self.grid.height, dstSRS=self.grid.crs_wkt or None, resampleAlg=resampling,
                    dstAlpha=True, multithread=False)
                self._reader = gdal.Warp("", self.ds, options=options)
                self.warped = True
                last = self._reader.GetRasterBand(self._reader.RasterCount)
                if last.GetColorInterpretation() == gdal.GCI_AlphaBand:
                    self._alpha_band = self._reader.RasterCount
        self._mask_flags = [self._reader.GetRasterBand(b + 1).GetMaskFlags() for b in self.bands]
        # A pixel is valid where any of its bands is (see _read_valid): a band valid everywhere (the alpha band
        # itself when it is read as data, as in a 4-band 8-bit RGBA GeoTIFF) makes every pixel valid, and no mask
        # is read for each window (make bench io-8192: three mask reads per window, then all of them OR-ed with True)
        self.has_mask = self._alpha_band is not None or all(f != gdal.GMF_ALL_VALID for f in self._mask_flags)
        self.nodata = [self.ds.GetRasterBand(b + 1).GetNoDataValue() for b in self.bands]

    def __reduce__(self):
        """Pickled as what it reads (path, bands, grid): a cluster worker reopens the raster itself."""
        return (type(self), self._init_args)

    def _aligned_offset(self) -> tuple[int, int] | None:
        """If the grid is a sub-window of the native grid, its pixel offset."""
        g, n = self.grid.geotransform, self.native.geotransform
        if not same_crs(self.grid.crs_wkt, self.native.crs_wkt):
            return None
        if not (math.isclose(g[1], n[1], rel_tol=1e-9) and math.isclose(g[5], n[5], rel_tol=1e-9)):
            return None
        col = (g[0] - n[0]) / n[1]
        row = (g[3] - n[3]) / n[5]
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        return int(round(col)), int(round(row))

    def band_names(self) -> list[str]:
        names = []
        for i in range(self.ds.RasterCount):
            band = self.ds.GetRasterBand(i + 1)
            names.append(band.GetDescription() or gdal.GetColorInterpretationName(band.GetColorInterpretation()))
        return names

    def band_range(self, band: int) -> tuple[float, float]:
        """Minimum and maximum of raster band ``band`` (0-based), NoData excluded; GDAL caches it."""
        if self.online:  # statistics of a web service would download all of it
            raise InputDataError(f"The online layer {self.name} has no band statistics: the model needs band "
                                 f"{band + 1}'s minimum and maximum; give NormalizationStats in the model definition")
        b = self.ds.GetRasterBand(band + 1)
        try:
            lo, hi = b.ComputeRasterMinMax(False)
        except RuntimeError as exc:
            raise InputDataError(f"Raster '{self.name}' band {band + 1} has no valid pixels") from exc
        return float(lo), float(hi)

    def read(self, x: int, y: int, w: int, h: int, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Window (x, y, w, h) of the grid -> (data [bands, h, w], valid [h, w] bool)."""
        out_dtype = dtype or self.dtype
        data = np.zeros((len(self.bands), h, w), out_dtype)
        valid = np.zeros((h, w), bool)
        gx0, gy0 = max(0, x), max(0, y)
        gx1, gy1 = min(self.grid.width, x + w), min(self.grid.height, y + h)
        if gx0 >= gx1 or gy0 >= gy1:
            return data, valid
        rx, ry = gx0 + self.col_off, gy0 + self.row_off
        rw, rh = gx1 - gx0, gy1 - gy0
        # The aligned sub-window may itself reach past the raster (extent larger than data).
        sx0, sy0 = max(rx, 0), max(ry, 0)
        sx1, sy1 = min(rx + rw, self._reader.RasterXSize), min(ry + rh, self._reader.RasterYSize)
        if sx0 >= sx1 or sy0 >= sy1:
            return data, valid
        dx, dy = gx0 - x + (sx0 - rx), gy0 - y + (sy0 - ry)
        sw, sh = sx1 - sx0, sy1 - sy0
        buf_type = NUMPY_TO_GDAL.get(out_dtype, gdal.GDT_Float32)
        region = valid[dy:dy + sh, dx:dx + sw]

        def fetch() -> None:
            if self._reader is None:  # closed: the run ended (cancelled) while this read waited for a server
                raise InputDataError(f"Raster '{self.name}' was closed: the run has ended")
            block = self._reader.ReadAsArray(sx0, sy0, sw, sh, band_list=[b + 1 for b in self.bands],
                                             buf_type=buf_type)
            data[:, dy:dy + sh, dx:dx + sw] = block.reshape(len(self.bands), sh, sw)
            self._read_valid(region, sx0, sy0, sw, sh)

        if self.online:  # a web service: 5xx and time-outs are retried, failures name the tile's URL
            with http_options(self._http):
                read_with_retries(fetch, self.path)
        else:
            try:
                fetch()
            except RuntimeError as exc:  # GDAL's own error text (a VRT source gone meanwhile, a broken file)
                raise InputDataError(f"Cannot read raster '{self.name}' at pixels ({sx0}, {sy0}) to ({sx1}, {sy1}): "
                                     f"{plain_reason(exc)}") from exc
        if np.issubdtype(data.dtype, np.floating):
            nan = np.isnan(data[:, dy:dy + sh, dx:dx + sw]).any(axis=0)
            if nan.any():
                region &= ~nan
        return data, valid

    def _read_valid(self, region: np.ndarray, sx0: int, sy0: int, sw: int, sh: int) -> None:
        """Fill ``region`` with the validity of the reader's window (alpha, GDAL masks, or all valid)."""
        if self._alpha_band is not None:
            region[...] = self._reader.GetRasterBand(self._alpha_band).ReadAsArray(sx0, sy0, sw, sh) > 0
        elif self.has_mask:
            if all(f & gdal.GMF_PER_DATASET for f in self._mask_flags):
                m = self._reader.GetRasterBand(self.bands[0] + 1).GetMaskBand().ReadAsArray(sx0, sy0, sw, sh)
                region[...] = m > 0
            else:
                for b, flags in zip(self.bands, self._mask_flags):
                    if flags == gdal.GMF_ALL_VALID:
                        region[...] = True
                        break
                    m = self._reader.GetRasterBand(b + 1).GetMaskBand().ReadAsArray(sx0, sy0, sw, sh)
                    region |= m > 0
        else:
            region[...] = True

    def close(self) -> None:
        self._reader = None
        self.ds = None


def smallest_type(values: Sequence[int]) -> tuple[str, int]:
    """The smallest GDAL-friendly integer type holding ``values`` plus a NoData value that is not one of them."""
    used = set(int(v) for v in values) or {0}
    lo, hi = min(used), max(used)
    for dtype, (tmin, tmax) in (("uint8", (0, 255)), ("uint16", (0, 65535)), ("int16", (-32768, 32767)),
                                ("uint32", (0, 2**32 - 1)), ("int32", (-2**31, 2**31 - 1))):
        if lo < tmin or hi > tmax:
            continue
        for candidate in (tmax, tmin, *range(tmax - 1, tmax - 1000, -1)):
            if candidate not in used:
                return dtype, candidate
    raise OutputError("Class values do not fit a 32-bit integer raster")


def remove_raster(path: str | os.PathLike[str]) -> None:
    """Delete a raster and its side files (.aux.xml, .ovr, .qml, .msk)."""
    p = Path(path)
    for candidate in (p, Path(f"{p}.aux.xml"), Path(f"{p}.ovr"), Path(f"{p}.msk"), p.with_suffix(".qml")):
        with contextlib.suppress(OSError):
            candidate.unlink()


def reflect_indices(start: int, count: int, size: int) -> np.ndarray:
    """Grid indices ``start..start+count-1`` mirrored into ``0..size-1`` (reflection about the edge pixels,
    repeated as often as needed: ``numpy.pad(mode="reflect")``)."""
    idx = np.arange(start, start + count)
    if size == 1:
        return np.zeros(count, np.int64)
    period = 2 * (size - 1)
    m = np.mod(idx, period)
    return np.where(m >= size, period - m, m)


def read_mirrored(source, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """``source.read`` of a window that may reach outside ``source.grid``, the outside filled by mirroring.

    Only the bounding box of the needed grid pixels is read; pixels outside take the value and the validity of
    the pixel they mirror.  ``source`` is anything with ``grid`` and ``read(x, y, w, h)``.
    """
    gw, gh = source.grid.width, source.grid.height
    if x >= 0 and y >= 0 and x + w <= gw and y + h <= gh:
        return source.read(x, y, w, h)
    ix = reflect_indices(x, w, gw)
    iy = reflect_indices(y, h, gh)
    x0, y0 = int(ix.min()), int(iy.min())
    data, valid = source.read(x0, y0, int(ix.max()) + 1 - x0, int(iy.max()) + 1 - y0)
    data = np.take(np.take(data, iy - y0, axis=1), ix - x0, axis=2)
    valid = np.take(np.take(valid, iy - y0, axis=0), ix - x0, axis=1)
    return data, valid


def compression_options(dtype: np.dtype) -> list[str]:
    """GeoTIFF creation options for an output of ``dtype``: DEFLATE (every GIS reads it), on two threads.

    Class rasters (integers) get no predictor and DEFLATE level 1.  Why, measured by ``make bench compress-8192``
    and on the Sentinel-2 reference mask tiled to 8192 x 8192 (one thread, 2-core machine): level 6 with the
    horizontal predictor took 3.6-4.6 s and 2.9-4.0 MB; without the predictor 3.8-4.6 s and 2.5-3.3 MB (a class
    map's neighbouring differences compress worse than its values); level 1 without it 0.8-1.0 s and 3.1-4.7 MB.
    Compressing at level 6 cost as much CPU as all the rest of an I/O-bound run; level 1 gives that back for
    files still 14-22 times smaller than raw.  ZSTD level 1 is faster still (0.4-0.5 s) but older GIS software
    cannot read it; LZW is slower than DEFLATE level 1 and no smaller.  Floating point (probabilities, regression)
    keeps the floating-point predictor at the default level (not measured here).
    """
    if np.dtype(dtype).kind == "f":
        return ["COMPRESS=DEFLATE", "PREDICTOR=3", "NUM_THREADS=2"]
    return ["COMPRESS=DEFLATE", "ZLEVEL=1", "NUM_THREADS=2"]


class BlockWriter:
    """Writes a tiled, compressed GeoTIFF block by block, the blocks in any order.

    GDAL keeps a 256 x 256 tile that a block fills only partly in its (bounded)
    cache until the neighbouring block completes it; every pixel must be written
    exactly once before :meth:`close`.
    """

    BLOCK = 256

    def __init__(self, path: str | os.PathLike[str], grid: RasterGrid, bands: int, dtype: str,
                 nodata: float | None = None, band_names: Sequence[str] | None = None) -> None:
        self.path = str(path)
        self.grid = grid
        self.dtype = np.dtype(dtype)
        check_output_folder(self.path)
        options = ["TILED=YES", f"BLOCKXSIZE={self.BLOCK}", f"BLOCKYSIZE={self.BLOCK}", "BIGTIFF=IF_SAFER",
                   *compression_options(self.dtype)]
        try:
            self.ds = gdal.GetDriverByName("GTiff").Create(self.path, grid.width, grid.height, bands,
                                                           NUMPY_TO_GDAL[self.dtype.name], options)
        except RuntimeError as exc:
            raise OutputError(f"Cannot create '{self.path}': {exc}") from exc
        self.ds.SetGeoTransform(grid.geotransform)
        if grid.crs_wkt:
            self.ds.SetProjection(grid.crs_wkt)
        for i in range(bands):
            band = self.ds.GetRasterBand(i + 1)
            if nodata is not None:
                band.SetNoDataValue(float(nodata))
            if band_names and i < len(band_names):
                band.SetDescription(str(band_names[i]))
        self.bands = bands
        self.written = 0

    def write_block(self, x: int, y: int, data: np.ndarray) -> None:
        """Write ``data`` ([bands, h, w] or [h, w]) with its top-left pixel at (x, y)."""
        if data.ndim == 2:
            data = data[None]
        data = data.astype(self.dtype, copy=False)
        try:
            for i in range(self.bands):
                self.ds.GetRasterBand(i + 1).WriteArray(data[i], x, y)
        except RuntimeError as exc:  # GDAL: disk full, file removed, quota...
            raise OutputError(f"Cannot write '{self.path}': {exc}") from exc
        self.written += data.shape[1] * data.shape[2]

    def close(self) -> None:
        """Flush and close the file."""
        if self.written != self.grid.width * self.grid.height:
            raise OutputError(f"Internal error: wrote {self.written} of {self.grid.width * self.grid.height} "
                              f"pixels to '{self.path}'")
        try:
            self.ds.FlushCache()
        except RuntimeError as exc:
            raise OutputError(f"Cannot write '{self.path}': {exc}") from exc
        self.ds = None

    def abort(self) -> None:
        """Close and delete the partial file."""
        self.ds = None
        remove_raster(self.path)

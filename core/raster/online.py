# SPDX-License-Identifier: GPL-2.0-or-later
"""Online layers (XYZ tiles, WMS, WMTS, ArcGIS REST) as GDAL descriptions the engine reads like any raster.

A QGIS layer of the ``wms`` provider (XYZ, WMS, WMTS) or the ``arcgismapserver`` provider has a source string
(:func:`parse_layer_uri` reads it, no QGIS needed) but no cell size and no edge.  :func:`plan_online_raster`
chooses both for a run: the extent is the request's (or the mask's), the cell size ``CELL_SIZE``, else the
model's (Esri ``MinCellSize``, Deepness ``resolution``), else the run is refused.  It then writes the GDAL
description (GDAL's WMS driver XML with its TMS, WMS or AGS service, or the WMTS driver's XML) at the zoom level
or request size that serves the cell size, with 404/204 tiles as empty (NoData) blocks, a bounded number of
parallel requests, a time-out, a User-Agent naming the plugin and GDAL's tile cache folder (a re-run fetches
nothing).  The description is a string: it pickles to Dask workers, which fetch their own blocks.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote
from xml.sax.saxutils import escape

import numpy as np
from osgeo import gdal, osr

from ..errors import InputDataError
from ..model.definition import ModelDefinition
from ..progress import Progress
from .gdal_io import open_raster, same_crs
from .online_reads import with_http_options
from .request import RasterRequest

#: Web Mercator's half width in metres, and the pixel size of XYZ zoom 0 (256-pixel tiles)
WEB_MERCATOR_HALF = 20037508.342789244
ZOOM0_RESOLUTION = 2 * WEB_MERCATOR_HALF / 256
USER_AGENT = "Deep Learning Tools for QGIS (dltools plugin; GDAL WMS driver)"
#: parallel requests per read (GDAL's MaxConnections) and seconds before a request counts as failed
MAX_CONNECTIONS = 4
#: a cell size this close (relative) to a zoom level's pixel size is that pixel size (a dialog shows 6 decimals)
SNAP_TOLERANCE = 1e-5
DEFAULT_TIMEOUT = 30
_WEB_MERCATOR_CODES = ("3857", "900913", "102100", "102113", "3785")


@dataclass
class OnlineLayer:
    """What a QGIS online layer's source says, as plain values."""

    service: str  # "xyz", "wms", "wmts" or "arcgis"
    url: str
    name: str = ""
    layers: str = ""
    styles: str = ""
    image_format: str = "image/png"
    crs: str = "EPSG:3857"
    tile_matrix_set: str = ""
    zmin: int = 0
    zmax: int = 22
    username: str = ""
    password: str = ""
    referer: str = ""
    #: further HTTP headers of the layer's connection (QGIS's ``http-header:NAME`` keys)
    headers: dict[str, str] = field(default_factory=dict)
    #: a QGIS authentication configuration id, resolved into ``username``/``password`` by the algorithm layer
    #: (only QGIS can read its authentication database)
    authcfg: str = ""

    def __repr__(self) -> str:  # never the password or header values, wherever a layer is printed
        return f"OnlineLayer({self.service}, {self.url!r}, name={self.name!r})"


def _split_wms_uri(uri: str) -> dict[str, str]:
    """``key=value&key=value`` with percent-encoded values (QgsDataSourceUri's encoded form), first value wins
    except ``layers``/``styles``, which repeat in a WMS source and are joined with commas."""
    values: dict[str, str] = {}
    for part in uri.split("&"):
        if "=" not in part:
            continue
        key, value = part.split("=", 1)
        key, value = unquote(key), unquote(value)
        if key in ("layers", "styles") and key in values:
            values[key] += "," + value
        else:
            values.setdefault(key, value)
    return values


def _headers(values: dict[str, str]) -> dict[str, str]:
    """The ``http-header:NAME`` keys of a source (the referer has its own place)."""
    prefix = "http-header:"
    return {k[len(prefix):]: v for k, v in values.items()
            if k.startswith(prefix) and k[len(prefix):].lower() != "referer"}


def _split_arcgis_uri(uri: str) -> dict[str, str]:
    """``key='value' key='value'`` (QgsDataSourceUri's plain form, the ArcGIS REST providers')."""
    values: dict[str, str] = {}
    for key, _, value in (p.partition("=") for p in _quoted_parts(uri)):
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _quoted_parts(text: str) -> list[str]:
    parts, current, quote = [], "", ""
    for ch in text:
        if ch in "'\"" and (not quote or quote == ch):
            quote = "" if quote else ch
        if ch == " " and not quote:
            if current:
                parts.append(current)
            current = ""
        else:
            current += ch
    return parts + ([current] if current else [])


def parse_layer_uri(uri: str, provider: str = "wms", name: str = "") -> OnlineLayer:
    """An online layer from its QGIS provider and source string; a clear error for what GDAL cannot read."""
    if provider in ("arcgismapserver", "arcgisimageserver") or (provider == "wms" and "url='" in uri):
        v = _split_arcgis_uri(uri)
        if not v.get("url"):
            raise InputDataError(f"The ArcGIS REST layer '{name or uri}' has no url")
        return OnlineLayer("arcgis", v["url"].rstrip("/"), name, layers=v.get("layer", ""),
                           image_format=v.get("format", "PNG32"), crs=v.get("crs", "EPSG:3857"),
                           username=v.get("username", ""), password=v.get("password", ""),
                           referer=v.get("referer", "") or v.get("http-header:referer", ""), headers=_headers(v),
                           authcfg=v.get("authcfg", ""))
    if provider != "wms":
        raise InputDataError(f"Layer '{name or uri}' comes from the '{provider}' provider, which these tools cannot "
                             "read online: save it as a GeoTIFF first")
    v = _split_wms_uri(uri)
    url = v.get("url", "")
    if not url:
        raise InputDataError(f"The online layer '{name or uri}' has no url")
    common = {"name": name, "username": v.get("username", ""), "password": v.get("password", ""),
              "referer": v.get("referer", "") or v.get("http-header:referer", ""), "headers": _headers(v),
              "authcfg": v.get("authcfg", "")}
    if v.get("type") == "xyz":
        return OnlineLayer("xyz", url, zmin=int(v.get("zmin") or 0), zmax=int(v.get("zmax") or 22), **common)
    service = "wmts" if v.get("tileMatrixSet") else "wms"
    return OnlineLayer(service, url, layers=v.get("layers", ""), styles=v.get("styles", ""),
                       image_format=v.get("format", "image/png"), crs=v.get("crs", "EPSG:3857"),
                       tile_matrix_set=v.get("tileMatrixSet", ""), **common)


def looks_like_online_uri(text: str) -> bool:
    """Whether a parameter's text is an online layer's source (with or without a ``wms://`` prefix)."""
    t = text.strip()
    t = t[len("wms://"):] if t.startswith("wms://") else t
    return t.startswith(("type=xyz", "url=", "crs=", "contextualWMSLegend=", "format=", "layers=", "tileMatrixSet="))


# ------------------------------------------------------------------ resolution
def _srs(definition: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.SetFromUserInput(definition)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def is_web_mercator(crs: str) -> bool:
    srs = _srs(crs)
    code = srs.GetAuthorityCode(None) or ""
    return code in _WEB_MERCATOR_CODES or "Pseudo-Mercator" in (srs.GetName() or "")


def _centre_latitude(extent: tuple[float, float, float, float], crs: str) -> float:
    tr = osr.CoordinateTransformation(_srs(crs), _srs("EPSG:4326"))
    return tr.TransformPoint((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2)[1]


def model_ground_resolution(md: ModelDefinition) -> tuple[float, str] | None:
    """The model's own cell size as (metres on the ground or Web Mercator units, where it was read), or None."""
    cell = md.min_cell_size or md.max_cell_size
    if cell and isinstance(cell.get("x"), (int, float)) and cell["x"] > 0:
        sr = cell.get("spatialReference") or {}
        wkid = str(sr.get("latestWkid") or sr.get("wkid") or "")
        where = "MinCellSize" if md.min_cell_size else "MaxCellSize"
        return float(cell["x"]), (f"{where} (EPSG:{wkid})" if wkid else where)
    if md.resolution_cm:
        return md.resolution_cm / 100.0, "resolution (Deepness, cm per pixel)"
    return None


def choose_cell_size(layer_crs: str, extent: tuple[float, float, float, float], md: ModelDefinition,
                     cell_size: float | None, progress: Progress) -> float:
    """CELL_SIZE (in the layer's CRS units) or the model's resolution converted to them, else a clear refusal."""
    if cell_size:
        return cell_size
    found = model_ground_resolution(md)
    if found is None:
        raise InputDataError("An online layer has no cell size of its own and the model states none (MinCellSize, "
                             "resolution): give CELL_SIZE, in the layer's CRS units (metres of Web Mercator for "
                             "XYZ tiles)")
    value, where = found
    stated_in_mercator = where.endswith(tuple(f"EPSG:{c})" for c in _WEB_MERCATOR_CODES))
    srs = _srs(layer_crs)
    if srs.IsGeographic():
        raise InputDataError(f"The model states its cell size in metres ({where}: {value:g}) but the layer's CRS "
                             f"{layer_crs} is in degrees: give CELL_SIZE in degrees")
    if is_web_mercator(layer_crs) and not stated_in_mercator:
        lat = _centre_latitude(extent, layer_crs)
        converted = value / math.cos(math.radians(lat))
        progress.info(f"Cell size from the model's {where}: {value:g} m on the ground is {converted:.6g} Web Mercator "
                      f"units at latitude {lat:.2f} (1 / cos(latitude))")
        return converted
    progress.info(f"Cell size from the model's {where}: {value:g}")
    return value


def choose_zoom(cell_size: float, zmin: int, zmax: int, tile_size: int = 256,
                zoom0: float = ZOOM0_RESOLUTION) -> int:
    """The coarsest zoom level whose pixels are no larger than ``cell_size`` (so no detail is invented),
    within the layer's ``zmin``..``zmax``; a cell size within :data:`SNAP_TOLERANCE` of a level's pixels is it."""
    ratio = zoom0 * 256 / tile_size / cell_size
    z = math.ceil(math.log2(ratio) - SNAP_TOLERANCE) if ratio > 0 else 0
    return int(min(max(z, zmin), zmax))


# ------------------------------------------------------------------ descriptions
def tile_cache_dir() -> Path:
    """GDAL WMS's tile cache: ``$DLTOOLS_CACHE_DIR/tiles``, else the user's cache folder."""
    base = os.environ.get("DLTOOLS_CACHE_DIR")
    if base:
        return Path(base) / "tiles"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dltools" / "tiles"


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def http_request_options(layer: OnlineLayer) -> dict[str, str]:
    """GDAL configuration options for the layer's requests: basic authentication (``GDAL_HTTP_USERPWD``) and its
    custom headers (``GDAL_HTTP_HEADERS``, GDAL >= 3.6); a clear refusal for what cannot be sent."""
    what = f"The online layer '{layer.name or layer.url}'"
    if layer.authcfg:
        raise InputDataError(f"{what} uses the QGIS authentication configuration {layer.authcfg}, which only QGIS "
                             "can read: run the tool from QGIS (or qgis_process), or give a user name and password")
    options: dict[str, str] = {}
    if layer.username or layer.password:
        options["GDAL_HTTP_USERPWD"] = f"{layer.username}:{layer.password}"
        options["GDAL_HTTP_AUTH"] = "BASIC"
    for name, value in layer.headers.items():
        if not _TOKEN.fullmatch(name) or any(c in value for c in '"\\\r\n'):
            raise InputDataError(f"{what} has the HTTP header '{name}', whose name or value GDAL cannot send (a "
                                 "quote, backslash or line break): change it in the layer's connection")
    if layer.headers:
        if int(gdal.VersionInfo()) < 3060000:
            raise InputDataError(f"{what} sends the HTTP header(s) {', '.join(sorted(layer.headers))}, which needs "
                                 f"GDAL 3.6 or later (this is {gdal.__version__}); save the layer as a GeoTIFF first")
        options["GDAL_HTTP_HEADERS"] = ",".join(f'"{k}: {v}"' for k, v in layer.headers.items())
    return options


def _network_elements(layer: OnlineLayer, cache: Path, timeout: int) -> str:
    """The description's public network settings (credentials and headers travel apart: :func:`_described`)."""
    parts = [f"<MaxConnections>{MAX_CONNECTIONS}</MaxConnections>", f"<Timeout>{int(timeout)}</Timeout>",
             f"<UserAgent>{escape(USER_AGENT)}</UserAgent>", "<ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>",
             f"<Cache><Path>{escape(str(cache))}</Path></Cache>"]
    if layer.referer:
        parts.append(f"<Referer>{escape(layer.referer)}</Referer>")
    return "".join(parts)


def _described(layer: OnlineLayer, xml: str) -> str:
    """``xml`` carrying the layer's credentials and headers for GDAL, outside what GDAL keeps and reports."""
    return with_http_options(xml, http_request_options(layer))


def xyz_description(layer: OnlineLayer, zoom: int, cache: Path, timeout: int = DEFAULT_TIMEOUT) -> str:
    """GDAL WMS (TMS service) XML of an XYZ layer, its full resolution at ``zoom``."""
    url = layer.url.replace("{z}", "${z}").replace("{x}", "${x}").replace("{y}", "${y}")
    if "{-y}" in url:
        url, origin = url.replace("{-y}", "${y}"), "bottom"
    else:
        origin = "top"
    h = repr(WEB_MERCATOR_HALF)
    xml = (f'<GDAL_WMS><Service name="TMS"><ServerUrl>{escape(url)}</ServerUrl></Service>'
            f"<DataWindow><UpperLeftX>-{h}</UpperLeftX><UpperLeftY>{h}</UpperLeftY><LowerRightX>{h}</LowerRightX>"
            f"<LowerRightY>-{h}</LowerRightY><TileLevel>{zoom}</TileLevel><TileCountX>1</TileCountX>"
            f"<TileCountY>1</TileCountY><YOrigin>{origin}</YOrigin></DataWindow>"
            "<Projection>EPSG:3857</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY>"
            f"<BandsCount>4</BandsCount>{_network_elements(layer, cache, timeout)}</GDAL_WMS>")
    return _described(layer, xml)


def window_description(layer: OnlineLayer, extent: tuple[float, float, float, float], width: int, height: int,
                       cache: Path, timeout: int = DEFAULT_TIMEOUT) -> str:
    """GDAL WMS XML of a WMS or ArcGIS REST layer over ``extent`` (in ``layer.crs``) at ``width`` x ``height``:
    GetMap / export requests of 512 x 512 pixels."""
    xmin, ymin, xmax, ymax = extent
    if layer.service == "arcgis":
        code = layer.crs.split(":")[-1]
        fmt = layer.image_format.lower().replace("image/", "") or "png32"
        # GDAL asks a MapServer's /export; an ImageServer answers the same request at /exportImage
        url = layer.url + "/exportImage?" if layer.url.endswith("/ImageServer") else layer.url
        service = (f'<Service name="AGS"><ServerUrl>{escape(url)}</ServerUrl><BBoxOrder>xyXY</BBoxOrder>'
                   f"<SRS>{escape(code)}</SRS><ImageFormat>{escape(fmt)}</ImageFormat><Transparent>TRUE</Transparent>"
                   + (f"<Layers>show:{escape(layer.layers)}</Layers>" if layer.layers else "") + "</Service>")
    else:
        base = layer.url if layer.url.endswith(("?", "&")) else layer.url + ("&" if "?" in layer.url else "?")
        service = (f'<Service name="WMS"><Version>1.1.1</Version><ServerUrl>{escape(base)}</ServerUrl>'
                   f"<SRS>{escape(layer.crs)}</SRS><ImageFormat>{escape(layer.image_format)}</ImageFormat>"
                   f"<Transparent>TRUE</Transparent><Layers>{escape(layer.layers)}</Layers>"
                   f"<Styles>{escape(layer.styles)}</Styles></Service>")
    xml = (f"<GDAL_WMS>{service}<DataWindow><UpperLeftX>{xmin!r}</UpperLeftX><UpperLeftY>{ymax!r}</UpperLeftY>"
            f"<LowerRightX>{xmax!r}</LowerRightX><LowerRightY>{ymin!r}</LowerRightY><SizeX>{width}</SizeX>"
            f"<SizeY>{height}</SizeY></DataWindow><Projection>{escape(layer.crs)}</Projection>"
            "<BlockSizeX>512</BlockSizeX><BlockSizeY>512</BlockSizeY><BandsCount>4</BandsCount>"
            f"{_network_elements(layer, cache, timeout)}</GDAL_WMS>")
    return _described(layer, xml)


def wmts_description(layer: OnlineLayer, zoom_level: int | None, cache: Path, timeout: int = DEFAULT_TIMEOUT) -> str:
    """GDAL WMTS XML of a WMTS layer, its full resolution the tile matrix ``zoom_level`` (index; None: finest)."""
    url = layer.url
    if "request=getcapabilities" not in url.lower() and not url.lower().endswith(".xml"):
        url += ("&" if "?" in url else "?") + "SERVICE=WMTS&REQUEST=GetCapabilities"
    xml = (f"<GDAL_WMTS><GetCapabilitiesUrl>{escape(url)}</GetCapabilitiesUrl><Layer>{escape(layer.layers)}</Layer>"
            + (f"<Style>{escape(layer.styles)}</Style>" if layer.styles else "")
            + f"<TileMatrixSet>{escape(layer.tile_matrix_set)}</TileMatrixSet>"
            + (f"<ZoomLevel>{zoom_level}</ZoomLevel>" if zoom_level is not None else "")
            + f"<BandsCount>4</BandsCount>{_network_elements(layer, cache, timeout)}</GDAL_WMTS>")
    return _described(layer, xml)


# ------------------------------------------------------------------ the plan of a run
def _extent_in(request: RasterRequest, target: str) -> tuple[float, float, float, float]:
    """The request's extent (or the mask's bounding box) in ``target``; a clear error without either."""
    if request.extent is None:
        if request.mask is None:
            raise InputDataError("An online layer has no edge: give EXTENT (in the dialog, 'Use map canvas "
                                 "extent'), or a MASK whose polygons bound the area")
        return request.mask.bounds_in(_srs(target).ExportToWkt())
    src = request.extent_crs_wkt
    if not src or same_crs(src, _srs(target).ExportToWkt()):
        return request.extent
    tr = osr.CoordinateTransformation(_srs(src), _srs(target))
    xmin, ymin, xmax, ymax = request.extent
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate([xmin + (xmax - xmin) * t, np.full(21, xmax), xmin + (xmax - xmin) * t, np.full(21, xmin)])
    ys = np.concatenate([np.full(21, ymin), ymin + (ymax - ymin) * t, np.full(21, ymax), ymin + (ymax - ymin) * t])
    pts = tr.TransformPoints(list(zip(xs.tolist(), ys.tolist())))
    return min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)


def plan_online_raster(layer: OnlineLayer, md: ModelDefinition, request: RasterRequest, progress: Progress,
                       cache: Path | None = None, timeout: int = DEFAULT_TIMEOUT) -> tuple[str, RasterRequest]:
    """(GDAL description, the request in the layer's CRS with its cell size) for a run on an online layer.
    ``timeout`` (seconds per request) can be set with the environment variable ``DLTOOLS_HTTP_TIMEOUT``."""
    cache = cache or tile_cache_dir()
    timeout = int(os.environ.get("DLTOOLS_HTTP_TIMEOUT") or timeout)
    cache.mkdir(parents=True, exist_ok=True)
    crs = "EPSG:3857" if layer.service == "xyz" else layer.crs
    if layer.service == "wmts":
        probe = wmts_description(layer, None, cache, timeout)
        crs = open_raster(probe).GetProjection()
    extent = _extent_in(request, crs)
    cell = choose_cell_size(crs, extent, md, request.cell_size, progress)
    planned = replace(request, extent=extent, extent_crs_wkt=_srs(crs).ExportToWkt(), cell_size=cell)
    if layer.service == "xyz":
        zoom = choose_zoom(cell, layer.zmin, layer.zmax)
        res = ZOOM0_RESOLUTION / 2 ** zoom
        if abs(cell - res) <= SNAP_TOLERANCE * res and cell != res:
            # a dialog's 6 decimals (1.194329) mean zoom 17's 1.194328566955879: the pixels are read as served
            cell, planned = res, replace(planned, cell_size=res)
        progress.info(f"XYZ tiles: zoom {zoom} ({res:.6g} Web Mercator units per pixel) for a cell size of "
                      f"{cell:.6g}; up to {MAX_CONNECTIONS} requests at once, tiles cached in {cache}")
        return xyz_description(layer, zoom, cache, timeout), planned
    if layer.service == "wmts":
        return _plan_wmts(layer, cell, cache, timeout, planned, progress)
    width = max(1, math.ceil((extent[2] - extent[0]) / cell - 1e-9))
    height = max(1, math.ceil((extent[3] - extent[1]) / cell - 1e-9))
    window = (extent[0], extent[3] - height * cell, extent[0] + width * cell, extent[3])
    what = "ArcGIS REST export" if layer.service == "arcgis" else "WMS GetMap"
    progress.info(f"{what}: {width} x {height} pixels of {cell:.6g} in {crs}, requested in 512 x 512 pieces "
                  f"(up to {MAX_CONNECTIONS} at once), cached in {cache}")
    return window_description(layer, window, width, height, cache, timeout), replace(planned, extent=window)


def _plan_wmts(layer: OnlineLayer, cell: float, cache: Path, timeout: int, planned: RasterRequest,
               progress: Progress) -> tuple[str, RasterRequest]:
    """The coarsest tile matrix whose pixels are no larger than ``cell`` (GDAL lists the finest as the dataset and
    the others as its overviews)."""
    ds = open_raster(wmts_description(layer, None, cache, timeout))
    sizes = [abs(ds.GetGeoTransform()[1])]
    band = ds.GetRasterBand(1)
    sizes += [sizes[0] * ds.RasterXSize / band.GetOverview(i).XSize for i in range(band.GetOverviewCount())]
    finest = len(sizes) - 1
    fitting = [i for i, s in enumerate(sizes) if s <= cell * (1 + SNAP_TOLERANCE)]
    index = max(fitting, key=lambda i: sizes[i]) if fitting else 0
    if abs(cell - sizes[index]) <= SNAP_TOLERANCE * sizes[index]:  # the matrix's own pixels, read as served
        cell, planned = sizes[index], replace(planned, cell_size=sizes[index])
    level = finest - index  # ZoomLevel counts the tile matrices from the coarsest
    progress.info(f"WMTS: tile matrix {level} of '{layer.tile_matrix_set}' ({sizes[index]:.6g} per pixel) for a "
                  f"cell size of {cell:.6g}; up to {MAX_CONNECTIONS} requests at once, tiles cached in {cache}")
    gdal.ErrorReset()
    return wmts_description(layer, level, cache, timeout), planned


def request_on_grid_of(path: str, request: RasterRequest) -> RasterRequest:
    """A request covering ``path``'s processing grid for ``request`` (its bounds, CRS and cell size): how an online
    to-raster of Detect Change is read when the from-raster is a file."""
    from .request import processing_grid

    _, grid = processing_grid(path, request)
    return replace(request, extent=grid.bounds, extent_crs_wkt=grid.crs_wkt,
                   cell_size=request.cell_size or grid.cell_size[0])

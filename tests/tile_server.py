# SPDX-License-Identifier: GPL-2.0-or-later
"""A map server for the tests, on 127.0.0.1 (a thread running ``http.server``), serving one GeoTIFF in Web Mercator:

* XYZ tiles ``/xyz/{z}/{x}/{y}.png`` (256 x 256 RGBA PNG; the GeoTIFF's pixel grid is zoom ``zoom``'s, so a
  tile is a plain window of it; a tile that holds no pixel of it answers 404, a partly covered one is
  transparent outside);
* a minimal WMS 1.1.1 ``/wms?`` (GetCapabilities, and GetMap in EPSG:3857 cropped from the GeoTIFF with GDAL);
* a WMTS ``/wmts/WMTSCapabilities.xml`` (a static document, one tile matrix: ``zoom``) and its tiles
  ``/wmts/tile/{TileMatrix}/{TileRow}/{TileCol}.png``;
* an ArcGIS MapServer ``/arcgis/rest/services/ortho/MapServer`` (its ``f=json`` description, and ``export``
  cropped like GetMap).

Every request is recorded (``requests``: path and query, ``user_agents``) so a test can count what was asked;
``faults`` injects failures: ``{path: [500, 500]}`` answers 500 twice then normally, ``always_fail`` answers 500
forever, ``hang`` makes every request wait (never answering) until the server stops.  ``basic_auth`` (user,
password) answers 401 to a request without those credentials, ``required_header`` (name, value) answers 403 to one
without that header; ``headers`` records each request's headers.
"""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from osgeo import gdal

gdal.UseExceptions()

#: Web Mercator's half width (EPSG:3857 metres) and the pixel size of zoom level z: ORIGIN_SHIFT * 2 / 256 / 2**z
ORIGIN_SHIFT = 20037508.342789244


def zoom_resolution(z: int) -> float:
    return 2 * ORIGIN_SHIFT / 256 / 2 ** z


def png(rgba: np.ndarray) -> bytes:
    """[4, h, w] uint8 -> PNG bytes (GDAL's PNG driver)."""
    name = f"/vsimem/tile_{uuid.uuid4().hex}"
    mem = gdal.GetDriverByName("MEM").Create("", rgba.shape[2], rgba.shape[1], 4, gdal.GDT_Byte)
    for i in range(4):
        mem.GetRasterBand(i + 1).WriteArray(rgba[i])
    gdal.GetDriverByName("PNG").CreateCopy(name, mem)
    data = bytes(gdal.VSIGetMemFileBuffer_unsafe(name))
    gdal.Unlink(name)
    return data


class TileServer:
    """Serves ``raster`` (an RGB GeoTIFF in EPSG:3857 whose pixels are zoom ``zoom``'s); use as a context manager."""

    def __init__(self, raster: str, zoom: int) -> None:
        ds = gdal.Open(str(raster))
        self.raster = str(raster)
        self.zoom = zoom
        self.image = ds.ReadAsArray()  # [3, h, w]
        gt = ds.GetGeoTransform()
        res = zoom_resolution(zoom)
        # the GeoTIFF's top-left pixel in zoom `zoom`'s global pixel grid
        self.px0 = int(round((gt[0] + ORIGIN_SHIFT) / res))
        self.py0 = int(round((ORIGIN_SHIFT - gt[3]) / res))
        assert abs(gt[1] - res) < 1e-9 * res and abs(gt[5] + res) < 1e-9 * res, "GeoTIFF not on the zoom's grid"
        ds = None
        self.requests: list[str] = []
        self.user_agents: list[str] = []
        self.faults: dict[str, list[int]] = {}
        self.always_fail = False
        self.hang = False
        self.basic_auth: tuple[str, str] | None = None
        self.required_header: tuple[str, str] | None = None
        self.headers: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="tile-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> TileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def tile_requests(self) -> list[str]:
        return [r for r in self.requests if r.endswith(".png") or "GetMap" in r or "/export" in r]

    # ------------------------------------------------------------------ content
    def window(self, gx: int, gy: int, w: int, h: int) -> np.ndarray | None:
        """RGBA [4, h, w] of global zoom pixels (gx, gy, w, h); None when no pixel of the GeoTIFF is in it."""
        out = np.zeros((4, h, w), np.uint8)
        _, ih, iw = self.image.shape
        x0, y0 = max(gx, self.px0), max(gy, self.py0)
        x1, y1 = min(gx + w, self.px0 + iw), min(gy + h, self.py0 + ih)
        if x0 >= x1 or y0 >= y1:
            return None
        out[:3, y0 - gy:y1 - gy, x0 - gx:x1 - gx] = self.image[:, y0 - self.py0:y1 - self.py0,
                                                               x0 - self.px0:x1 - self.px0]
        out[3, y0 - gy:y1 - gy, x0 - gx:x1 - gx] = 255
        return out

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        if z != self.zoom:
            return None
        rgba = self.window(x * 256, y * 256, 256, 256)
        return None if rgba is None else png(rgba)

    def getmap(self, query: dict[str, str]) -> bytes:
        """GetMap: the GeoTIFF warped (nearest) to BBOX x WIDTH x HEIGHT in EPSG:3857, transparent outside."""
        xmin, ymin, xmax, ymax = (float(v) for v in query["BBOX"].split(","))
        width, height = int(query["WIDTH"]), int(query["HEIGHT"])
        warped = gdal.Warp("", self.raster, format="MEM", outputBounds=(xmin, ymin, xmax, ymax), width=width,
                           height=height, dstSRS="EPSG:3857", resampleAlg="near", dstAlpha=True)
        return png(warped.ReadAsArray())

    def wms_capabilities(self) -> bytes:
        return f"""<?xml version="1.0"?>
<WMT_MS_Capabilities version="1.1.1"><Service><Name>OGC:WMS</Name><Title>test</Title></Service>
<Capability><Request><GetMap><Format>image/png</Format><DCPType><HTTP><Get>
<OnlineResource xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="{self.url}/wms?"/></Get></HTTP></DCPType>
</GetMap></Request><Layer><Title>test</Title><SRS>EPSG:3857</SRS>
<Layer queryable="0"><Name>ortho</Name><Title>ortho</Title><SRS>EPSG:3857</SRS>
<LatLonBoundingBox minx="-180" miny="-85" maxx="180" maxy="85"/></Layer></Layer></Capability>
</WMT_MS_Capabilities>""".encode()

    def wmts_capabilities(self) -> bytes:
        res = zoom_resolution(self.zoom)
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<Capabilities xmlns="http://www.opengis.net/wmts/1.0" xmlns:ows="http://www.opengis.net/ows/1.1"
 xmlns:xlink="http://www.w3.org/1999/xlink" version="1.0.0">
<Contents><Layer><ows:Title>ortho</ows:Title><ows:Identifier>ortho</ows:Identifier>
<Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style><Format>image/png</Format>
<TileMatrixSetLink><TileMatrixSet>mercator</TileMatrixSet></TileMatrixSetLink>
<ResourceURL format="image/png" resourceType="tile"
 template="{self.url}/wmts/tile/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.png"/></Layer>
<TileMatrixSet><ows:Identifier>mercator</ows:Identifier><ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857</ows:SupportedCRS>
<TileMatrix><ows:Identifier>{self.zoom}</ows:Identifier><ScaleDenominator>{res / 0.00028!r}</ScaleDenominator>
<TopLeftCorner>{-ORIGIN_SHIFT!r} {ORIGIN_SHIFT!r}</TopLeftCorner><TileWidth>256</TileWidth><TileHeight>256</TileHeight>
<MatrixWidth>{2 ** self.zoom}</MatrixWidth><MatrixHeight>{2 ** self.zoom}</MatrixHeight></TileMatrix>
</TileMatrixSet></Contents></Capabilities>""".encode()

    def arcgis_service_info(self) -> bytes:
        """A MapServer's ``?f=json`` description, as much as QGIS's ArcGIS MapServer provider reads."""
        import json

        ds = gdal.Open(self.raster)
        gt, w, h = ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize
        extent = {"xmin": gt[0], "ymin": gt[3] + h * gt[5], "xmax": gt[0] + w * gt[1], "ymax": gt[3],
                  "spatialReference": {"wkid": 102100, "latestWkid": 3857}}
        return json.dumps({
            "currentVersion": 10.81, "serviceDescription": "test", "mapName": "ortho", "copyrightText": "",
            "supportsDynamicLayers": False, "singleFusedMapCache": False, "capabilities": "Map,Query",
            "supportedImageFormatTypes": "PNG32,PNG24,PNG,JPG", "spatialReference": extent["spatialReference"],
            "initialExtent": extent, "fullExtent": extent, "units": "esriMeters",
            "layers": [{"id": 0, "name": "ortho", "parentLayerId": -1, "defaultVisibility": True,
                        "subLayerIds": None, "minScale": 0, "maxScale": 0}]}).encode()

    # ------------------------------------------------------------------ HTTP
    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        parts = path.strip("/").split("/")
        if parts[0] == "xyz" and len(parts) == 4:
            body = self.tile(int(parts[1]), int(parts[2]), int(parts[3].split(".")[0]))
            return (404, "text/plain", b"no tile") if body is None else (200, "image/png", body)
        if parts[0] == "wmts" and parts[-1] == "WMTSCapabilities.xml":
            return 200, "text/xml", self.wmts_capabilities()
        if parts[0] == "wmts" and len(parts) == 5:  # wmts/tile/{matrix}/{row}/{col}.png
            body = self.tile(int(parts[2]), int(parts[4].split(".")[0]), int(parts[3]))
            return (404, "text/plain", b"no tile") if body is None else (200, "image/png", body)
        if parts[0] == "arcgis":  # arcgis/rest/services/ortho/MapServer[/export]
            if parts[-1] in ("export", "exportImage"):
                w, h = query["SIZE"].split(",")
                return 200, "image/png", self.getmap({"BBOX": query["BBOX"], "WIDTH": w, "HEIGHT": h})
            return 200, "application/json", self.arcgis_service_info()
        if parts[0] == "wms":
            request = query.get("REQUEST", "").lower()
            if request == "getcapabilities":
                return 200, "application/vnd.ogc.wms_xml", self.wms_capabilities()
            if request == "getmap":
                return 200, "image/png", self.getmap(query)
        return 404, "text/plain", b"not found"

    def _refusal(self, headers) -> int | None:
        """401 without the basic credentials, 403 without the required header, else None."""
        import base64

        if self.basic_auth is not None:
            expected = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
            if headers.get("Authorization") != expected:
                return 401
        if self.required_header is not None and headers.get(self.required_header[0]) != self.required_header[1]:
            return 403
        return None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                split = urlsplit(self.path)
                query = {k.upper(): v[0] for k, v in parse_qs(split.query).items()}
                with server._lock:
                    server.requests.append(self.path)
                    server.user_agents.append(self.headers.get("User-Agent", ""))
                    server.headers.append(dict(self.headers.items()))
                    pending = server.faults.get(split.path)
                    fault = pending.pop(0) if pending else None
                if server.hang:
                    server._stop.wait(60)
                    return
                if server.always_fail:
                    fault = 500
                refused = server._refusal(self.headers)
                if refused is not None:
                    status, kind, body = refused, "text/plain", b"not allowed"
                elif fault is not None:
                    status, kind, body = fault, "text/plain", b"injected failure"
                else:
                    status, kind, body = server._answer(split.path, query)
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="tiles"')
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

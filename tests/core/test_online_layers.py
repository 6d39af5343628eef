# SPDX-License-Identifier: GPL-2.0-or-later
"""core.raster.online without a server: QGIS source strings parsed, the zoom level and cell size chosen (ground
resolution to Web Mercator units), the GDAL descriptions' network settings, GDAL's download errors read back into
a URL and an HTTP status, and what GDAL cannot send refused by name."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from builders import RecordingProgress
from dltools.core.errors import InputDataError
from dltools.core.model.definition import ModelDefinition
from dltools.core.raster.online import (
    ZOOM0_RESOLUTION,
    choose_cell_size,
    choose_zoom,
    looks_like_online_uri,
    parse_layer_uri,
    plan_online_raster,
    xyz_description,
)
from dltools.core.raster.online_reads import failed_tile, http_options, read_with_retries, split_http_options
from dltools.core.raster.request import RasterRequest


def definition(**values) -> ModelDefinition:
    return ModelDefinition(source="test", origin="emd", raw={}, image_height=32, image_width=32,
                           model_type="ImageClassification", **values)


def test_qgis_source_strings_are_parsed():
    xyz = parse_layer_uri("type=xyz&url=https://tiles.example/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=2", "wms", "b")
    assert (xyz.service, xyz.url, xyz.zmin, xyz.zmax) == ("xyz", "https://tiles.example/{z}/{x}/{y}.png", 2, 19)
    wms = parse_layer_uri("contextualWMSLegend=0&crs=EPSG:25832&dpiMode=7&format=image/jpeg&layers=dop&layers=roads"
                          "&styles=&styles=&url=https://wms.example/service?map%3Dortho", "wms")
    assert (wms.service, wms.layers, wms.crs, wms.image_format) == ("wms", "dop,roads", "EPSG:25832", "image/jpeg")
    assert wms.url == "https://wms.example/service?map=ortho"
    wmts = parse_layer_uri("crs=EPSG:3857&format=image/png&layers=ortho&styles=default&tileMatrixSet=google"
                           "&url=https://wmts.example/WMTSCapabilities.xml", "wms")
    assert (wmts.service, wmts.tile_matrix_set, wmts.styles) == ("wmts", "google", "default")
    ags = parse_layer_uri("crs='EPSG:3857' format='PNG32' layer='0' url='https://ags.example/rest/World/MapServer'",
                          "arcgismapserver")
    assert (ags.service, ags.url, ags.layers) == ("arcgis", "https://ags.example/rest/World/MapServer", "0")
    assert looks_like_online_uri("wms://type=xyz&url=x") and not looks_like_online_uri("/data/ortho.tif")
    with pytest.raises(InputDataError, match="'wcs' provider"):
        parse_layer_uri("url=https://x", "wcs", "coverage")


@pytest.mark.parametrize("cell,zoom", [(ZOOM0_RESOLUTION / 2 ** 17, 17), (1.2, 17), (1.19, 18), (0.01, 19),
                                       (5000.0, 5), (1e6, 2)])
def test_the_coarsest_zoom_not_coarser_than_the_cell_size(cell, zoom):
    assert choose_zoom(cell, zmin=2, zmax=19) == zoom


def test_cell_size_from_the_model_in_ground_metres_becomes_web_mercator_units():
    progress = RecordingProgress()
    # an extent around latitude 60 N (y of 60 degrees in EPSG:3857): 1 m on the ground is 2 units of Web Mercator
    y60 = 6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(60) / 2))
    extent = (1000000.0, y60 - 500, 1001000.0, y60 + 500)
    deepness = definition(resolution_cm=50.0)
    assert choose_cell_size("EPSG:3857", extent, deepness, None, progress) == pytest.approx(1.0, rel=1e-4)
    assert "latitude 60.00" in progress.infos[-1]
    esri = definition(min_cell_size={"x": 0.3, "y": 0.3, "spatialReference": {"wkid": 26911}})
    assert choose_cell_size("EPSG:3857", extent, esri, None, progress) == pytest.approx(0.6, rel=1e-4)
    stated_in_mercator = definition(min_cell_size={"x": 0.6, "spatialReference": {"wkid": 102100}})
    assert choose_cell_size("EPSG:3857", extent, stated_in_mercator, None, progress) == 0.6
    assert choose_cell_size("EPSG:25832", extent, esri, None, progress) == 0.3  # a metric CRS: metres as they are
    assert choose_cell_size("EPSG:3857", extent, esri, 2.5, progress) == 2.5  # CELL_SIZE wins
    with pytest.raises(InputDataError, match="give CELL_SIZE"):
        choose_cell_size("EPSG:3857", extent, definition(), None, progress)
    with pytest.raises(InputDataError, match="in degrees"):
        choose_cell_size("EPSG:4326", (10, 50, 11, 51), esri, None, progress)


def test_the_description_carries_the_network_settings(tmp_path):
    layer = parse_layer_uri("type=xyz&url=http://h/{z}/{x}/{-y}.png&username=ann&password=s3cret&referer=http://r"
                            "&http-header:X-Key=a,%20b")
    xml = xyz_description(layer, 12, tmp_path / "cache", timeout=7)
    for part in ("<ServerUrl>http://h/${z}/${x}/${y}.png</ServerUrl>", "<TileLevel>12</TileLevel>",
                 "<YOrigin>bottom</YOrigin>", "<BandsCount>4</BandsCount>", "<Timeout>7</Timeout>",
                 "<MaxConnections>4</MaxConnections>", "<ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>",
                 f"<Cache><Path>{tmp_path / 'cache'}</Path></Cache>", "<Referer>http://r</Referer>",
                 "<UserAgent>Deep Learning Tools for QGIS"):
        assert part in xml
    # the credentials and headers travel beside what GDAL sees: never in its description, its messages or a log
    gdal_text, options = split_http_options(xml)
    assert "s3cret" not in xml and "s3cret" not in gdal_text and "DLToolsHttp" not in gdal_text
    assert gdal_text.startswith("<GDAL_WMS>") and gdal_text.endswith("</GDAL_WMS>")
    assert options == {"GDAL_HTTP_USERPWD": "ann:s3cret", "GDAL_HTTP_AUTH": "BASIC",
                       "GDAL_HTTP_HEADERS": '"X-Key: a, b"'}
    assert "s3cret" not in repr(layer) and split_http_options("/data/a.tif") == ("/data/a.tif", {})


def test_http_options_are_set_for_the_reading_thread_only():
    from osgeo import gdal

    seen = {}

    def other_thread():
        seen["other"] = gdal.GetConfigOption("GDAL_HTTP_USERPWD")

    with http_options({"GDAL_HTTP_USERPWD": "ann:pw"}):
        assert gdal.GetConfigOption("GDAL_HTTP_USERPWD") == "ann:pw"
        import threading

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen == {"other": None} and gdal.GetConfigOption("GDAL_HTTP_USERPWD") is None


@pytest.mark.parametrize("uri,named", [("type=xyz&url=http://h/{z}/{x}/{y}.png&authcfg=ab12cd3",
                                        "QGIS authentication configuration ab12cd3, which only QGIS can read"),
                                       ("type=xyz&url=http://h/{z}/{x}/{y}.png&http-header:X-Key=a%22b",
                                        "HTTP header 'X-Key'")])
def test_what_gdal_cannot_send_is_refused_by_name(tmp_path, uri, named):
    with pytest.raises(InputDataError, match=named):
        xyz_description(parse_layer_uri(uri, "wms", "basemap"), 10, tmp_path)


def test_an_online_layer_needs_an_extent(tmp_path):
    md = definition()
    with pytest.raises(InputDataError, match="no edge: give EXTENT"):
        plan_online_raster(parse_layer_uri("type=xyz&url=http://h/{z}/{x}/{y}.png"), md,
                           RasterRequest(cell_size=1.0), RecordingProgress(), Path(tmp_path))


def test_gdal_download_errors_are_read_back():
    xml = "<GDAL_WMS><Service><ServerUrl>http://h/t/${z}/${x}/${y}.png</ServerUrl></Service><TileLevel>9</TileLevel>"
    message = ("GDAL_WMS>, band 1: IReadBlock failed at X offset 4, Y offset 2: GDALWMS: Unable to download block "
               "5, 3.\nURL: injected\n  HTTP status code: 503, error: Service Unavailable.\nAdd the HTTP status...")
    assert failed_tile(xml, message) == ("http://h/t/9/5/3.png", 503, "Service Unavailable")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(message)
        return "ok"

    assert read_with_retries(flaky, xml, backoff=(0.0, 0.0, 0.0)) == "ok" and len(calls) == 3

    def forbidden():
        raise RuntimeError(message.replace("503, error: Service Unavailable", "403, error: Forbidden"))

    with pytest.raises(InputDataError, match=r"HTTP 403 for http://h/t/9/5/3.png: Forbidden"):
        read_with_retries(forbidden, xml, backoff=(0.0,))


# ------------------------------------------------------------------ against the test server (tests/tile_server.py)
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A 3857 GeoTIFF on zoom 17's grid, its server and the pixel model (conv 3x3)."""
    import numpy as np
    from builders import conv_module, export_onnx, write_emd
    from osgeo import gdal, osr
    from tile_server import ORIGIN_SHIFT, TileServer, zoom_resolution

    d = tmp_path_factory.mktemp("served")
    res = zoom_resolution(17)
    px0, py0, w, h = 68000 * 256 + 50, 47000 * 256 + 90, 300, 200
    ds = gdal.GetDriverByName("GTiff").Create(str(d / "src.tif"), w, h, 3, gdal.GDT_Byte)
    gt = (-ORIGIN_SHIFT + px0 * res, res, 0.0, ORIGIN_SHIFT - py0 * res, 0.0, -res)
    ds.SetGeoTransform(gt)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    ds.WriteArray(np.random.default_rng(2).integers(0, 9, size=(3, h, w)).astype(np.uint8))
    ds = None
    export_onnx(conv_module(3, 3, 3), d / "conv3.onnx", 3, 32)
    emd = write_emd(d / "conv3.emd", "conv3.onnx", tile=32, classes=[(1, "a", (1, 1, 1)), (2, "b", (2, 2, 2)),
                                                                   (3, "c", (3, 3, 3))])
    with TileServer(str(d / "src.tif"), 17) as server:
        yield {"dir": d, "tif": str(d / "src.tif"), "emd": str(emd), "server": server, "res": res,
               "extent": (gt[0], gt[3] - h * res, gt[0] + w * res, gt[3]), "wkt": srs.ExportToWkt()}


def _classify_both(served, layer, tmp_path, **kwargs):
    from builders import read_raster
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    md = load_model_definition(served["emd"])
    classify_pixels(served["tif"], md, str(tmp_path / "ref.tif"), "padding 2")
    progress = RecordingProgress()
    request = RasterRequest(extent=served["extent"], extent_crs_wkt=served["wkt"], cell_size=served["res"])
    description, planned = plan_online_raster(layer, md, request, progress, tmp_path / "cache")
    classify_pixels(description, md, str(tmp_path / "online.tif"), "padding 2", request=planned, progress=progress,
                    **kwargs)
    return read_raster(tmp_path / "ref.tif"), read_raster(tmp_path / "online.tif"), progress


def test_an_arcgis_image_service(served, tmp_path):
    url = f"{served['server'].url}/arcgis/rest/services/ortho/ImageServer"
    layer = parse_layer_uri(f"crs='EPSG:3857' format='PNG32' url='{url}'", "arcgismapserver", "ortho")
    ref, got, progress = _classify_both(served, layer, tmp_path)
    assert (ref == got).all() and ref.shape == (200, 300)
    assert any(line.startswith("ArcGIS REST export: 300 x 200 pixels") for line in progress.infos), progress.infos
    assert any("/ImageServer/exportImage?" in r for r in served["server"].requests), served["server"].requests[-2:]


def test_xyz_on_a_dask_cluster_the_workers_fetch_their_own_tiles(served, tmp_path):
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    before = len(served["server"].tile_requests())
    layer = parse_layer_uri(f"type=xyz&url={served['server'].url}/xyz/%7Bz%7D/%7Bx%7D/%7By%7D.png", "wms", "xyz")
    ref, got, progress = _classify_both(served, layer, tmp_path, scheduler="local:1", retries=0)
    assert (ref == got).all()
    assert len(served["server"].tile_requests()) - before == 4  # 2 x 2 tiles, fetched by the worker


def test_a_cell_size_rounded_to_6_decimals_is_the_zoom_levels_pixel_size(tmp_path):
    """The dialog's spin box shows 6 decimals: 1.194329 stands for zoom 17's 1.194328566955879..., read as served."""
    res = ZOOM0_RESOLUTION / 2 ** 17
    md = definition()
    layer = parse_layer_uri("type=xyz&url=http://h/{z}/{x}/{y}.png")
    for typed, want in ((round(res, 6), res), (1.2, 1.2)):
        _, planned = plan_online_raster(layer, md, RasterRequest(extent=(0.0, 0.0, 100.0, 100.0), cell_size=typed),
                                        RecordingProgress(), tmp_path)
        assert planned.cell_size == want


def test_a_wmts_behind_a_required_header(served, tmp_path):
    """The capabilities document and the tiles both need the header: GDAL's WMTS driver sends it for both."""
    server = served["server"]
    server.required_header = ("X-Api-Key", "k-123")
    try:
        base = f"crs=EPSG:3857&format=image/png&layers=ortho&styles=default&tileMatrixSet=mercator&url={server.url}"
        layer = parse_layer_uri(f"{base}/wmts/WMTSCapabilities.xml&http-header:X-Api-Key=k-123", "wms", "ortho")
        before = len(server.requests)
        ref, got, _ = _classify_both(served, layer, tmp_path)
        assert (ref == got).all()
        asked = server.headers[before:]
        assert len(asked) > 4 and all(h.get("X-Api-Key") == "k-123" for h in asked)
        without = parse_layer_uri(f"{base}/wmts/WMTSCapabilities.xml", "wms", "ortho")
        with pytest.raises(InputDataError, match=r"Cannot open raster 'http://127\.0\.0\.1:\d+/wmts/WMTSCapabilities"):
            _classify_both(served, without, tmp_path)
    finally:
        server.required_header = None

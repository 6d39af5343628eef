# SPDX-License-Identifier: GPL-2.0-or-later
"""Online layers (XYZ tiles, WMS, WMTS) as the input of Classify Pixels, Detect Objects and Detect Change, from a
map server run by the test on 127.0.0.1 (tests/tile_server.py) that cuts its tiles and GetMap answers from a
GeoTIFF on zoom 17's pixel grid.

The same pixels read from the GeoTIFF give the same output, bit for bit, for each kind of service; on XYZ tiles
the network's faults: a tile that
answers 500 twice (retried, same output), always 500 (an error naming the URL and the status, no output), a
server that never answers (cancelled within 2 s; a time-out error otherwise), 404 tiles (NoData); a second run
fetches nothing (GDAL's tile cache, counted on the server); a MASK's skipped tiles are never requested;
processing.run and qgis_process with the layer's source string."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, read_raster, write_emd
from detection_models import square_scene, yolo_v8_onnx
from osgeo import gdal, osr
from recording_feedback import RecordingFeedback
from tile_server import ORIGIN_SHIFT as HALF
from tile_server import TileServer, zoom_resolution

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

ZOOM = 17
RES = zoom_resolution(ZOOM)
TX, TY = 68000, 47000  # the GeoTIFF starts inside tile (TX, TY), off the tile corner
PX0, PY0 = TX * 256 + 100, TY * 256 + 37
W, H = 600, 520
SQUARES = [(20, 30, 14, 0, 220), (150, 140, 20, 1, 240), (300, 250, 12, 0, 200), (460, 400, 24, 1, 230),
           (140, 248, 16, 0, 250)]  # the last one across a tile row seam (global y 256)
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]


def extent_text(x0: int = 0, y0: int = 0, x1: int = W, y1: int = H) -> str:
    """The extent of GeoTIFF pixels x0..x1, y0..y1 as an EXTENT parameter in EPSG:3857."""
    left, top = -HALF + (PX0 + x0) * RES, HALF - (PY0 + y0) * RES
    right, bottom = -HALF + (PX0 + x1) * RES, HALF - (PY0 + y1) * RES
    return f"{left!r},{right!r},{bottom!r},{top!r} [EPSG:3857]"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("xyz")
    image = square_scene(W, H, SQUARES)
    image[2] = np.random.default_rng(4).integers(0, 40, size=(H, W))  # texture for the pixel model
    path = d / "scene3857.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, 3, gdal.GDT_Byte, ["TILED=YES"])
    ds.SetGeoTransform((-HALF + PX0 * RES, RES, 0.0, HALF - PY0 * RES, 0.0, -RES))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(3):
        ds.GetRasterBand(i + 1).WriteArray(image[i])
    ds = None
    export_onnx(conv_module(3, 3, 5), d / "conv5.onnx", 3, 32)
    return {"dir": d, "tif": str(path), "image": image,
            "emd": str(write_emd(d / "conv5.emd", "conv5.onnx", tile=32, classes=CLASSES)),
            "yolo": str(yolo_v8_onnx(d / "yolo.onnx", 64, {0: "red", 1: "green"}))}


@pytest.fixture
def server(scene, tmp_path, monkeypatch):
    """A fresh server (its own port, so its own URLs) and a fresh tile cache for each test."""
    monkeypatch.setenv("DLTOOLS_CACHE_DIR", str(tmp_path / "cache"))
    with TileServer(scene["tif"], ZOOM) as srv:
        srv.uri = f"type=xyz&url={srv.url}/xyz/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0"
        yield srv


def source(server: TileServer, kind: str) -> str:
    """The layer's source string, as QGIS writes it for an XYZ, WMS or WMTS layer of its 'wms' provider."""
    if kind == "xyz":
        return server.uri
    if kind == "arcgis":  # a layer of QGIS's ArcGIS MapServer provider (a source string cannot name the provider)
        from qgis.core import QgsRasterLayer

        layer = QgsRasterLayer(f"crs='EPSG:3857' format='PNG32' layer='0' url='{server.url}/arcgis/rest/services/"
                               "ortho/MapServer'", "ortho", "arcgismapserver")
        assert layer.isValid()
        server.keep = layer
        return layer
    if kind == "arcgis-uri":  # the same as a string: QGIS's provider://source form
        return (f"arcgismapserver://crs='EPSG:3857' format='PNG32' layer='0' url='{server.url}/arcgis/rest/services/"
                "ortho/MapServer'")
    if kind == "wms":
        return f"contextualWMSLegend=0&crs=EPSG:3857&dpiMode=7&format=image/png&layers=ortho&styles=&url={server.url}/wms"
    return (f"contextualWMSLegend=0&crs=EPSG:3857&dpiMode=7&format=image/png&layers=ortho&styles=default"
            f"&tileMatrixSet=mercator&url={server.url}/wmts/WMTSCapabilities.xml")


LOG = {"xyz": "XYZ tiles: zoom 17", "wms": "WMS GetMap: 600 x 520 pixels", "wmts": "WMTS: tile matrix 0 of 'mercator'",
       "arcgis": "ArcGIS REST export: 600 x 520 pixels", "arcgis-uri": "ArcGIS REST export: 600 x 520 pixels"}


def run(alg: str, context, feedback=None, **params) -> tuple[dict, RecordingFeedback]:
    import processing

    feedback = feedback or RecordingFeedback()
    return processing.run(alg, params, context=context, feedback=feedback), feedback


def classify(context, source: str, out: Path, feedback=None, **extra) -> RecordingFeedback:
    params = {"INPUT": source, "MODEL": extra.pop("MODEL"), "ARGUMENTS": "padding 4;batch_size 4",
              "OUTPUT": str(out), **extra}
    return run("dltools:classifypixels", context, feedback, **params)[1]


@pytest.mark.parametrize("kind", ["xyz", "wms", "wmts", "arcgis", "arcgis-uri"])
def test_classify_pixels_online_equals_the_geotiff(context, scene, server, tmp_path, kind):
    ref, got = tmp_path / "ref.tif", tmp_path / f"{kind}.tif"
    classify(context, scene["tif"], ref, MODEL=scene["emd"])
    feedback = classify(context, source(server, kind), got, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    a, b = gdal.Open(str(ref)), gdal.Open(str(got))
    assert np.array_equal(a.ReadAsArray(), b.ReadAsArray())
    assert b.GetGeoTransform() == pytest.approx(a.GetGeoTransform(), rel=1e-12)
    assert any(LOG[kind] in line for line in feedback.infos)
    tiles = server.tile_requests()
    # XYZ and WMTS: 3 x 3 tiles of 256; WMS and ArcGIS: pieces of 512 x 512 (clamped to the extent), each once
    assert len(tiles) == len(set(tiles)) == (4 if kind in ("wms", "arcgis", "arcgis-uri") else 9)
    agents = {ua for r, ua in zip(server.requests, server.user_agents) if r in tiles}
    assert len(agents) == 1 and agents.pop().startswith("Deep Learning Tools for QGIS")
    # a second run reads GDAL's tile cache: no tile is requested again, the output is the same
    again = tmp_path / "again.tif"
    classify(context, source(server, kind), again, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    assert len(server.tile_requests()) == len(tiles)
    assert np.array_equal(read_raster(again), a.ReadAsArray())


@pytest.mark.parametrize("kind", ["xyz", "wms", "wmts", "arcgis"])
def test_detect_objects_online_equals_the_geotiff(context, scene, server, tmp_path, kind):
    from qgis.core import QgsVectorLayer

    found = {}
    for name, source_, extra in (("tif", scene["tif"], {}),
                                 (kind, source(server, kind), {"EXTENT": extent_text(), "CELL_SIZE": RES})):
        result, _ = run("dltools:detectobjects", context, INPUT=source_, MODEL=scene["yolo"], ARGUMENTS="padding 8",
                        OUTPUT=str(tmp_path / f"{name}.gpkg"), **extra)
        layer = QgsVectorLayer(result["OUTPUT"], name, "ogr")
        assert layer.crs().authid() == "EPSG:3857"
        found[name] = sorted((f.geometry().asWkt(6), f["Class"], f["Confidence"]) for f in layer.getFeatures())
    assert len(found["tif"]) == len(SQUARES) and found[kind] == found["tif"]


def test_detect_change_on_two_xyz_layers(context, scene, server, tmp_path):
    d = scene["dir"]
    export_onnx(conv_module(6, 2, 1), d / "change.onnx", 6, 32)
    emd = write_emd(d / "change.emd", "change.onnx", tile=32, bands=list(range(6)),
                    classes=[(0, "no change", (0, 0, 0)), (1, "change", (255, 0, 0))])
    ref, got = tmp_path / "ref.tif", tmp_path / "xyz.tif"
    run("dltools:detectchange", context, FROM_RASTER=scene["tif"], TO_RASTER=scene["tif"], MODEL=str(emd),
        ARGUMENTS="padding 2", OUTPUT=str(ref))
    run("dltools:detectchange", context, FROM_RASTER=server.uri, TO_RASTER="wms://" + server.uri, MODEL=str(emd),
        ARGUMENTS="padding 2", EXTENT=extent_text(), CELL_SIZE=RES, OUTPUT=str(got))
    assert np.array_equal(read_raster(got), read_raster(ref))
    # an earlier file against the basemap of today: the online to-raster is read over the file's grid
    mixed = tmp_path / "mixed.tif"
    run("dltools:detectchange", context, FROM_RASTER=scene["tif"], TO_RASTER=server.uri, MODEL=str(emd),
        ARGUMENTS="padding 2", OUTPUT=str(mixed))
    assert np.array_equal(read_raster(mixed), read_raster(ref))


def test_a_tile_failing_twice_is_retried(context, scene, server, tmp_path):
    ref, got = tmp_path / "ref.tif", tmp_path / "xyz.tif"
    classify(context, scene["tif"], ref, MODEL=scene["emd"])
    flaky = f"/xyz/{ZOOM}/{TX + 1}/{TY + 1}.png"
    server.faults[flaky] = [500, 500]
    classify(context, server.uri, got, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    assert np.array_equal(read_raster(got), read_raster(ref))
    assert sum(r == flaky for r in server.requests) == 3


def test_a_tile_always_failing_names_the_url_and_leaves_no_output(context, scene, server, tmp_path):
    from qgis.core import QgsProcessingException

    out = tmp_path / "never.tif"
    server.faults[f"/xyz/{ZOOM}/{TX}/{TY + 2}.png"] = [500] * 20
    with pytest.raises(QgsProcessingException) as err:
        classify(context, server.uri, out, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    message = str(err.value)
    assert f"HTTP 500 for {server.url}/xyz/{ZOOM}/{TX}/{TY + 2}.png (4 tries)" in message, message
    assert not out.exists() and not list(tmp_path.glob("never*"))


@pytest.mark.parametrize("where", ["child", "in-process", "dask", "dask-tcp"])
def test_a_server_that_never_answers_is_cancelled_within_2_s(context, scene, server, tmp_path, monkeypatch, where):
    """Every request hangs (the server accepts and never answers): cancel ends the run within 2 s of the click in
    the child process (the default), in QGIS's process, on a local Dask cluster (whose worker is stuck in GDAL's
    HTTP read) and on a running scheduler given by address (its worker is let go, not waited for)."""
    from qgis.core import QgsProcessingException

    extra = {}
    if where == "in-process":
        monkeypatch.setenv("DLTOOLS_IN_PROCESS", "1")
    elif where.startswith("dask"):
        distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
        extra = {"SCHEDULER": "local:1", "RETRIES": 0}
        if where == "dask-tcp":
            running = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            extra["SCHEDULER"] = running.scheduler_address
            server.keep = running
    import psutil

    me = psutil.Process()
    from dltools.core.runner import spare

    # a process kept ready by an earlier run takes this run's job: it must be gone afterwards too
    before = {p.pid for p in me.children(recursive=True)} - {spare.held_pid()}
    server.hang = True
    feedback = RecordingFeedback()
    cancelled_at = []

    def cancel() -> None:
        while not server.tile_requests():  # the first tile request hangs: the run is under way
            time.sleep(0.05)
        time.sleep(0.5)
        cancelled_at.append(time.monotonic())
        feedback.cancel()

    threading.Thread(target=cancel, daemon=True).start()
    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException, match="cancel"):
        classify(context, server.uri, out, feedback, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES,
                 **extra)
    took = time.monotonic() - cancelled_at[0]
    print(f"cancel ({where}) returned after {took:.2f} s")
    if where == "dask-tcp":
        server.hang = False  # the scheduler and worker the test started are closed by the test
        server._stop.set()
        server.keep.close()
    assert took < 2.0
    assert not out.exists() and not list(tmp_path.glob("never*"))
    kept = spare.held_pid()  # the next run's process, started after this one (it has no job)
    deadline = time.monotonic() + 10
    while True:  # the child process or the Dask workers are gone, not left hanging on the server
        left = [p for p in me.children(recursive=True) if p.pid not in before and p.pid != kept and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, [p.cmdline() for p in left]


def test_a_server_that_never_answers_times_out(context, scene, server, tmp_path, monkeypatch):
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("DLTOOLS_HTTP_TIMEOUT", "1")
    server.hang = True
    with pytest.raises(QgsProcessingException, match=r"did not answer: http://127\.0\.0\.1:\d+/xyz/17/.*timed out"):
        classify(context, server.uri, tmp_path / "never.tif", MODEL=scene["emd"], EXTENT=extent_text(),
                 CELL_SIZE=RES)


def test_404_tiles_are_nodata(context, scene, server, tmp_path):
    out = tmp_path / "wide.tif"
    # 300 pixels past the GeoTIFF's right edge: tile column TX + 3 answers 404, the rest of TX + 2 is transparent
    classify(context, server.uri, out, MODEL=scene["emd"], EXTENT=extent_text(0, 0, W + 300, H), CELL_SIZE=RES)
    classes = read_raster(out)
    assert classes.shape == (H, W + 300)
    assert (classes[:, W:] == 255).all() and (classes[:, :W - 8] != 255).all()
    assert any(r.startswith(f"/xyz/{ZOOM}/{TX + 3}/") for r in server.requests)


@pytest.mark.parametrize("scheduler", ["", "local:1"])
def test_mask_skipped_tiles_are_never_requested(context, scene, server, tmp_path, scheduler):
    """In the child process and on a local Dask cluster (whose worker fetches its own tiles)."""
    extra = {}
    if scheduler:
        pytest.importorskip("distributed", reason="dask[distributed] is not installed")
        extra = {"SCHEDULER": scheduler, "RETRIES": 0}

    mask = _corner_mask(tmp_path)
    out = tmp_path / "masked.tif"
    feedback = classify(context, server.uri, out, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES,
                        MASK=str(mask), **extra)
    assert server.tile_requests() == [f"/xyz/{ZOOM}/{TX}/{TY}.png"]
    assert any("tiles are skipped" in line for line in feedback.infos)
    classes = read_raster(out)
    assert (classes[:30] == 255).all() and (classes[45:75, 45:75] != 255).all()


def _corner_mask(tmp_path: Path, x0: int = 40, y0: int = 40, x1: int = 80, y1: int = 80) -> Path:
    """A rectangle around GeoTIFF pixels (x0..x1, y0..y1) in WGS 84 (by default only tile (TX, TY) is needed)."""
    import json

    to_wgs = osr.CoordinateTransformation(_srs(3857), _srs(4326))
    ring = [list(to_wgs.TransformPoint(-HALF + (PX0 + x) * RES, HALF - (PY0 + y) * RES)[:2])
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    mask = tmp_path / "mask.geojson"
    mask.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return mask


def test_mask_with_the_models_own_function_on_xyz(context, scene, server, tmp_path):
    """A model run by its own Python function (Esri raster function) on XYZ tiles inside a MASK around the green
    square at (150, 140): only the two tiles under the polygon are requested; inside, the pixels equal the same
    function's on the GeoTIFF; NoData outside."""
    import prf_functions as prf

    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    mask = _corner_mask(tmp_path, 140, 130, 176, 170)
    ref, got = tmp_path / "ref.tif", tmp_path / "masked.tif"
    run("dltools:classifypixels", context, INPUT=scene["tif"], MODEL=str(emd), ARGUMENTS="threshold 20",
        ALLOW_CUSTOM_CODE=True, OUTPUT=str(ref))
    _, feedback = run("dltools:classifypixels", context, INPUT=server.uri, MODEL=str(emd), ARGUMENTS="threshold 20",
                      ALLOW_CUSTOM_CODE=True, EXTENT=extent_text(), CELL_SIZE=RES, MASK=str(mask), OUTPUT=str(got))
    assert sorted(server.tile_requests()) == [f"/xyz/{ZOOM}/{TX}/{TY}.png", f"/xyz/{ZOOM}/{TX + 1}/{TY}.png"]
    assert any("tiles are skipped" in line for line in feedback.infos)
    a, b = read_raster(ref), read_raster(got)
    ds = gdal.Open(str(got))
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    ds = None
    assert (b[:125] == nodata).all() and (b[175:] == nodata).all()
    assert (b[:, :135] == nodata).all() and (b[:, 181:] == nodata).all()
    assert np.array_equal(b[132:168, 142:174], a[132:168, 142:174]) and len(np.unique(a[132:168, 142:174])) == 2


def _srs(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def test_extent_and_cell_size_are_required(context, scene, server, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="An online layer has no edge: give EXTENT"):
        classify(context, server.uri, tmp_path / "a.tif", MODEL=scene["emd"], CELL_SIZE=RES)
    with pytest.raises(QgsProcessingException, match="no cell size of its own .* give CELL_SIZE"):
        classify(context, server.uri, tmp_path / "b.tif", MODEL=scene["emd"], EXTENT=extent_text())
    assert server.tile_requests() == []


def test_qgis_process_with_an_xyz_uri(scene, server, tmp_path):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    out = tmp_path / "cli.tif"
    answer = qgis_process_util.qgis_process_json("dltools:classifypixels", {
        "INPUT": server.uri, "MODEL": scene["emd"], "ARGUMENTS": "padding 4;batch_size 4", "EXTENT": extent_text(),
        "CELL_SIZE": repr(RES), "OUTPUT": str(out)}, tmp_path)
    assert answer["results"]["OUTPUT"] == str(out)
    ref = tmp_path / "ref.tif"
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    classify_pixels(scene["tif"], load_model_definition(scene["emd"]), str(ref), "padding 4;batch_size 4")
    assert np.array_equal(read_raster(out), read_raster(ref))
    assert len(server.tile_requests()) == 9


def test_a_project_layer_of_the_wms_provider(context, scene, server, tmp_path):
    """An XYZ layer as QGIS holds it (added from the Browser: provider 'wms'), not its source string."""
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(server.uri, "basemap", "wms")
    assert layer.isValid() and layer.providerType() == "wms"
    ref, got = tmp_path / "ref.tif", tmp_path / "layer.tif"
    classify(context, scene["tif"], ref, MODEL=scene["emd"])
    feedback = classify(context, layer, got, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    assert np.array_equal(read_raster(got), read_raster(ref))
    assert any("XYZ tiles: zoom 17" in line for line in feedback.infos)


def test_requests_go_through_the_qgis_proxy(context, scene, server, tmp_path):
    """QGIS's proxy settings reach GDAL: the layer's host does not exist (.invalid), the test server is the proxy."""
    from osgeo import gdal as gdal_
    from qgis.core import QgsSettings

    settings = QgsSettings()
    keys = {"proxy/proxyEnabled": True, "proxy/proxyType": "HttpProxy", "proxy/proxyHost": "127.0.0.1",
            "proxy/proxyPort": str(server.httpd.server_address[1]), "proxy/proxyExcludedUrls": ""}
    before = {k: settings.value(k) for k in keys}
    try:
        for k, v in keys.items():
            settings.setValue(k, v)
        ref, got = tmp_path / "ref.tif", tmp_path / "proxied.tif"
        classify(context, scene["tif"], ref, MODEL=scene["emd"])
        feedback = classify(context, "type=xyz&url=http://tiles.invalid/xyz/{z}/{x}/{y}.png", got,
                            MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    finally:
        for k, v in before.items():
            settings.remove(k) if v is None else settings.setValue(k, v)
        gdal_.SetConfigOption("GDAL_HTTP_PROXY", None)
        os.environ.pop("GDAL_HTTP_PROXY", None)
    assert np.array_equal(read_raster(got), read_raster(ref))
    assert all(r.startswith("http://tiles.invalid/xyz/17/") for r in server.tile_requests())
    assert len(server.tile_requests()) == 9
    assert any(f"QGIS's proxy 127.0.0.1:{server.httpd.server_address[1]}" in line for line in feedback.infos)


def test_classify_objects_on_xyz_equals_the_geotiff(context, scene, server, tmp_path):
    """Chips cut around features from XYZ tiles: the same labels and confidences as from the GeoTIFF."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))
    from co_models import mean_emd
    from qgis.core import QgsProcessingException, QgsVectorLayer

    (tmp_path / "co").mkdir()
    emd = mean_emd(tmp_path / "co", band=0, tile=7)
    features = []
    for x, y, size, *_ in SQUARES:  # a box around each square, and one on plain ground
        x0, y0 = -HALF + (PX0 + x - 2) * RES, HALF - (PY0 + y - 2) * RES
        x1, y1 = x0 + (size + 4) * RES, y0 - (size + 4) * RES
        features.append({"type": "Feature", "properties": {"n": x},
                         "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1],
                                                                          [x0, y0]]]}})
    boxes = tmp_path / "boxes.geojson"
    boxes.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "urn:ogc:def:crs:EPSG::3857"}}, "features": features}))
    found = {}
    for name, source_, extra in (("tif", scene["tif"], {}), ("xyz", server.uri, {"CELL_SIZE": RES})):
        result, feedback = run("dltools:classifyobjects", context, INPUT=source_, FEATURES=str(boxes),
                               MODEL=str(emd), OUTPUT=str(tmp_path / f"{name}.gpkg"), **extra)
        layer = QgsVectorLayer(result["OUTPUT"], name, "ogr")
        found[name] = sorted((f["n"], f["ClassLabel"], f["Confidence"]) for f in layer.getFeatures())
    assert len(found["tif"]) == len(SQUARES) and found["xyz"] == found["tif"]
    assert any("XYZ tiles: zoom 17" in line for line in feedback.infos)
    with pytest.raises(QgsProcessingException, match="An online layer needs input features"):
        run("dltools:classifyobjects", context, INPUT=server.uri, MODEL=str(emd), CELL_SIZE=RES,
            OUTPUT=str(tmp_path / "none.gpkg"))


def test_other_providers_keep_the_clear_refusal(context, scene, tmp_path):
    """A raster layer of a provider that is neither GDAL nor an online one (here QGIS's virtual raster
    calculator) is refused, naming the layer and the provider, asking for a GeoTIFF."""
    from urllib.parse import quote

    from qgis.core import QgsProcessingException, QgsRasterLayer

    left, top = -HALF + PX0 * RES, HALF - PY0 * RES
    box = f"{left},{top - 50 * RES},{left + 60 * RES},{top}"  # xmin,ymin,xmax,ymax
    uri = (f"?crs=EPSG:3857&extent={box}&width=60&height=50&formula=%22b@1%22"
           f"&b:uri={quote(scene['tif'])}&b:provider=gdal")
    layer = QgsRasterLayer(uri, "calculated", "virtualraster")
    assert layer.isValid()
    with pytest.raises(QgsProcessingException, match="'calculated' comes from the 'virtualraster' provider.*GeoTIFF"):
        classify(context, layer, tmp_path / "never.tif", MODEL=scene["emd"])

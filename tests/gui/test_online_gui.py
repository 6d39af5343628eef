# SPDX-License-Identifier: GPL-2.0-or-later
"""An XYZ basemap in the real QGIS desktop under Xvfb: the connection's layer added from the Browser, the canvas
zoomed onto it, Classify Pixels run from its dialog over the map canvas extent (the extent widget's "Use Map
Canvas Extent"), the classified layer in the project; screenshots in build/screenshots/ (the README's is copied
from there).  The tiles come from the tests' map server on 127.0.0.1, cut from a GeoTIFF on zoom 17's grid, so
the result is checked against the same run on the GeoTIFF.  Skips, saying why, without Xvfb or the desktop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
sys.path.insert(0, str(ROOT / "tests"))

from builders import conv_module, export_onnx, read_raster, write_emd  # noqa: E402
from tile_server import ORIGIN_SHIFT, TileServer, zoom_resolution  # noqa: E402

ZOOM = 17
RES = zoom_resolution(ZOOM)
PX0, PY0, W, H = 68000 * 256 + 20, 47000 * 256 + 30, 700, 500


def _scene(tmp: Path) -> Path:
    from osgeo import gdal, osr

    y, x = np.mgrid[0:H, 0:W]
    image = np.stack([(120 + 100 * np.sin(x / 23.0)), (120 + 100 * np.cos(y / 31.0)), (x + y) % 200])
    path = tmp / "scene3857.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((-ORIGIN_SHIFT + PX0 * RES, RES, 0.0, ORIGIN_SHIFT - PY0 * RES, 0.0, -RES))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    ds.WriteArray(image.astype(np.uint8))
    ds = None
    return path


def _profile(root: Path, name: str, url: str) -> Path:
    """A throw-away QGIS profile with the plugin linked to this checkout and enabled, and an XYZ connection."""
    profile = root / "profiles" / "default"
    (profile / "python" / "plugins").mkdir(parents=True)
    (profile / "python" / "plugins" / "dltools").symlink_to(ROOT, target_is_directory=True)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\ndltools=true\nprocessing=true\n[qgis]\ncheckVersion=false\nshowTips=false\n"
        f"connections-xyz\\{name}\\url={url}\nconnections-xyz\\{name}\\zmin=0\nconnections-xyz\\{name}\\zmax=19\n",
        encoding="utf-8")
    return root


def test_classify_pixels_over_the_canvas_extent_of_an_xyz_layer_from_the_browser(tmp_path, monkeypatch):
    if shutil.which("xvfb-run") is None or shutil.which("qgis") is None:
        pytest.skip("the desktop test needs xvfb-run and the QGIS desktop (qgis)")
    scene = _scene(tmp_path)
    weight = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32).reshape(3, 3, 1, 1)
    export_onnx(conv_module(3, 3, 1, weight=weight), tmp_path / "rgb.onnx", 3, 64)
    emd = write_emd(tmp_path / "rgb.emd", "rgb.onnx", tile=64, classes=[(1, "red", (220, 40, 40)),
                                                                     (2, "green", (40, 180, 40)),
                                                                     (3, "blue", (40, 40, 220))])
    SHOTS.mkdir(parents=True, exist_ok=True)
    left, top = -ORIGIN_SHIFT + PX0 * RES, ORIGIN_SHIFT - PY0 * RES
    inner = [left + 150 * RES, top - 400 * RES, left + 550 * RES, top - 100 * RES]  # well inside the GeoTIFF
    with TileServer(str(scene), ZOOM) as server:
        url = f"{server.url}/xyz/{{z}}/{{x}}/{{y}}.png"
        plan = {"screenshots": str(SHOTS), "name": "testtiles", "url": url,
                "canvas_extent": inner, "model": str(emd), "cell_size": RES, "output": str(tmp_path / "out.tif")}
        (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        result = tmp_path / "result.json"
        profiles = _profile(tmp_path / "qgis-profiles", "testtiles", url)
        env = dict(os.environ, DLTOOLS_GUI_PLAN=str(tmp_path / "plan.json"), DLTOOLS_GUI_RESULT=str(result),
                   QT_QPA_PLATFORM="xcb", PYTHONPATH=os.pathsep.join(
                       [p for p in sys.path if p.endswith("site-packages") and ".venv" in p]
                       + [os.environ.get("PYTHONPATH", "")]), DLTOOLS_THREADS="2", QGIS_CUSTOM_CONFIG_PATH="",
                   DLTOOLS_CACHE_DIR=str(tmp_path / "cache"))
        env.pop("QGIS_PLUGINPATH", None)
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x1000x24", "qgis", "--profiles-path", str(profiles),
               "--profile", "default", "--nologo", "--noversioncheck", "--code",
               str(ROOT / "tests" / "gui" / "online_driver.py")]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the QGIS desktop did not finish in 400 s: {str(exc.stderr)[-2000:]}")
        tiles = server.tile_requests()
    if not result.is_file():
        if "cannot open display" in proc.stderr.lower() or "xvfb failed" in proc.stderr.lower():
            pytest.skip(f"no X server could be started: {proc.stderr[-500:]}")
        steps = Path(f"{result}.steps")
        done = steps.read_text(encoding="utf-8").split() if steps.is_file() else []
        pytest.fail(f"QGIS wrote no result (exit {proc.returncode}) after steps {done}: {proc.stderr[-3000:]}")
    data = json.loads(result.read_text(encoding="utf-8"))
    assert not data["errors"], "\n".join(data["errors"])
    assert data["browser_uri"]["provider"] == "wms" and data["browser_uri"]["uri"].startswith("type=xyz")
    assert data["layer"] == {"valid": True, "provider": "wms", "crs": "EPSG:3857"}
    assert data["extent_from"] in ("Use Current Map Canvas Extent", "Use Map Canvas Extent"), data["extent_widget"]
    assert data["finished"]["ok"] is True, data.get("log")
    assert "XYZ tiles: zoom 17" in data["log"]
    assert tiles  # the canvas and the run fetched tiles from the server
    # the same pixels from the GeoTIFF, on the grid the run used (the canvas extent snapped to zoom 17's pixels)
    from dltools.core.model.loader import load_model_definition
    from dltools.core.raster.request import RasterRequest
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels
    from osgeo import gdal

    out = gdal.Open(str(tmp_path / "out.tif"))
    gt, w, h = out.GetGeoTransform(), out.RasterXSize, out.RasterYSize
    cx0, cy0, cx1, cy1 = data["canvas_extent"]
    assert abs(w - (cx1 - cx0) / RES) <= 2 and abs(h - (cy1 - cy0) / RES) <= 2
    ref = tmp_path / "ref.tif"
    classify_pixels(str(scene), load_model_definition(str(emd)), str(ref), "",
                    request=RasterRequest(extent=(gt[0], gt[3] - h * RES, gt[0] + w * RES, gt[3])))
    assert np.array_equal(read_raster(ref), out.ReadAsArray())
    assert any(layer["source"] == str(tmp_path / "out.tif") for layer in data["layers"])
    shot = SHOTS / "online_xyz.png"
    assert shot.is_file() and shot.stat().st_size > 20000

# SPDX-License-Identifier: GPL-2.0-or-later
"""The tools in the real QGIS desktop under Xvfb: each dialog with a model set, the argument table read and edited,
a run, the styled output layer in the project, and screenshots (build/screenshots/*.png) a person can look at.

Skips, saying why, where Xvfb or the QGIS desktop is not installed.  The plugin is installed into a throw-away
QGIS profile (a link to this checkout, or the zip named by $DLTOOLS_GUI_PLUGIN_ZIP).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
sys.path.insert(0, str(ROOT / "tests"))

import prf_functions as prf  # noqa: E402
from builders import conv_module, export_onnx, write_emd, write_raster  # noqa: E402

PIXEL_CLASSES = [(1, "water", (0, 90, 255)), (2, "field", (240, 200, 0)), (3, "forest", (0, 140, 40))]
SQUARES = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (56, 50, 16, 0, 190)]


def _need_desktop() -> None:
    if shutil.which("xvfb-run") is None or shutil.which("Xvfb") is None:
        pytest.skip("no X server can be started: Xvfb is not installed (apt-get install xvfb; make install does it)")
    if shutil.which("qgis") is None:
        pytest.skip("the QGIS desktop (qgis) is not installed")


def _profile(root: Path, zipped: str | None = None) -> Path:
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipped = zipped or os.environ.get("DLTOOLS_GUI_PLUGIN_ZIP")
    if zipped:
        with zipfile.ZipFile(zipped) as zf:
            zf.extractall(plugins)
    else:
        (plugins / "dltools").symlink_to(ROOT, target_is_directory=True)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\ndltools=true\nprocessing=true\n[qgis]\ncheckVersion=false\nshowTips=false\n"
        "[core]\nlayer-tree-show-feature-count-for-new-layers=false\n", encoding="utf-8")
    return root


def _data(tmp: Path) -> dict:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (3, 64, 64)).astype(np.uint8)
    raster = write_raster(tmp / "image.tif", image)
    conv = conv_module(3, 3, 1, weight=np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1))
    export_onnx(conv, tmp / "pixels.onnx", 3, 32)
    pixel_emd = write_emd(tmp / "pixels.emd", "pixels.onnx", tile=32, classes=PIXEL_CLASSES, Padding=8)
    objects_emd = prf.write_function(tmp / "objects", "Brightness", prf.OBJECT_CLASSIFIER,
                                     model_type="ObjectClassification", tile=8,
                                     classes=((1, "dark", (40, 40, 40)), (2, "bright", (255, 255, 0))))
    slow_emd = prf.write_function(tmp / "slow", "Slow", prf.slow(0.25), tile=8)
    change_emd = prf.write_function(tmp / "change", "Growth", prf.CHANGE_FUNCTION,
                                    classes=((0, "no change", (0, 0, 0)), (1, "growth", (0, 200, 0))))
    later = write_raster(tmp / "later.tif", np.clip(image.astype(int) + rng.integers(-40, 40, image.shape), 0, 255)
                         .astype(np.uint8))
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp / "boxes.gpkg"))
    lyr = ds.CreateLayer("boxes", srs, ogr.wkbPolygon)
    for x, y in ((5, 10), (30, 30), (50, 50)):
        x0, y0 = 500000 + x, 4000000 - y
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x0 + 8} {y0},{x0 + 8} {y0 - 8},{x0} {y0 - 8},{x0} {y0}))"))
        lyr.CreateFeature(f)
    ds = None
    objects = _detection_data(tmp)
    pixel_json = json.loads(pixel_emd.read_text(encoding="utf-8"))
    pixel_json["ModelFile"] = str(tmp / "pixels.onnx")
    return {"pixel_json": json.dumps(pixel_json, indent=2), "raster": str(raster),
            "later": str(later), "boxes": str(tmp / "boxes.gpkg"), "pixel_emd": str(pixel_emd),
            "objects_emd": str(objects_emd), "change_emd": str(change_emd), "slow_emd": str(slow_emd), **objects}


def _detection_data(tmp: Path) -> dict:
    """A scene of squares, an Ultralytics-style detector of them with its .emd, and overlapping scored polygons for
    Non Maximum Suppression."""
    from detection_models import square_scene, yolo_v8_onnx
    from osgeo import ogr, osr

    scene = write_raster(tmp / "squares.tif", square_scene(120, 100, SQUARES), origin=(500000.0, 4000000.0), cell=1.0)
    yolo_v8_onnx(tmp / "yolo.onnx", 64, {0: "red", 1: "green"})
    emd = tmp / "yolo.emd"
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": "yolo.onnx", "ImageHeight": 64,
        "ImageWidth": 64, "ExtractBands": [0, 1, 2], "DataRange": [0, 1],
        "Classes": [{"Value": 10, "Name": "red roof", "Color": [230, 20, 20]},
                    {"Value": 20, "Name": "green roof", "Color": [20, 200, 20]}]}))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp / "scored.gpkg"))
    lyr = ds.CreateLayer("scored", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("Confidence", ogr.OFTReal))
    for x, conf in ((0, 95.0), (8, 90.0), (16, 80.0)):  # a chain: 95 removes 90, 80 stays
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("Confidence", conf)
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x} 0,{x + 10} 0,{x + 10} 10,{x} 10,{x} 0))"))
        lyr.CreateFeature(f)
    ds = None
    return {"squares": str(scene), "detector_emd": str(emd), "scored": str(tmp / "scored.gpkg")}


def _plugin_zip() -> str:
    """The zip `make package` builds (the one users install), for the "zip" run of the desktop."""
    if not (ROOT / ".git").exists():
        pytest.skip("make package lists files with git; this is not a git checkout")
    proc = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    built = [line for line in proc.stdout.splitlines() if line.startswith("Plugin zip: ")]
    assert built, proc.stdout
    return str(ROOT / built[0].split()[2])


@pytest.fixture(scope="module", params=["checkout", "zip"])
def desktop(request, tmp_path_factory):
    """The whole plan in the desktop, once with the plugin linked to this checkout and once installed from the
    plugin zip, as a user installs it (unpacked into the profile's plugin folder)."""
    _need_desktop()
    zipped = _plugin_zip() if request.param == "zip" else None
    tmp = tmp_path_factory.mktemp(f"gui-{request.param}")
    d = _data(tmp)
    SHOTS.mkdir(parents=True, exist_ok=True)
    plan = {"screenshots": str(SHOTS), "steps": [
        # first, in an empty project: the raster and the features loaded, the dialog opened as a user finds it
        # (the required raster preselected, as QGIS does), run with temporary outputs on what it preselected
        {"name": "classify_objects_temporary", "alg": "dltools:classifyobjects", "model": d["objects_emd"],
         "project_layers": [d["raster"], d["boxes"]], "active_layer": "image",
         "compare_with": "native:rasterlayerstatistics", "inputs": {"FEATURES": d["boxes"], "ALLOW_CUSTOM_CODE": True},
         "outputs": {"OUTPUT": "TEMPORARY_OUTPUT"}},
        {"name": "classify_pixels", "alg": "dltools:classifypixels", "model": d["pixel_emd"],
         "inputs": {"INPUT": d["raster"]}, "invalid": {"batch_size": "four"}, "change": {"batch_size": "4",
                                                                                      "padding": "4"},
         "outputs": {"OUTPUT": str(tmp / "classes.tif")}, "batch": True, "modeler": True},
        {"name": "classify_objects", "alg": "dltools:classifyobjects", "model": d["objects_emd"],
         "inputs": {"INPUT": d["raster"], "FEATURES": d["boxes"], "ALLOW_CUSTOM_CODE": True},
         "change": {"batch_size": "2"}, "outputs": {"OUTPUT": str(tmp / "labels.gpkg")}},
        {"name": "detect_change", "alg": "dltools:detectchange", "model": d["change_emd"],
         "inputs": {"FROM_RASTER": d["raster"], "TO_RASTER": d["later"], "ALLOW_CUSTOM_CODE": True},
         "change": {"margin": "10"}, "outputs": {"OUTPUT": str(tmp / "change.tif")}},
        # temporary outputs, as a first-time user leaves them: the run must end without any error in the log
        {"name": "detect_objects", "alg": "dltools:detectobjects", "model": d["detector_emd"],
         "inputs": {"INPUT": d["squares"]}, "change": {"padding": "8"}, "outputs": {"OUTPUT": "TEMPORARY_OUTPUT"}},
        {"name": "nms", "alg": "dltools:nonmaximumsuppression", "inputs": {"INPUT": d["scored"]},
         "outputs": {"OUTPUT": "TEMPORARY_OUTPUT"}},
        # Cancel clicked in the dialog during a run of a slow model (0.25 s a block), in QGIS's process and in the
        # child process (the provider setting)
        *({"name": f"cancel_{where}", "alg": "dltools:classifypixels", "model": d["slow_emd"],
           "inputs": {"INPUT": d["raster"], "ALLOW_CUSTOM_CODE": True},
           "outputs": {"OUTPUT": str(tmp / f"cancelled_{where}.tif")},
           "settings": {"DLTOOLS_RUN_IN_CHILD": where == "child"},
           "cancel": {"after_progress": 10, "screenshot": f"cancel_{where}"}} for where in ("in_process", "child")),
        {"name": "create_package", "alg": "dltools:packagemodel",
         "inputs": {"MODEL_DEFINITION": d["pixel_emd"]}, "outputs": {"OUTPUT": str(tmp / "pixels.dlpk")}},
        {"name": "describe_model_json", "alg": "dltools:describemodel", "model": d["pixel_json"],
         "outputs": {"OUTPUT_HTML": str(tmp / "j.html"), "OUTPUT_JSON": str(tmp / "j.json")}},
        {"name": "describe_model", "alg": "dltools:describemodel", "model": d["pixel_emd"],
         "change": {"batch_size": "9"},
         "outputs": {"OUTPUT_HTML": str(tmp / "d.html"), "OUTPUT_JSON": str(tmp / "d.json")}},
    ]}
    (tmp / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    result = tmp / "result.json"
    profiles = _profile(tmp / "qgis-profiles", zipped)
    env = dict(os.environ, DLTOOLS_GUI_PLAN=str(tmp / "plan.json"), DLTOOLS_GUI_RESULT=str(result),
               QT_QPA_PLATFORM="xcb", PYTHONPATH=os.pathsep.join(
                   [p for p in sys.path if p.endswith("site-packages") and ".venv" in p]
                   + [os.environ.get("PYTHONPATH", "")]), DLTOOLS_THREADS="2", QGIS_CUSTOM_CONFIG_PATH="")
    env.pop("QGIS_PLUGINPATH", None)
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x1000x24", "qgis", "--profiles-path", str(profiles), "--profile",
           "default", "--nologo", "--noversioncheck", "--code", str(ROOT / "tests" / "gui" / "qgis_dialog_driver.py")]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the QGIS desktop did not finish in 400 s: {str(exc.stderr)[-2000:]}")
    if not result.is_file():
        if "cannot open display" in proc.stderr.lower() or "xvfb failed" in proc.stderr.lower():
            pytest.skip(f"no X server could be started: {proc.stderr[-500:]}")
        pytest.fail(f"QGIS wrote no result (exit {proc.returncode}): {proc.stderr[-3000:]}")
    data = json.loads(result.read_text(encoding="utf-8"))
    assert not data["errors"], "\n".join(data["errors"])
    data["paths"] = {"tmp": tmp, **d}
    data["install"] = request.param
    data["plugin_dir"] = profiles / "profiles" / "default" / "python" / "plugins" / "dltools"
    return data


def test_the_desktop_loads_the_copy_installed_in_the_profile(desktop):
    loaded = Path(desktop["plugin_file"])
    assert loaded.parent == desktop["plugin_dir"], loaded
    if desktop["install"] == "zip":  # really the unpacked zip, not a link back to this checkout
        assert not desktop["plugin_dir"].is_symlink() and ROOT not in loaded.resolve().parents
        assert not (desktop["plugin_dir"] / "tests").exists() and (desktop["plugin_dir"] / "LICENSE").is_file()
        page = desktop["plugin_dir"] / "resources" / "help" / "index.html"
        for name, tool in desktop["tools"].items():  # Help opens the page that came in the zip
            assert tool["help_url"].startswith(page.as_uri()), (name, tool["help_url"])


def _rows(tool: dict, key: str = "rows_before") -> dict:
    return {r["name"]: r for r in tool[key]}


def test_plugin_loads_in_the_desktop_with_our_widgets(desktop):
    assert "dltools" in desktop["plugins"]
    for name, tool in desktop["tools"].items():
        if name in ("nms", "create_package"):  # no model
            continue
        assert tool["model_wrapper"] == "ModelWrapper" and tool["arguments_wrapper"] == "ArgumentsWrapper", name
        assert tool["group"] == "" and tool["help_url"].startswith("file://")


def test_toolbox_lists_the_tools_directly_under_the_provider(desktop):
    under = desktop["toolbox"]["under_provider"]
    assert "Classify Pixels Using Deep Learning" in under and "Describe Model" in under
    assert "Deep learning" not in under  # no extra group level


def test_classify_pixels_dialog(desktop):
    tool = desktop["tools"]["classify_pixels"]
    assert "ImageClassification" in tool["summary"] and "tile 32x32" in tool["summary"]
    for _value, name, rgb in PIXEL_CLASSES:
        assert name in tool["summary"] and "#{:02x}{:02x}{:02x}".format(*rgb) in tool["summary"]
    assert "CPU" in tool["summary"] or "GPU" in tool["summary"]
    rows = _rows(tool)
    assert rows["padding"]["default"] == "8" and rows["batch_size"]["default"] == "4"
    assert tool["value_before"] == ""
    bad = tool["invalid_seen"]["batch_size"]
    assert bad["background"] == "#ffc8c8" and "whole number" in bad["note"]
    assert tool["value_after"] == "padding 4"  # batch_size 4 is the default again: only the change is written
    assert tool["finished"]["ok"] is True
    layer = next(la for la in tool["layers"] if la["source"].endswith("classes.tif"))
    assert layer["renderer"] == "paletted"
    got = {c[1]: c[2] for c in layer["classes"]}
    assert got == {name: "#{:02x}{:02x}{:02x}".format(*rgb) for _, name, rgb in PIXEL_CLASSES}
    assert not any(w in ("ModelWrapper", "ArgumentsWrapper") for w in tool["batch_wrappers"])
    # the Graphical Modeler keeps QGIS's own widgets (which take model inputs and expressions)
    assert tool["modeler_wrappers"] == {"MODEL": "QgsProcessingModelerParameterWidget",
                                        "ARGUMENTS": "QgsProcessingModelerParameterWidget"}


def test_classify_objects_dialog_and_styled_layer(desktop):
    tool = desktop["tools"]["classify_objects"]
    assert "ObjectClassification" in tool["summary"] and "own Python function" in tool["summary"]
    rows = _rows(tool)
    assert list(rows) == ["batch_size"] and rows["batch_size"]["default"] == "4"
    assert "getParameterInfo" in tool["note_after"] and "without running it" in tool["note_after"]
    assert tool["value_after"] == "batch_size 2"
    assert tool["finished"]["ok"] is True, tool["log"]
    layer = next(la for la in tool["layers"] if "labels" in la["source"])
    assert layer["renderer"] == "categorizedSymbol" and layer["field"] == "ClassLabel"
    assert {c[0]: c[2] for c in layer["categories"]} == {"dark": "#282828", "bright": "#ffff00"}
    assert (desktop["paths"]["tmp"] / "labels.qml").is_file()


@pytest.mark.parametrize(("step", "name", "count"), [("detect_objects", "squares — detected objects", len(SQUARES)),
                                                    ("nms", "scored — non maximum suppression", 2),
                                                    ("classify_objects_temporary", "boxes — classified objects", 3)])
def test_temporary_outputs_end_without_an_error(desktop, step, name, count):
    """Detect Objects, NMS and Classify Objects with temporary outputs, from their dialogs: success, no red line
    ("The following layers were not correctly generated" came after every such run), the layer in the project
    under the ArcGIS-style name, styled by class where there are classes."""
    tool = desktop["tools"][step]
    assert tool["finished"]["ok"] is True, tool["log"]
    assert "not correctly generated" not in tool["log"] and "memory:" not in tool["log"], tool["log"]
    layer = next((la for la in tool["layers"] if la["name"] == name), None)
    assert layer is not None, [la["name"] for la in tool["layers"]]
    assert layer["provider"] == "memory"  # the temporary layer itself
    assert layer["count"] == count
    if step != "nms":
        assert layer["renderer"] == "categorizedSymbol"


def test_classify_objects_preselects_the_raster_and_explains_its_alternative(desktop):
    """With a raster and features loaded (the raster selected in the Layers panel), the dialog opens with the raster
    chosen, as QGIS's own tools preselect a required raster (checked against Raster Layer Statistics in the same
    project), the features left to the user (optional), and the image folder right under the raster saying that it
    is used instead; the run on what was preselected succeeds."""
    tool = desktop["tools"]["classify_objects_temporary"]
    assert {"INPUT", "IMAGE_FOLDER", "FEATURES"} <= set(tool["shown"])
    assert tool["active_layer"] == "image"
    assert tool["preselected"]["INPUT"] == "image" == tool["qgis_preselects"], tool
    assert tool["preselected"]["FEATURES"] == ""  # optional: empty, as QGIS leaves an optional layer
    labels = tool["labels"]
    assert labels["INPUT"]["text"] == "Input raster"  # required: no "[optional]"
    folder = labels["IMAGE_FOLDER"]
    assert folder["text"] == "…or an image folder, used instead of the input raster [optional]", folder
    assert "the input raster is not read" in folder["tooltip"], folder
    assert labels["FEATURES"]["text"] == "Input features (empty: each image is one object) [optional]"
    assert tool["finished"]["ok"] is True, tool["log"]
    assert "image" in tool["log"] and "not read" not in tool["log"]  # no folder: the preselected raster was read


@pytest.mark.parametrize(("where", "limit"), [("in_process", 1.0), ("child", 2.0)])
def test_cancel_in_the_dialog_is_acknowledged_at_once_and_stops_the_run(desktop, where, limit):
    """QGIS's own Cancel button, clicked during a run of a slow model: "Cancelling…" is in the log and over the
    progress bar the moment of the click (read before any event is processed), the run ends within ``limit``
    seconds, and no output is kept."""
    seen = desktop["tools"][f"cancel_{where}"]["cancel"]
    assert seen["enabled_before"] and 10 <= seen["progress_at_click"] < 100, seen
    assert seen["log_at_click"].count("Cancelling…") == 1, seen["log_at_click"]  # once, not twice
    assert any(text.startswith("Cancelling…") for text in seen["labels_at_click"]), seen["labels_at_click"]
    assert seen["ended"], seen
    print(f"{where}: click to end {seen['click_to_end']:.2f} s")
    assert seen["click_to_end"] < limit, f"the run went on {seen['click_to_end']:.2f} s after Cancel"
    tool = desktop["tools"][f"cancel_{where}"]
    assert tool["finished"]["ok"] is not True
    tmp = desktop["paths"]["tmp"]
    assert not (tmp / f"cancelled_{where}.tif").exists()
    assert [p.name for p in tmp.iterdir() if p.name.startswith(f"cancelled_{where}")] == []


def test_create_package_dialog_is_one_choice(desktop):
    tool = desktop["tools"]["create_package"]
    assert "MODEL_DEFINITION" in tool["shown"] and "CLASS_INFO" in tool["shown"]
    assert "MODEL_FILE" not in tool["shown"]  # kept for scripts, hidden from the dialog
    assert tool["finished"]["ok"] is True, tool["log"]
    assert (desktop["paths"]["tmp"] / "pixels.dlpk").is_file()


def test_detect_change_dialog(desktop):
    tool = desktop["tools"]["detect_change"]
    assert _rows(tool)["margin"]["default"] == "0" and tool["value_after"] == "margin 10"
    assert tool["finished"]["ok"] is True, tool["log"]
    layer = next(la for la in tool["layers"] if la["source"].endswith("change.tif"))
    assert layer["renderer"] == "paletted"


def test_describe_model_dialog(desktop):
    tool = desktop["tools"]["describe_model"]
    assert tool["finished"]["ok"] is True, tool["log"]
    report = json.loads((desktop["paths"]["tmp"] / "d.json").read_text(encoding="utf-8"))
    cp = {a["name"]: a for a in report["arguments"]["classify_pixels"]}
    assert cp["batch_size"]["used"] == "9"


def test_pasted_json_model_in_the_dialog(desktop):
    tool = desktop["tools"]["describe_model_json"]
    assert "ImageClassification" in tool["summary"] and "water" in tool["summary"]
    assert {r["name"] for r in tool["rows_before"]} >= {"padding", "batch_size"}
    assert tool["finished"]["ok"] is True, tool["log"]
    report = json.loads((desktop["paths"]["tmp"] / "j.json").read_text(encoding="utf-8"))
    assert report["origin"] == "json" and report["model_type"] == "ImageClassification"


def test_screenshots_are_written(desktop):
    for name in ("classify_pixels", "classify_pixels_invalid", "classify_objects", "detect_change", "describe_model",
                 "qgis_main_window", "toolbox"):
        path = SHOTS / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 5000, path

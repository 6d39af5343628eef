# SPDX-License-Identifier: GPL-2.0-or-later
"""What the Processing dialog does after a run (QgsProcessingAlgRunnerTask, then the results handler): every layer
a run registers to load on completion resolves to a layer, so a successful run never ends in red with "The
following layers were not correctly generated", for temporary (memory) outputs and files alike."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from builders import write_raster
from detection_models import square_scene, yolo_v8_onnx
from osgeo import ogr

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))
from co_models import grid_raster, mean_emd, mean_model_files, wkt_point, wkt_rect  # noqa: E402
from dialog_run import run_like_the_dialog, to_project  # noqa: E402
from test_classify_objects import write_layer  # noqa: E402
from test_non_maximum_suppression import CHAIN, polygon_layer  # noqa: E402

SQUARES = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (56, 50, 16, 0, 190)]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    d = tmp_path_factory.mktemp("dialog_detect")
    raster = write_raster(d / "squares.tif", square_scene(120, 100, SQUARES), origin=(500000.0, 4000000.0), cell=1.0)
    yolo_v8_onnx(d / "yolo.onnx", 64, {0: "red", 1: "green"})
    emd = d / "yolo.emd"
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": "yolo.onnx", "ImageHeight": 64,
        "ImageWidth": 64, "ExtractBands": [0, 1, 2], "DataRange": [0, 1],
        "Classes": [{"Value": 10, "Name": "red roof", "Color": [230, 20, 20]},
                    {"Value": 20, "Name": "green roof", "Color": [20, 200, 20]}]}))
    return raster, emd


def assert_clean(run, features: int) -> None:
    """The dialog's view of a good run: success, nothing red, one layer loaded with every feature."""
    assert run.ok, run.errors
    assert run.unresolved == [], run.load_entries
    assert run.handled and not [e for e in run.errors if "not correctly generated" in e], run.errors
    assert len(run.layers) == 1, [la.name() for la in run.layers]
    assert run.layers[0].featureCount() == features


@pytest.mark.parametrize("output", ["TEMPORARY_OUTPUT", "gpkg"])
def test_nms_in_the_dialog(qgis_app, tmp_path, output):
    from qgis.core import QgsProject

    layer = polygon_layer(CHAIN)
    QgsProject.instance().addMapLayer(layer)
    try:
        dest = str(tmp_path / "kept.gpkg") if output == "gpkg" else output
        run = run_like_the_dialog("dltools:nonmaximumsuppression", {"INPUT": layer.id(), "OUTPUT": to_project(dest)})
        assert_clean(run, 2)  # one class: 95 removes 90, 80 overlaps only the removed 90
        assert run.layers[0].name() == "dets — non maximum suppression"  # named as ArcGIS does: input — tool
    finally:
        QgsProject.instance().removeAllMapLayers()


@pytest.mark.parametrize("nms", [False, True])
def test_detect_objects_in_the_dialog_with_a_temporary_output(qgis_app, detector, nms):
    from qgis.core import QgsProject

    raster, emd = detector
    try:
        run = run_like_the_dialog("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd),
                                                            "ARGUMENTS": "padding 8", "RUN_NMS": nms,
                                                            "OUTPUT": to_project("TEMPORARY_OUTPUT")})
        assert_clean(run, len(SQUARES))
        assert run.layers[0].renderer().type() == "categorizedSymbol"
        assert run.layers[0].name() == "squares — detected objects"
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_classify_objects_in_the_dialog_with_a_temporary_output(qgis_app, tmp_path):
    from qgis.core import QgsProject

    mean_model_files(tmp_path, 7)
    grid = grid_raster(tmp_path / "grid.tif")
    src = write_layer(tmp_path / "in.gpkg", [wkt_point(20.3, 30.7), wkt_point(10, 20)], geom_type=ogr.wkbPoint)
    try:
        run = run_like_the_dialog("dltools:classifyobjects", {
            "INPUT": str(grid), "FEATURES": str(src), "MODEL": str(mean_emd(tmp_path, band=0, tile=7)),
            "OUTPUT": to_project("TEMPORARY_OUTPUT")})
        assert_clean(run, 2)
        assert run.layers[0].name() == "in — classified objects"
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_classify_pixels_in_the_dialog_names_its_layers(qgis_app, tmp_path):
    import numpy as np
    from builders import conv_module, export_onnx, write_emd
    from qgis.core import QgsProject

    image = np.random.default_rng(1).integers(0, 255, (3, 64, 64)).astype(np.uint8)
    raster = write_raster(tmp_path / "naip_2020.tif", image)
    export_onnx(conv_module(3, 3, 1, weight=np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)), tmp_path / "p.onnx", 3,
                32)
    emd = write_emd(tmp_path / "p.emd", "p.onnx", tile=32,
                    classes=[(1, "water", (0, 90, 255)), (2, "field", (240, 200, 0)), (3, "forest", (0, 140, 40))])
    try:
        run = run_like_the_dialog("dltools:classifypixels", {
            "INPUT": str(raster), "MODEL": str(emd), "OUTPUT": to_project("TEMPORARY_OUTPUT"),
            "OUTPUT_PROBABILITIES": to_project(str(tmp_path / "probs.tif"))})
        assert run.ok and run.handled and run.unresolved == [], run.errors
        names = sorted(la.name() for la in run.layers)
        assert names == ["naip_2020 — class probabilities", "naip_2020 — classified pixels"]
        # a name somebody chose (a model's output, a script's destinationName) stays
        named = to_project(str(tmp_path / "mine.tif"))
        named.destinationName = "my land cover"
        run = run_like_the_dialog("dltools:classifypixels", {"INPUT": str(raster), "MODEL": str(emd),
                                                             "OUTPUT": named})
        assert [la.name() for la in run.layers] == ["my land cover"]
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_cancel_is_acknowledged_at_once_and_the_run_stops_within_a_second(qgis_app, tmp_path):
    """Cancel in the dialog: "Cancelling…" is in the log the moment of the click (before the engine looks), and a
    Classify Pixels run of many model calls ends within a second of it, keeping no output."""
    import numpy as np
    from builders import conv_module, export_onnx, write_emd
    from qgis.core import QgsProject

    image = np.random.default_rng(2).integers(0, 255, (3, 1536, 1536)).astype(np.uint8)
    raster = write_raster(tmp_path / "big.tif", image)
    export_onnx(conv_module(3, 3, 3), tmp_path / "p.onnx", 3, 128)
    emd = write_emd(tmp_path / "p.emd", "p.onnx", tile=128,
                    classes=[(1, "water", (0, 90, 255)), (2, "field", (240, 200, 0)), (3, "forest", (0, 140, 40))])
    out = tmp_path / "classes.tif"
    try:
        run = run_like_the_dialog("dltools:classifypixels", {"INPUT": str(raster), "MODEL": str(emd),
                                                             "ARGUMENTS": "batch_size 1",
                                                             "OUTPUT": to_project(str(out))}, cancel_at=5.0)
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert run.cancel_to_end is not None and not run.ok
    assert any(line.startswith("Cancelling…") for line in run.said_at_cancel), run.said_at_cancel
    print(f"cancel to end: {run.cancel_to_end:.3f} s")
    assert run.cancel_to_end < 1.0, f"the run went on {run.cancel_to_end:.2f} s after Cancel"
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if "dltools" in p.name] == []


def test_cancel_stops_detect_objects_within_a_second(qgis_app, detector, tmp_path):
    from qgis.core import QgsProject

    _, emd = detector
    scene = write_raster(tmp_path / "wide.tif", square_scene(1536, 1024, SQUARES * 4), origin=(500000.0, 4000000.0),
                         cell=1.0)
    try:
        run = run_like_the_dialog("dltools:detectobjects", {"INPUT": str(scene), "MODEL": str(emd),
                                                            "ARGUMENTS": "padding 8;batch_size 1",
                                                            "OUTPUT": to_project("TEMPORARY_OUTPUT")}, cancel_at=5.0)
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert run.cancel_to_end is not None and not run.ok and run.layers == []
    assert any(line.startswith("Cancelling…") for line in run.said_at_cancel), run.said_at_cancel
    print(f"cancel to end: {run.cancel_to_end:.3f} s")
    assert run.cancel_to_end < 1.0, f"the run went on {run.cancel_to_end:.2f} s after Cancel"


def test_mixed_geometries_to_a_temporary_layer_say_what_to_do(qgis_app, tmp_path):
    """A GeoPackage 'Geometry' layer of points and polygons reaches QGIS as points; a temporary layer holds one type:
    the run says so and names the way out (a GeoPackage file holds any), instead of "Could not write feature"."""
    from qgis.core import QgsProject

    mean_model_files(tmp_path, 7)
    grid = grid_raster(tmp_path / "grid.tif")
    src = write_layer(tmp_path / "mixed.gpkg", [wkt_point(20.3, 30.7), wkt_rect(10, 20, 20, 30)])
    params = {"INPUT": str(grid), "FEATURES": str(src), "MODEL": str(mean_emd(tmp_path, band=0, tile=7))}
    try:
        run = run_like_the_dialog("dltools:classifyobjects", {**params, "OUTPUT": to_project("TEMPORARY_OUTPUT")})
        assert not run.ok
        assert any(e.startswith("OUTPUT: a feature is a polygon but the layer is of Point features (the input mixes "
                                "geometry types), and a temporary layer holds one type only: save the output to a "
                                "GeoPackage file") for e in run.errors), run.errors
        run = run_like_the_dialog("dltools:classifyobjects", {**params, "OUTPUT": to_project(str(tmp_path / "o.gpkg"))})
        assert run.ok and run.layers[0].featureCount() == 2
    finally:
        QgsProject.instance().removeAllMapLayers()

# SPDX-License-Identifier: GPL-2.0-or-later
"""Custom Python raster functions through the QGIS tools: refused by default, allowed by the per-run
ALLOW_CUSTOM_CODE parameter or by the plugin setting, exact outputs, and the function's error in the log."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import prf_functions as prf
import pytest
from builders import read_raster, write_raster
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingException, QgsSettings, QgsVectorLayer
from recording_feedback import RecordingFeedback

KEY = "Processing/Configuration/DLTOOLS_ALLOW_CUSTOM_CODE"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402


@pytest.fixture
def setting_off():
    settings = QgsSettings()
    old = settings.value(KEY, None)
    settings.setValue(KEY, False)
    yield settings
    if old is None:
        settings.remove(KEY)
    else:
        settings.setValue(KEY, old)


def _run(alg, params, context):
    import processing

    feedback = RecordingFeedback()
    return processing.run(alg, params, context=context, feedback=feedback), feedback


def _pixel_case(tmp_path):
    rng = np.random.default_rng(3)
    arr = np.stack([rng.integers(1, 50, (19, 23)), rng.integers(1, 250, (19, 23))]).astype(np.uint16)
    raster = write_raster(tmp_path / "in.tif", arr)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    right = np.zeros((19, 23))
    right[:, :-1] = arr[1][:, 1:]
    right[:, -1] = arr[1][:, -2]  # past the raster's edge the engine mirrors it (edge_fill mirror, the default)
    return raster, emd, (1 + (right > 150)).astype(np.uint8)


def test_provider_registers_the_setting(qgis_app):
    from processing.core.ProcessingConfig import ProcessingConfig

    setting = ProcessingConfig.settings.get("DLTOOLS_ALLOW_CUSTOM_CODE")
    assert setting is not None and setting.group == "Deep Learning Tools" and setting.default is False


@pytest.mark.parametrize("alg", ["dltools:classifypixels", "dltools:classifyobjects", "dltools:detectchange",
                                 "dltools:detectobjects"])
def test_every_inference_tool_has_the_parameter(qgis_app, alg):
    from qgis.core import QgsApplication

    param = QgsApplication.processingRegistry().algorithmById(alg).parameterDefinition("ALLOW_CUSTOM_CODE")
    assert param is not None and param.defaultValue() is False


def test_classify_pixels_refused_then_allowed_by_parameter_and_by_setting(qgis_context, tmp_path, setting_off):
    raster, emd, expected = _pixel_case(tmp_path)
    params = {"INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "threshold 150", "OUTPUT": str(tmp_path / "a.tif")}
    with pytest.raises(QgsProcessingException, match="ALLOW_CUSTOM_CODE"):
        _run("dltools:classifypixels", params, qgis_context)
    assert not (tmp_path / "a.tif").exists()
    result, feedback = _run("dltools:classifypixels", dict(params, ALLOW_CUSTOM_CODE=True), qgis_context)
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]), expected)
    assert any("SHA-256" in m and "NeighbourClassifier.py" in m for m in feedback.infos)
    setting_off.setValue(KEY, True)
    result, _ = _run("dltools:classifypixels", dict(params, OUTPUT=str(tmp_path / "b.tif")), qgis_context)
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]), expected)


def test_function_error_reaches_the_user(qgis_context, tmp_path, setting_off):
    raster, _, _ = _pixel_case(tmp_path)
    emd = prf.write_function(tmp_path / "bad", "Raiser", prf.raising(after_blocks=0))
    params = {"INPUT": str(raster), "MODEL": str(emd), "ALLOW_CUSTOM_CODE": True, "OUTPUT": str(tmp_path / "c.tif")}
    with pytest.raises(QgsProcessingException, match=r"Raiser.py', line \d+, in explode"):
        _run("dltools:classifypixels", params, qgis_context)
    assert not (tmp_path / "c.tif").exists()


def test_classify_objects_with_function(qgis_context, tmp_path, setting_off):
    arr = np.zeros((1, 60, 60), np.uint8)
    arr[0, :, 30:] = 200
    raster = write_raster(tmp_path / "img.tif", arr, origin=(500000.0, 4000060.0))
    emd = prf.write_function(tmp_path / "m", "Brightness", prf.OBJECT_CLASSIFIER, model_type="ObjectClassification",
                             tile=8, classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 0))))
    gpkg = tmp_path / "boxes.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(gpkg))
    lyr = ds.CreateLayer("boxes", srs, ogr.wkbPolygon)
    for x in (2, 40, 10, 50):
        x0, y0 = 500000 + x, 4000050
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x0 + 6} {y0},{x0 + 6} {y0 - 6},{x0} {y0 - 6},{x0} {y0}))"))
        lyr.CreateFeature(f)
    ds = None
    out = tmp_path / "labels.gpkg"
    params = {"INPUT": str(raster), "FEATURES": str(gpkg), "MODEL": str(emd), "ALLOW_CUSTOM_CODE": True,
              "OUTPUT": str(out)}
    _run("dltools:classifyobjects", params, qgis_context)
    layer = QgsVectorLayer(str(out), "labels", "ogr")
    assert [f["ClassLabel"] for f in layer.getFeatures()] == ["dark", "bright", "dark", "bright"]
    assert [f["Confidence"] for f in layer.getFeatures()] == pytest.approx([60.0, 75.0, 60.0, 75.0])
    # styled by class: a categorized renderer on the label field with the model's colours, as a .qml beside it
    qml = (tmp_path / "labels.qml").read_text(encoding="utf-8")
    assert 'type="categorizedSymbol"' in qml and 'attr="ClassLabel"' in qml
    assert 'value="dark"' in qml and 'value="bright"' in qml
    styled = QgsVectorLayer(str(out), "labels", "ogr")  # QGIS applies the .qml next to the file on load
    renderer = styled.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "ClassLabel"
    colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    assert colours == {"dark": "#000000", "bright": "#ffff00"}


def test_detect_change_with_function(qgis_context, tmp_path, setting_off):
    rng = np.random.default_rng(2)
    before = rng.integers(0, 100, (2, 20, 30)).astype(np.uint8)
    after = rng.integers(0, 100, (2, 20, 30)).astype(np.uint8)
    emd = prf.write_function(tmp_path / "m", "Growth", prf.CHANGE_FUNCTION,
                             classes=((0, "no change", (0, 0, 0)), (1, "growth", (0, 255, 0))))
    params = {"FROM_RASTER": str(write_raster(tmp_path / "b.tif", before)),
              "TO_RASTER": str(write_raster(tmp_path / "a.tif", after)), "MODEL": str(emd),
              "ARGUMENTS": "margin 10", "ALLOW_CUSTOM_CODE": True, "OUTPUT": str(tmp_path / "change.tif")}
    result, _ = _run("dltools:detectchange", params, qgis_context)
    expected = (after[0].astype(int) > before[0].astype(int) + 10).astype(np.uint8)
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]), expected)
    assert gdal.Open(result["OUTPUT"]).GetRasterBand(1).GetColorTable() is not None


def test_detect_objects_with_function(qgis_context, tmp_path, setting_off):
    arr = np.zeros((2, 30, 37), np.uint8)
    for r, c in ((0, 0), (5, 15), (29, 36)):
        arr[0, r, c] = 255
    raster = write_raster(tmp_path / "spots.tif", arr, origin=(1000.0, 2000.0), cell=2.0)
    emd = prf.write_function(tmp_path / "m", "SpotDetector", prf.DETECTOR, model_type="ObjectDetection",
                             classes=((1, "spot", (255, 0, 0)), (2, "big spot", (0, 0, 255))))
    params = {"INPUT": str(raster), "MODEL": str(emd), "OUTPUT": str(tmp_path / "spots.gpkg")}
    with pytest.raises(QgsProcessingException, match="ALLOW_CUSTOM_CODE"):
        _run("dltools:detectobjects", params, qgis_context)
    _run("dltools:detectobjects", dict(params, ALLOW_CUSTOM_CODE=True), qgis_context)
    layer = QgsVectorLayer(str(tmp_path / "spots.gpkg"), "spots", "ogr")
    boxes = sorted(tuple(round(v, 6) for v in (f.geometry().boundingBox().xMinimum(),
                                               f.geometry().boundingBox().yMaximum())) for f in layer.getFeatures())
    assert boxes == sorted([(1000.0, 2000.0), (1030.0, 1990.0), (1072.0, 1942.0)])
    assert {f["Class"] for f in layer.getFeatures()} == {"spot"}
    assert [f["Confidence"] for f in layer.getFeatures()] == [90.0, 90.0, 90.0]
    assert [f["Brightness"] for f in layer.getFeatures()] == [0, 0, 0]  # the function's own field (getFields)


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
def test_qgis_process_refuses_then_runs_with_allow_custom_code(tmp_path):
    raster, emd, expected = _pixel_case(tmp_path)
    params = {"INPUT": str(raster), "MODEL": str(emd), "ARGUMENTS": "threshold 150", "OUTPUT": str(tmp_path / "q.tif")}
    message = qgis_process_util.qgis_process_failure("dltools:classifypixels", params, tmp_path)
    assert "ALLOW_CUSTOM_CODE" in message and "NeighbourClassifier.py" in message
    answer = qgis_process_util.qgis_process_json("dltools:classifypixels", dict(params, ALLOW_CUSTOM_CODE=True),
                                                 tmp_path)
    np.testing.assert_array_equal(read_raster(answer["results"]["OUTPUT"]), expected)
    assert any("SHA-256" in line and "NeighbourClassifier.py" in line for line in answer["log"]["info"])


@pytest.mark.parametrize("alg", ["dltools:classifypixels", "dltools:detectchange", "dltools:detectobjects"])
def test_custom_function_on_a_cluster_only_when_allowed(qgis_context, tmp_path, setting_off, alg):
    """SCHEDULER with a model's own function: without ALLOW_CUSTOM_CODE refused before its code is loaded
    (nothing written, an existing output untouched); with it, run on the cluster's workers."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    raster, _, expected = _pixel_case(tmp_path)
    marker = tmp_path / "ran.txt"
    if alg == "dltools:detectobjects":
        source, name, kind, out = prf.DETECTOR, "SpotDetector", "ObjectDetection", tmp_path / "s.gpkg"
    else:
        source, name, kind, out = prf.NEIGHBOUR_CLASSIFIER, "NeighbourClassifier", "ImageClassification", \
            tmp_path / "s.tif"
    emd = prf.write_function(tmp_path / "m", name, f"open({str(marker)!r}, 'w').write('ran')\n" + source,
                             model_type=kind)
    out.write_bytes(b"before")
    params = {"MODEL": str(emd), "SCHEDULER": "local:1", "RETRIES": 0, "OUTPUT": str(out), "ARGUMENTS": "threshold 150"}
    if alg == "dltools:detectchange":
        params.update(FROM_RASTER=str(raster), TO_RASTER=str(raster))
    else:
        params["INPUT"] = str(raster)
    with pytest.raises(QgsProcessingException, match="ALLOW_CUSTOM_CODE"):
        _run(alg, params, qgis_context)
    assert not marker.exists() and out.read_bytes() == b"before"
    result, feedback = _run(alg, dict(params, ALLOW_CUSTOM_CODE=True), qgis_context)
    assert any("on the Dask workers of 'local:1'" in m and "SHA-256" in m for m in feedback.infos)
    assert any(m.startswith("Dask: ") and "ran on 1 worker" in m for m in feedback.infos)
    if alg == "dltools:detectobjects":
        assert QgsVectorLayer(str(out), "o", "ogr").featureCount() == 0  # no band-1 pixel is 255
    else:
        np.testing.assert_array_equal(read_raster(result["OUTPUT"]), expected)


def test_vectorize_errors_leave_no_output(qgis_context, tmp_path, setting_off):
    arr = np.zeros((1, 40, 40), np.uint8)
    raster = write_raster(tmp_path / "img.tif", arr, origin=(500000.0, 4000040.0))
    broken = prf.OBJECT_CLASSIFIER.replace('mean = float(np.asarray(chip)[0].mean())', 'mean = chip.no_such_thing')
    emd = prf.write_function(tmp_path / "o", "Brightness", broken, model_type="ObjectClassification", tile=8,
                             classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 0))))
    out = tmp_path / "labels.gpkg"
    params = {"INPUT": str(raster), "MODEL": str(emd), "ALLOW_CUSTOM_CODE": True, "OUTPUT": str(out)}
    with pytest.raises(QgsProcessingException, match=r"Brightness.py', line \d+, in vectorize"):
        _run("dltools:classifyobjects", params, qgis_context)
    assert not out.exists()
    detector = prf.DETECTOR.replace("features = []", "features = [] + None")
    emd = prf.write_function(tmp_path / "d", "SpotDetector", detector, model_type="ObjectDetection",
                             classes=((1, "spot", (255, 0, 0)),))
    out = tmp_path / "spots.gpkg"
    two_bands = write_raster(tmp_path / "two.tif", np.zeros((2, 40, 40), np.uint8), origin=(500000.0, 4000040.0))
    params = {"INPUT": str(two_bands), "MODEL": str(emd), "ALLOW_CUSTOM_CODE": True, "OUTPUT": str(out)}
    with pytest.raises(QgsProcessingException, match=r"(?s)SpotDetector.py', line \d+, in vectorize.*No output"):
        _run("dltools:detectobjects", params, qgis_context)
    assert not out.exists()

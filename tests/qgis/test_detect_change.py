# SPDX-License-Identifier: GPL-2.0-or-later
"""dltools:detectchange in QGIS: processing.run on real GeoTIFFs with change models built in the tests (their
outputs are known pixel for pixel), grids that differ, refusals, cancelling, loading with the class style, a Graphical
Modeler .model3 feeding a native algorithm, and one qgis_process run.

The models and their exact expectations come from tests/core/test_detect_change_core.py: band 0 of each date,
``d = to - from``; the 2-class model says 1 "Change" where ``|d| > T``, the 3-class one 1 "Increase" where
``d > T`` and 2 "Decrease" where ``-d > T``.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import write_raster
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProject
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "detect_change_core_tests", Path(__file__).resolve().parents[1] / "core" / "test_detect_change_core.py")
core_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(core_tests)
expected_change, make_model, synthetic_pair = core_tests.expected_change, core_tests.make_model, core_tests.synthetic_pair

ALG = "dltools:detectchange"
ORIGIN = (500000.0, 4000000.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The synthetic pair (3 bands per date, 64x64, 1 m) and three change models."""
    root = tmp_path_factory.mktemp("detect_change")
    before, after = synthetic_pair()
    return {
        "from": write_raster(root / "from.tif", before), "to": write_raster(root / "to.tif", after),
        "before": before, "after": after,
        "two": make_model(root / "two", "change"),
        "three_pair": make_model(root / "three_pair", "pair", three_class=True, two_inputs=True),
        "box": make_model(root / "box", "box", kernel=3, threshold=100.5),
    }


def run(params: dict, context, feedback=None) -> dict:
    import processing

    return processing.run(ALG, params, context=context, feedback=feedback)


def params(data, output: Path, model: str = "two", **extra) -> dict:
    out = {"FROM_RASTER": str(data["from"]), "TO_RASTER": str(data["to"]), "MODEL": str(data[model]),
           "ARGUMENTS": "padding 0", "DEVICE": 1, "OUTPUT": str(output)}
    out.update(extra)
    return out


def read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    arr = ds.GetRasterBand(1).ReadAsArray()
    ds = None
    return arr


def grid(path) -> tuple:
    ds = gdal.Open(str(path))
    out = (ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize)
    ds = None
    return out


# ------------------------------------------------------------------------------------------------ metadata
def test_algorithm_metadata(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg.displayName() == "Detect Change Using Deep Learning"
    assert alg.group() == "" and alg.groupId() == ""
    assert [p.name() for p in alg.parameterDefinitions()] == [
        "FROM_RASTER", "TO_RASTER", "MODEL", "ARGUMENTS", "EXTENT", "MASK", "CELL_SIZE", "DEVICE", "GPU_ID", "SCHEDULER",
        "RETRIES", "ALLOW_CUSTOM_CODE", "OUTPUT"]
    assert all(p.help() for p in alg.parameterDefinitions())
    assert [o.name() for o in alg.outputDefinitions()] == ["OUTPUT"]


# ------------------------------------------------------------------------------------------------ exact pixels
@pytest.mark.parametrize("model, kwargs, arguments", [
    ("two", {}, "padding 0;batch_size 4"),
    ("three_pair", {"three_class": True}, "padding 0"),
    ("box", {"kernel": 3, "threshold": 100.5}, "padding 2;batch_size 9"),
], ids=["stacked-2-class", "two-inputs-3-class", "stacked-3x3"])
def test_processing_run_gives_the_exact_change_map(qgis_context, tmp_path, data, model, kwargs, arguments):
    feedback = RecordingFeedback()
    out = tmp_path / "change.tif"
    result = run(params(data, out, model, ARGUMENTS=arguments), qgis_context, feedback)
    assert result == {"OUTPUT": str(out)}
    threshold = kwargs.pop("threshold", 20.5)
    expected = expected_change(data["before"], data["after"], threshold, **kwargs)
    assert np.array_equal(read(out), expected)
    assert grid(out) == grid(data["from"])
    assert feedback.errors == []
    assert "Area per class:" in feedback.infos
    assert feedback.progress_seen[-1] == 100
    assert out.with_suffix(".qml").is_file()


def test_run_and_load_applies_the_class_style(qgis_context, tmp_path, data):
    import processing

    out = tmp_path / "styled.tif"
    result = processing.runAndLoadResults(ALG, params(data, out, "three_pair"), context=qgis_context)
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == str(out)]
    try:
        assert result["OUTPUT"] == str(out)
        assert len(layers) == 1
        renderer = layers[0].renderer()
        assert renderer.type() == "paletted"
        assert [(c.value, c.label, c.color.name()) for c in renderer.classes()] == [
            (0, "No change", "#000000"), (1, "Increase", "#00c800"), (2, "Decrease", "#c80000")]
    finally:
        for lyr in layers:
            QgsProject.instance().removeMapLayer(lyr.id())


# ------------------------------------------------------------------------------------------------ grids
def test_to_raster_with_another_cell_size(qgis_context, tmp_path):
    """A 2 m to-raster over the 1 m from-raster: the output is on the from-grid and the log says it is resampled.
    With T = 50.5 the bilinear weights 3/4 and 1/4 keep exactly the 2 m block (see the core test)."""
    src = write_raster(tmp_path / "from.tif", np.full((3, 64, 64), 100, np.uint8))
    after2 = np.full((3, 32, 32), 100, np.uint8)
    after2[0, 5:12, 8:20] = 200
    to2 = write_raster(tmp_path / "to2m.tif", after2, cell=2.0)
    model = make_model(tmp_path / "m", "change", threshold=50.5)
    feedback = RecordingFeedback()
    out = tmp_path / "out.tif"
    run({"FROM_RASTER": str(src), "TO_RASTER": str(to2), "MODEL": str(model), "OUTPUT": str(out)}, qgis_context,
        feedback)
    assert grid(out) == grid(src)
    assert "The to-raster's grid differs from the processing grid: it is resampled on the fly (bilinear)" in feedback.infos
    expected = np.zeros((64, 64), np.uint8)
    expected[10:24, 16:40] = 1
    assert np.array_equal(read(out), expected)


def test_to_raster_in_web_mercator(qgis_context, tmp_path, data):
    before = np.full((3, 64, 64), 100, np.uint8)
    after = before.copy()
    after[0, 20:40, 24:44] = 200
    src = write_raster(tmp_path / "from.tif", before)
    native = write_raster(tmp_path / "to_utm.tif", after)
    to3857 = tmp_path / "to_3857.tif"
    gdal.Warp(str(to3857), str(native), options=gdal.WarpOptions(dstSRS="EPSG:3857", xRes=1.0, yRes=1.0,
                                                                 resampleAlg="near", dstNodata=0))
    model = make_model(tmp_path / "m", "change", threshold=50.5)
    feedback = RecordingFeedback()
    out = tmp_path / "out.tif"
    run({"FROM_RASTER": str(src), "TO_RASTER": str(to3857), "MODEL": str(model), "ARGUMENTS": "padding 2",
         "OUTPUT": str(out)}, qgis_context, feedback)
    assert grid(out) == grid(src)
    assert "The to-raster's grid differs from the processing grid: it is reprojected on the fly (bilinear)" in feedback.infos
    values = read(out)
    assert (values[22:38, 26:42] == 1).all()          # inside the block, away from its edges
    outside = np.ones((64, 64), bool)
    outside[18:42, 22:46] = False
    outside[:2], outside[-2:], outside[:, :2], outside[:, -2:] = False, False, False, False
    assert (values[outside] == 0).all()


def test_partial_overlap(qgis_context, tmp_path, data):
    shifted = write_raster(tmp_path / "shifted.tif", data["after"], origin=(ORIGIN[0] + 16, ORIGIN[1] - 8))
    feedback = RecordingFeedback()
    out = tmp_path / "out.tif"
    run(params(data, out, TO_RASTER=str(shifted)), qgis_context, feedback)
    assert grid(out) == ((ORIGIN[0] + 16, 1.0, 0.0, ORIGIN[1] - 8, 0.0, -1.0), 48, 56)
    assert "Only the overlap of the two rasters is processed: 48 x 56 cells" in feedback.infos
    assert np.array_equal(read(out), expected_change(data["before"][:, 8:, 16:], data["after"][:, :56, :48], 20.5))


def test_extent_in_another_crs_and_cell_size(qgis_context, tmp_path, data):
    """EXTENT given in EPSG:4326 is turned into the from-raster's CRS; CELL_SIZE 2 reads both dates at 2 m."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsRectangle

    full = tmp_path / "full.tif"
    run(params(data, full), qgis_context)
    window = QgsRectangle(ORIGIN[0] + 10.2, ORIGIN[1] - 49.7, ORIGIN[0] + 39.6, ORIGIN[1] - 5.3)
    to_wgs84 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32633"),
                                      QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    geo = to_wgs84.transformBoundingBox(window)
    part = tmp_path / "part.tif"
    extent = f"{geo.xMinimum():.10f},{geo.xMaximum():.10f},{geo.yMinimum():.10f},{geo.yMaximum():.10f} [EPSG:4326]"
    run(params(data, part, EXTENT=extent), qgis_context)
    (x0, _, _, y0, _, _), w, h = grid(part)
    # the window reprojected and back covers it, a little larger; snapped outwards to whole 1 m cells
    assert (ORIGIN[0] + 9 <= x0 <= ORIGIN[0] + 10) and (ORIGIN[1] - 5 <= y0 <= ORIGIN[1] - 4)
    assert 30 <= w <= 32 and 45 <= h <= 47
    c, r = int(x0 - ORIGIN[0]), int(ORIGIN[1] - y0)
    assert np.array_equal(read(part), read(full)[r:r + h, c:c + w])

    coarse = tmp_path / "coarse.tif"
    feedback = RecordingFeedback()
    run(params(data, coarse, CELL_SIZE=2.0), qgis_context, feedback)
    assert grid(coarse) == ((ORIGIN[0], 2.0, 0.0, ORIGIN[1], 0.0, -2.0), 32, 32)
    assert "The to-raster's grid differs from the processing grid: it is resampled on the fly (bilinear)" in feedback.infos


def test_non_overlapping_rasters(qgis_context, tmp_path, data):
    far = write_raster(tmp_path / "far.tif", data["after"], origin=(ORIGIN[0] + 1000, ORIGIN[1]))
    out = tmp_path / "out.tif"
    with pytest.raises(QgsProcessingException) as exc:
        run(params(data, out, TO_RASTER=str(far)), qgis_context)
    assert str(exc.value) == "Rasters 'from.tif' and 'far.tif' do not overlap: there is nothing to compare"
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ refusals
def test_bad_inputs_are_refused_clearly(qgis_context, tmp_path, data):
    detector = make_model(tmp_path / "det", "det", model_type="ObjectDetection")
    wide = make_model(tmp_path / "wide", "wide", extract=list(range(8)))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        ({"MODEL": str(detector)}, "ModelType 'ObjectDetection' is not a pixel model: a change model is an "
                                   "ImageClassification model (arcgis.learn change_detection)"),
        ({"MODEL": str(wide)}, "The model needs band 8 of the stacked dates (ExtractBands [0, 1, 2, 3, 4, 5, 6, 7]) "
                               "but the from-raster has 3 and the to-raster 3 bands"),
        ({"OUTPUT": str(blocker / "out.tif")}, f"Output folder '{blocker}' is a file, not a folder"),
        ({"ARGUMENTS": "padding 8"}, "padding 8 is too large for 16x16 tiles: it must be less than half the tile "
                                    "size (at most 7)"),
    ]
    for extra, message in cases:
        with pytest.raises(QgsProcessingException) as exc:
            run(params(data, out / "change.tif", **extra), qgis_context)
        assert str(exc.value) == message
    assert list(out.iterdir()) == []
    assert blocker.is_file()


def test_cancelling_keeps_no_output(qgis_context, tmp_path, data):
    out = tmp_path / "out"
    out.mkdir()
    feedback = RecordingFeedback(cancel_at=5)
    with pytest.raises(QgsProcessingException) as exc:
        run(params(data, out / "change.tif", ARGUMENTS="padding 0;batch_size 1"), qgis_context, feedback)
    assert str(exc.value) == "The run was cancelled. No output was kept."
    assert 5 <= max(feedback.progress_seen) < 100
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------------ Graphical Modeler
def _build_model3(path: Path) -> Path:
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("Change statistics", "Deep learning tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("before", "Before"), QgsProcessingModelParameter("before"))
    model.addModelParameter(QgsProcessingParameterRasterLayer("after", "After"), QgsProcessingModelParameter("after"))
    model.addModelParameter(QgsProcessingParameterFile("change_model", "Change model"),
                            QgsProcessingModelParameter("change_model"))
    detect = QgsProcessingModelChildAlgorithm(ALG)
    detect.setChildId("detect")
    detect.addParameterSources("FROM_RASTER", [QgsProcessingModelChildParameterSource.fromModelParameter("before")])
    detect.addParameterSources("TO_RASTER", [QgsProcessingModelChildParameterSource.fromModelParameter("after")])
    detect.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromModelParameter("change_model")])
    detect.addParameterSources("ARGUMENTS", [QgsProcessingModelChildParameterSource.fromStaticValue("padding 0")])
    detect.addParameterSources("DEVICE", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    model.addChildAlgorithm(detect)

    report = QgsProcessingModelChildAlgorithm("native:rasterlayeruniquevaluesreport")
    report.setChildId("report")
    report.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("detect", "OUTPUT")])
    report.addParameterSources("BAND", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    table = QgsProcessingModelOutput("counts")
    table.setChildId("report")
    table.setChildOutputName("OUTPUT_TABLE")
    report.setModelOutputs({"counts": table})
    model.addChildAlgorithm(report)
    assert model.toFile(str(path))
    return path


def test_model3_counts_the_change_classes(qgis_context, tmp_path, data):
    import processing
    from qgis.core import QgsProcessingModelAlgorithm

    path = _build_model3(tmp_path / "change_stats.model3")
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    assert sorted(c.algorithmId() for c in loaded.childAlgorithms().values()) == [
        ALG, "native:rasterlayeruniquevaluesreport"]
    counts = tmp_path / "counts.csv"
    result = processing.run(loaded, {"before": str(data["from"]), "after": str(data["to"]),
                                     "change_model": str(data["three_pair"]), "report:counts": str(counts)},
                            context=qgis_context)
    assert result["report:counts"] == str(counts)
    with counts.open(newline="", encoding="utf-8") as fh:
        rows = {int(float(r["value"])): int(float(r["count"])) for r in csv.DictReader(fh)}
    expected = expected_change(data["before"], data["after"], 20.5, three_class=True)
    assert rows == {v: int((expected == v).sum()) for v in (0, 1, 2)}
    assert rows[1] == 12 * 20 + 20 and rows[2] == 16 * 10


# ------------------------------------------------------------------------------------------------ qgis_process
@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
def test_qgis_process_run(tmp_path, data):
    out = tmp_path / "qp_change.tif"
    answer = qgis_process_util.qgis_process_json(ALG, {
        "FROM_RASTER": data["from"], "TO_RASTER": data["to"], "MODEL": data["three_pair"],
        "ARGUMENTS": "padding 0;batch_size 4", "DEVICE": 1, "OUTPUT": out}, tmp_path)
    assert answer["results"] == {"OUTPUT": str(out)}
    assert answer["algorithm_details"]["id"] == ALG
    assert "Area per class:" in answer["log"]["info"]
    assert np.array_equal(read(out), expected_change(data["before"], data["after"], 20.5, three_class=True))
    assert out.with_suffix(".qml").is_file()

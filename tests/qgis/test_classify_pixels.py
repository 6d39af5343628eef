# SPDX-License-Identifier: GPL-2.0-or-later
"""dltools:classifypixels in a real QgsApplication: processing.run, qgis_process and a Graphical Modeler .model3.

Synthetic cases use exact models (integer weights on integer rasters, no normalisation) whose result numpy
predicts pixel for pixel; the Esri land-cover model runs on the real NAIP scene from ../shared/testdata.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, numpy_conv_mirror, read_raster, write_emd, write_raster
from conftest import testdata_path as shared_testdata
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsRectangle,
)
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

ALG = "dltools:classifypixels"
RNG = np.random.default_rng(5)
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
VALUES = np.array([1, 2, 5])
WEIGHT = RNG.integers(-2, 3, size=(3, 3, 5, 5)).astype(np.float32)
BIAS = np.array([0.0, 1.0, -1.0], np.float32)
POINTWISE = RNG.integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
ORIGIN = (500000.0, 4000000.0)
LANDCOVER_COLOURS = [(0, 51, 0), (241, 185, 137), (236, 236, 0), (0, 0, 117), (102, 102, 0), (236, 236, 236)]
LANDCOVER_NAMES = ["Evergreen Forest", "Grassland/Herbaceous", "Bare Land", "Open Water", "Scrub/Shrub",
                   "Impervious Surface"]




@pytest.fixture(scope="module")
def conv_case(tmp_path_factory) -> dict:
    """An odd-sized raster, the 5x5 model (exact with padding >= 2) and the 1x1 model, with their expected classes."""
    folder = tmp_path_factory.mktemp("case")
    image = RNG.integers(0, 10, size=(3, 37, 53)).astype(np.uint8)
    raster = write_raster(folder / "in.tif", image, origin=ORIGIN, epsg=32633, block=16)
    export_onnx(conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS), folder / "conv5.onnx", 3, 16)
    export_onnx(conv_module(3, 3, 1, weight=POINTWISE), folder / "point.onnx", 3, 16)
    export_onnx(conv_module(3, 2, 1), folder / "two.onnx", 3, 16)
    return {
        "folder": folder, "image": image, "raster": raster,
        "conv5": write_emd(folder / "conv5.emd", "conv5.onnx", tile=16, classes=CLASSES),
        "point": write_emd(folder / "point.emd", "point.onnx", tile=16, classes=CLASSES),
        "two_channels": write_emd(folder / "two.emd", "two.onnx", tile=16, classes=CLASSES),
        "conv5_expected": VALUES[np.argmax(numpy_conv_mirror(image, WEIGHT, BIAS), axis=0)],
        "point_expected": VALUES[np.argmax(numpy_conv_mirror(image, POINTWISE, np.zeros(3)), axis=0)],
    }


def classify(context, feedback=None, **params) -> dict:
    import processing

    return processing.run(ALG, params, context=context, feedback=feedback or RecordingFeedback())


def side_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}.aux.xml"), path.with_suffix(".qml")) if p.exists()]


# ------------------------------------------------------------------------------------------ processing.run
def test_algorithm_is_registered(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Classify Pixels Using Deep Learning"
    names = [p.name() for p in alg.parameterDefinitions()]
    for name in ("INPUT", "MODEL", "ARGUMENTS", "EXTENT", "CELL_SIZE", "DEVICE", "OUTPUT", "OUTPUT_PROBABILITIES"):
        assert name in names


def test_processing_run_equals_the_whole_image_model(context, tmp_path, conv_case):
    out, probs = tmp_path / "classes.tif", tmp_path / "probs.tif"
    feedback = RecordingFeedback()
    result = classify(context, feedback, INPUT=str(conv_case["raster"]), MODEL=str(conv_case["conv5"]),
                      ARGUMENTS="padding 2;batch_size 6", OUTPUT=str(out), OUTPUT_PROBABILITIES=str(probs))
    assert result["OUTPUT"] == str(out) and result["OUTPUT_PROBABILITIES"] == str(probs)
    assert np.array_equal(read_raster(out), conv_case["conv5_expected"])
    logits = numpy_conv_mirror(conv_case["image"], WEIGHT, BIAS)
    e = np.exp(logits - logits.max(axis=0))
    np.testing.assert_allclose(read_raster(probs), e / e.sum(axis=0), atol=1e-5)
    assert "batch_size 6 is not a perfect square: using 4" in feedback.infos
    assert any(m.startswith("Area per class:") for m in feedback.infos)
    qml = out.with_suffix(".qml").read_text()
    assert qml.count("<paletteEntry") == 3


def test_loaded_result_is_styled_with_class_names(qgis_app, tmp_path, conv_case):
    """As the dialog does: the output is loaded into the project with the paletted class style (names, colours)."""
    import processing

    out = tmp_path / "loaded.tif"
    result = processing.runAndLoadResults(ALG, {"INPUT": str(conv_case["raster"]), "MODEL": str(conv_case["point"]),
                                                "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == str(out)]
    try:
        assert len(layers) == 1
        renderer = layers[0].renderer()
        assert renderer.type() == "paletted"
        assert [(c.value, c.label, c.color.getRgb()[:3]) for c in renderer.classes()] == CLASSES
    finally:
        for lyr in layers:
            QgsProject.instance().removeMapLayer(lyr.id())


def test_extent_in_another_crs(context, tmp_path, conv_case):
    """An EPSG:4326 rectangle is reprojected to the raster's CRS and snapped outwards to its pixels."""
    wgs84, utm = QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:32633")
    to_wgs = QgsCoordinateTransform(utm, wgs84, QgsProject.instance())
    inner = QgsRectangle(ORIGIN[0] + 10.3, ORIGIN[1] - 30.6, ORIGIN[0] + 40.2, ORIGIN[1] - 8.4)
    geo = to_wgs.transformBoundingBox(inner)
    back = QgsCoordinateTransform(wgs84, utm, QgsProject.instance()).transformBoundingBox(geo)
    c0, c1 = int(np.floor(back.xMinimum() - ORIGIN[0])), int(np.ceil(back.xMaximum() - ORIGIN[0]))
    r0, r1 = int(np.floor(ORIGIN[1] - back.yMaximum())), int(np.ceil(ORIGIN[1] - back.yMinimum()))
    out = tmp_path / "part.tif"
    extent = f"{geo.xMinimum()!r},{geo.xMaximum()!r},{geo.yMinimum()!r},{geo.yMaximum()!r} [EPSG:4326]"
    classify(context, INPUT=str(conv_case["raster"]), MODEL=str(conv_case["point"]), ARGUMENTS="padding 0",
             EXTENT=extent, OUTPUT=str(out))
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == (ORIGIN[0] + c0, 1.0, 0.0, ORIGIN[1] - r0, 0.0, -1.0)
    assert (ds.RasterXSize, ds.RasterYSize) == (c1 - c0, r1 - r0)
    assert 28 <= c1 - c0 <= 33 and 20 <= r1 - r0 <= 25  # the rectangle, plus what reprojection adds
    assert QgsCoordinateReferenceSystem.fromWkt(ds.GetProjection()) == utm
    assert np.array_equal(ds.ReadAsArray(), conv_case["point_expected"][r0:r1, c0:c1])


def test_cell_size_resamples(context, tmp_path, conv_case):
    out = tmp_path / "coarse.tif"
    feedback = RecordingFeedback()
    classify(context, feedback, INPUT=str(conv_case["raster"]), MODEL=str(conv_case["point"]), CELL_SIZE=3.0,
             OUTPUT=str(out))
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (18, 13)  # ceil(53 / 3), ceil(37 / 3)
    assert ds.GetGeoTransform() == (ORIGIN[0], 3.0, 0.0, ORIGIN[1], 0.0, -3.0)
    classes = ds.ReadAsArray()
    # cells whose centre lies past the raster (row 12: 36 m .. 39 m down, the raster ends at 37 m) are NoData
    assert (classes[12] == 255).all()
    assert np.isin(classes[:12], VALUES).all()
    assert "Processing grid: 18 x 13 cells of 3 x 3" in feedback.infos


def test_tile_larger_than_the_raster(context, tmp_path, conv_case):
    image = RNG.integers(0, 10, size=(3, 9, 6)).astype(np.uint8)
    raster = write_raster(tmp_path / "small.tif", image, block=None)
    export_onnx(conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS), tmp_path / "big.onnx", 3, 64)
    emd = write_emd(tmp_path / "big.emd", "big.onnx", tile=64, classes=CLASSES)
    out = tmp_path / "out.tif"
    classify(context, INPUT=str(raster), MODEL=str(emd), ARGUMENTS="padding 8", OUTPUT=str(out))
    assert np.array_equal(read_raster(out), VALUES[np.argmax(numpy_conv_mirror(image, WEIGHT, BIAS), axis=0)])


def test_cancel_after_the_first_progress_update(context, tmp_path, conv_case):
    out, probs = tmp_path / "out.tif", tmp_path / "probs.tif"
    feedback = RecordingFeedback(cancel_on_progress=True)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        classify(context, feedback, INPUT=str(conv_case["raster"]), MODEL=str(conv_case["conv5"]),
                 ARGUMENTS="padding 2;batch_size 1", OUTPUT=str(out), OUTPUT_PROBABILITIES=str(probs))
    assert feedback.isCanceled()
    assert side_files(out) == [] and side_files(probs) == []


def test_bad_inputs_are_clear_errors(context, tmp_path, conv_case):
    raster, image = conv_case["raster"], conv_case["image"]

    def fails(message: str, **params) -> None:
        params.setdefault("INPUT", str(raster))
        params.setdefault("MODEL", str(conv_case["point"]))
        out = Path(params.setdefault("OUTPUT", str(tmp_path / "out.tif")))
        with pytest.raises(QgsProcessingException, match=message):
            classify(context, **params)
        assert side_files(out) == []

    two_bands = write_raster(tmp_path / "two.tif", image[:2].astype(np.uint16))
    fails(r"needs band 3 \(ExtractBands \[0, 1, 2\], 0-based\) but raster 'two.tif' has only 2 band\(s\)",
          INPUT=str(two_bands))
    no_crs = write_raster(tmp_path / "nocrs.tif", image, epsg=None)
    fails("'nocrs.tif' has no coordinate reference system: assign one", INPUT=str(no_crs))
    fails("does not overlap the raster", EXTENT="0,10,0,10 [EPSG:32633]")
    fails(r"The model returns 2 channels per pixel, but the model definition has 3 classes: expected 3 \(one per "
          r"class\), 4 \(background first\) or 1", MODEL=str(conv_case["two_channels"]))
    fails("Output folder '.*no_such_folder' does not exist", OUTPUT=str(tmp_path / "no_such_folder" / "out.tif"))


def test_read_only_output_folder(context, tmp_path, conv_case):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable, nothing to refuse")
        with pytest.raises(QgsProcessingException, match="Output folder '.*locked' is not writable"):
            classify(context, INPUT=str(conv_case["raster"]), MODEL=str(conv_case["point"]),
                     OUTPUT=str(folder / "out.tif"))
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------------------------------ the Esri land-cover model
@pytest.fixture(scope="module")
def landcover_full(qgis_app, tmp_path_factory) -> dict:
    """One full run of Esri's land-cover model on the 2020 NAIP scene (about 50 chips, the slow part)."""
    emd = shared_testdata("esri", "landcover", "trained.emd")
    naip = shared_testdata("naip", "naip_m_4709963_se_14_1_20200831.tif")
    folder = tmp_path_factory.mktemp("landcover")
    out = folder / "landcover.tif"
    ctx = QgsProcessingContext()
    ctx.setProject(QgsProject.instance())
    feedback = RecordingFeedback()
    classify(ctx, feedback, INPUT=str(naip), MODEL=str(emd), OUTPUT=str(out))
    return {"emd": emd, "naip": naip, "out": out, "folder": folder, "feedback": feedback}


def test_landcover_lakes_are_open_water(landcover_full):
    out, naip = landcover_full["out"], landcover_full["naip"]
    classes = read_raster(out)
    rgbn = read_raster(naip).astype(np.float64)
    assert classes.shape == rgbn.shape[1:]
    green, nir = rgbn[1], rgbn[3]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndwi = (green - nir) / (green + nir)
    water = ndwi > 0.3
    deep = water.copy()  # a 5-pixel erosion (square structuring element), edges excluded
    for dy in range(-5, 6):
        for dx in range(-5, 6):
            deep[5:-5, 5:-5] &= water[5 + dy:water.shape[0] - 5 + dy, 5 + dx:water.shape[1] - 5 + dx]
    deep[:5], deep[-5:], deep[:, :5], deep[:, -5:] = False, False, False, False
    assert deep.sum() > 2000, "the scene's lakes should give many deep-water pixels"
    share = (classes[deep] == 3).mean()
    print(f"Open Water on {deep.sum()} deep-lake pixels: {share:.3f}")
    assert share >= 0.9
    infos = landcover_full["feedback"].infos
    assert "The model's batch dimension is fixed at 1: using batch size 1" in infos
    assert any("of 256x256 pixels with padding 64" in m for m in infos)
    assert "Normalisation: DataRange: linear stretch from 0..255 (8-bit) to [0, 1]" in infos


def test_landcover_style(landcover_full):
    out = landcover_full["out"]
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte
    assert ds.GetGeoTransform() == gdal.Open(str(landcover_full["naip"])).GetGeoTransform()
    ct = band.GetColorTable()
    assert [ct.GetColorEntry(v)[:3] for v in range(6)] == LANDCOVER_COLOURS
    rat = band.GetDefaultRAT()
    assert [rat.GetNameOfCol(i) for i in range(rat.GetColumnCount())] == ["Value", "Class", "Red", "Green", "Blue"]
    rows = [tuple(rat.GetValueAsInt(i, c) if c != 1 else rat.GetValueAsString(i, 1) for c in range(5))
            for i in range(rat.GetRowCount())]
    assert rows == [(v, LANDCOVER_NAMES[v], *LANDCOVER_COLOURS[v]) for v in range(6)]
    qml = out.with_suffix(".qml").read_text()
    assert qml.count("<paletteEntry") == 6
    for name in LANDCOVER_NAMES:
        assert f'label="{name}"' in qml
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(out), "landcover")
    assert layer.isValid()
    assert layer.loadNamedStyle(str(out.with_suffix(".qml")))[1]
    assert layer.renderer().type() == "paletted"
    assert [c.label for c in layer.renderer().classes()] == LANDCOVER_NAMES


def test_landcover_repeatable_and_dlpk_gives_the_same(landcover_full, context, tmp_path):
    emd, naip = landcover_full["emd"], landcover_full["naip"]
    gt = gdal.Open(str(naip)).GetGeoTransform()
    # a 300 m x 250 m window (60 x 50 pixels; 1 chip) around the scene centre
    x0, y0 = gt[0] + 400 * 5.0, gt[3] - 300 * 5.0
    extent = f"{x0},{x0 + 300},{y0 - 250},{y0} [EPSG:26914]"
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.tif"
        classify(context, INPUT=str(naip), MODEL=str(emd), EXTENT=extent, OUTPUT=str(out))
        runs.append(read_raster(out))
    assert runs[0].shape == (50, 60)
    assert np.array_equal(runs[0], runs[1]) and runs[0].dtype == runs[1].dtype

    dlpk = tmp_path / "landcover.dlpk"
    with zipfile.ZipFile(dlpk, "w") as zf:
        zf.write(emd, "trained.emd")
        zf.write(emd.with_name("trained.onnx"), "trained.onnx")
    out = tmp_path / "dlpk.tif"
    classify(context, INPUT=str(naip), MODEL=str(dlpk), EXTENT=extent, OUTPUT=str(out))
    assert np.array_equal(read_raster(out), runs[0])
    assert gdal.Open(str(out)).GetGeoTransform() == (x0, 5.0, 0.0, y0, 0.0, -5.0)
    assert out.with_suffix(".qml").read_text().count("<paletteEntry") == 6


# ------------------------------------------------------------------------------------------ qgis_process
def test_qgis_process_run(tmp_path, conv_case):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    out = tmp_path / "qp.tif"
    answer = qgis_process_util.qgis_process_json(ALG, {
        "INPUT": conv_case["raster"], "MODEL": conv_case["conv5"], "ARGUMENTS": "padding 2;batch_size 4",
        "OUTPUT": out}, tmp_path)
    assert answer["results"]["OUTPUT"] == str(out)
    assert np.array_equal(read_raster(out), conv_case["conv5_expected"])
    assert out.with_suffix(".qml").exists()
    assert any(line.startswith("Tiles: 20 (5 x 4) of 16x16 pixels with padding 2") for line in answer["log"]["info"])

    message = qgis_process_util.qgis_process_failure(ALG, {
        "INPUT": conv_case["raster"], "MODEL": conv_case["two_channels"], "OUTPUT": tmp_path / "bad.tif"}, tmp_path)
    assert "The model returns 2 channels per pixel, but the model definition has 3 classes" in message
    assert not (tmp_path / "bad.tif").exists()


# ------------------------------------------------------------------------------------------ Graphical Modeler
def test_model3_classify_then_reclassify(context, tmp_path, conv_case):
    """A .model3 built with the API: classify pixels, then native:reclassifybytable (1->10, 2->20, 5->50)."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )

    static = QgsProcessingModelChildParameterSource.fromStaticValue
    model = QgsProcessingModelAlgorithm("classify and reclassify", "dltools tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("raster", "Raster"), QgsProcessingModelParameter("raster"))
    model.addModelParameter(QgsProcessingParameterFile("model", "Model"), QgsProcessingModelParameter("model"))

    classify_child = QgsProcessingModelChildAlgorithm(ALG)
    classify_child.setChildId("classify")
    classify_child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("raster")])
    classify_child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromModelParameter("model")])
    classify_child.addParameterSources("ARGUMENTS", [static("padding 2;batch_size 4")])
    model.addChildAlgorithm(classify_child)

    reclass = QgsProcessingModelChildAlgorithm("native:reclassifybytable")
    reclass.setChildId("reclass")
    reclass.addParameterSources("INPUT_RASTER", [QgsProcessingModelChildParameterSource.fromChildOutput("classify",
                                                                                                       "OUTPUT")])
    reclass.addParameterSources("RASTER_BAND", [static(1)])
    reclass.addParameterSources("TABLE", [static(["1", "1", "10", "2", "2", "20", "5", "5", "50"])])
    reclass.addParameterSources("RANGE_BOUNDARIES", [static(2)])  # min <= value <= max
    reclass.addParameterSources("NO_DATA", [static(0)])
    reclass.addParameterSources("DATA_TYPE", [static(0)])  # Byte
    output = QgsProcessingModelOutput("reclassified")
    output.setChildId("reclass")
    output.setChildOutputName("OUTPUT")
    reclass.setModelOutputs({"reclassified": output})
    model.addChildAlgorithm(reclass)

    path = tmp_path / "classify_reclassify.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    assert [c.algorithmId() for c in loaded.childAlgorithms().values()] == [ALG, "native:reclassifybytable"] or \
        sorted(c.algorithmId() for c in loaded.childAlgorithms().values()) == sorted([ALG, "native:reclassifybytable"])
    out_name = next(p.name() for p in loaded.destinationParameterDefinitions())
    out = tmp_path / "reclassified.tif"
    result = processing.run(loaded, {"raster": str(conv_case["raster"]), "model": str(conv_case["conv5"]),
                                     out_name: str(out)}, context=context, feedback=RecordingFeedback())
    assert result[out_name] == str(out)
    assert np.array_equal(read_raster(out), conv_case["conv5_expected"].astype(np.uint8) * 10)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Raster outputs are GeoTIFF, and only GeoTIFF names are taken (core's BlockWriter writes nothing else).

The dialogs offer GeoTIFF only (the provider's supported raster extensions, which QGIS's file filter, default
extension and TEMPORARY_OUTPUT follow); processing.run and qgis_process, which do not check extensions, get a
clear refusal naming the parameter before anything is written; TEMPORARY_OUTPUT and ``.TIFF`` keep working.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, numpy_conv_mirror, read_raster, write_emd, write_raster
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameters,
    QgsProperty,
    QgsRasterFileWriter,
    QgsSettings,
)
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "detect_change_core_for_geotiff", Path(__file__).resolve().parents[1] / "core" / "test_detect_change_core.py")
_change = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_change)

PIXELS, CHANGE = "dltools:classifypixels", "dltools:detectchange"
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
WEIGHT = np.random.default_rng(11).integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
DEFAULT_RASTER_EXT = "Processing/Configuration/DefaultOutputRasterLayerExt"


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("geotiff_case")
    image = np.random.default_rng(12).integers(0, 10, size=(3, 20, 24)).astype(np.uint8)
    export_onnx(conv_module(3, 3, 1, weight=WEIGHT), folder / "point.onnx", 3, 16)
    before, after = _change.synthetic_pair(h=32, w=32)
    return {
        "raster": write_raster(folder / "in.tif", image), "image": image,
        "emd": write_emd(folder / "point.emd", "point.onnx", tile=16, classes=CLASSES),
        "expected": np.array([1, 2, 5])[np.argmax(numpy_conv_mirror(image, WEIGHT, np.zeros(3)), axis=0)],
        "from": write_raster(folder / "from.tif", before), "to": write_raster(folder / "to.tif", after),
        "change_model": _change.make_model(folder / "change", "change"),
        "change_expected": _change.expected_change(before, after, 20.5),
    }


def run(alg: str, context, **params) -> dict:
    import processing

    return processing.run(alg, params, context=context, feedback=RecordingFeedback())


def pixels(case, **extra) -> dict:
    return {"INPUT": str(case["raster"]), "MODEL": str(case["emd"]), "DEVICE": 1, **extra}


def change(case, **extra) -> dict:
    return {"FROM_RASTER": str(case["from"]), "TO_RASTER": str(case["to"]), "MODEL": str(case["change_model"]),
            "ARGUMENTS": "padding 0", "DEVICE": 1, **extra}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_dialogs_offer_geotiff_only(qgis_app):
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("dltools").supportedOutputRasterLayerExtensions() == ["tif", "tiff"]
    for alg_id, name in ((PIXELS, "OUTPUT"), (PIXELS, "OUTPUT_PROBABILITIES"), (CHANGE, "OUTPUT")):
        param = registry.algorithmById(alg_id).parameterDefinition(name)
        assert param.supportedOutputRasterLayerExtensions() == ["tif", "tiff"], (alg_id, name)
        assert param.defaultFileExtension() == "tif"
        assert param.createFileFilter().split(";;")[:2] == ["TIF files (*.tif)", "TIFF files (*.tiff)"]
        assert param.isSupportedOutputValue("/x/out.tif", QgsProcessingContext())[0]
        assert not param.isSupportedOutputValue("/x/out.img", QgsProcessingContext())[0]


def test_temporary_output_is_a_tif_even_when_the_user_default_is_another_format(qgis_app):
    """The user's Processing default raster format (Options > Processing > General) set to .img: native tools then
    write .img, ours still resolve TEMPORARY_OUTPUT to a .tif (the provider's first supported format)."""
    settings = QgsSettings()
    old = settings.value(DEFAULT_RASTER_EXT)
    settings.setValue(DEFAULT_RASTER_EXT, QgsRasterFileWriter.supportedFormatExtensions().index("img"))
    try:
        registry = QgsApplication.processingRegistry()
        assert registry.algorithmById("native:slope").parameterDefinition("OUTPUT").defaultFileExtension() == "img"
        param = registry.algorithmById(PIXELS).parameterDefinition("OUTPUT")
        assert param.defaultFileExtension() == "tif"
        resolved = QgsProcessingParameters.parameterAsOutputLayer(param, "TEMPORARY_OUTPUT", QgsProcessingContext())
        assert resolved.endswith("/OUTPUT.tif"), resolved
    finally:
        if old is None:
            settings.remove(DEFAULT_RASTER_EXT)
        else:
            settings.setValue(DEFAULT_RASTER_EXT, old)


def test_temporary_output_and_upper_case_tiff_are_written(context, tmp_path, case):
    result = run(PIXELS, context, **pixels(case, OUTPUT="TEMPORARY_OUTPUT", OUTPUT_PROBABILITIES="TEMPORARY_OUTPUT"))
    assert result["OUTPUT"].endswith(".tif") and result["OUTPUT_PROBABILITIES"].endswith(".tif")
    assert gdal.Open(result["OUTPUT"]).GetDriver().ShortName == "GTiff"
    assert np.array_equal(read_raster(result["OUTPUT"]), case["expected"])
    out = tmp_path / "classes.TIFF"
    run(PIXELS, context, **pixels(case, OUTPUT=str(out)))
    assert np.array_equal(read_raster(out), case["expected"])
    result = run(CHANGE, context, **change(case, OUTPUT="TEMPORARY_OUTPUT"))
    assert result["OUTPUT"].endswith(".tif")
    assert np.array_equal(read_raster(result["OUTPUT"]), case["change_expected"])


@pytest.mark.parametrize("name", ["out.img", "out.vrt", "out", "out.tif.png"])
def test_processing_run_refuses_other_names_before_writing(context, tmp_path, case, name):
    folder = tmp_path / "outputs"
    folder.mkdir()
    bad = folder / name
    with pytest.raises(QgsProcessingException, match=rf"OUTPUT: '.*{name}' has .*GeoTIFF only: name the file "
                                                     r"\.tif or \.tiff"):
        run(PIXELS, context, **pixels(case, OUTPUT=str(bad)))
    with pytest.raises(QgsProcessingException, match=r"OUTPUT_PROBABILITIES: '.*' has .*GeoTIFF only"):
        run(PIXELS, context, **pixels(case, OUTPUT=str(folder / "ok.tif"), OUTPUT_PROBABILITIES=str(bad)))
    with pytest.raises(QgsProcessingException, match=r"^(?s:.*)OUTPUT: '.*' has .*GeoTIFF only"):
        run(CHANGE, context, **change(case, OUTPUT=str(bad)))
    assert listing(folder) == []


def test_an_expression_built_name_is_refused_by_the_algorithm_itself(context, tmp_path, case):
    """A destination from an expression (as a model or a batch builds it) is only known in processAlgorithm:
    the same refusal comes from there, still before anything is written."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    for alg, params in ((PIXELS, pixels(case)), (CHANGE, change(case))):
        dest = QgsProcessingOutputLayerDefinition(QgsProperty.fromExpression(f"'{folder}/made' || '.img'"))
        with pytest.raises(QgsProcessingException, match=r"OUTPUT: '.*made\.img' has '\.img', but this tool "
                                                         r"writes GeoTIFF only"):
            run(alg, context, **params, OUTPUT=dest)
    assert listing(folder) == []


def test_qgis_process_refuses_an_img_output(tmp_path, case):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    folder = tmp_path / "outputs"
    folder.mkdir()
    message = qgis_process_util.qgis_process_failure(PIXELS, pixels(case, OUTPUT=folder / "out.img"), tmp_path)
    assert "OUTPUT: '" in message and "out.img' has '.img', but this tool writes GeoTIFF only" in message, message
    assert listing(folder) == []

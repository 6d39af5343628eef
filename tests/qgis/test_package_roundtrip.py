# SPDX-License-Identifier: GPL-2.0-or-later
"""Package round trip: Create Deep Learning Package -> Extract Deep Learning Package -> Classify Pixels on the
extracted .emd gives the very raster Classify Pixels gives on the .dlpk (and on the original .emd), all through
processing.run, with a tiny ONNX model made here whose class map numpy predicts exactly."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from builders import conv_module, export_onnx, numpy_conv_mirror, write_emd, write_raster
from osgeo import gdal

CLASSES = [(3, "Field", (230, 200, 40)), (7, "Forest", (20, 120, 20))]


def run(alg: str, params: dict, context) -> dict:
    import processing

    return processing.run(f"dltools:{alg}", params, context=context)


def read(path: str | Path) -> tuple[np.ndarray, tuple, str, float | None, list[tuple[int, str]]]:
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    rat = band.GetDefaultRAT()
    out = (band.ReadAsArray(), ds.GetGeoTransform(), ds.GetProjection(), band.GetNoDataValue(),
           [(rat.GetValueAsInt(i, 0), rat.GetValueAsString(i, 1)) for i in range(rat.GetRowCount())])
    ds = None
    return out


def test_package_extract_then_classify_gives_the_same_raster(qgis_context, tmp_path: Path):
    # A 3x3 convolution, 3 bands -> 2 class scores; the bias of 0.5 on the second score rules out ties.
    rng = np.random.default_rng(11)
    weight = rng.integers(-2, 3, size=(2, 3, 3, 3)).astype(np.float32)
    bias = np.array([0.0, 0.5], np.float32)
    src = tmp_path / "src"
    src.mkdir()
    export_onnx(conv_module(3, 2, 3, weight=weight, bias=bias), src / "fields.onnx", 3, 16)
    emd = write_emd(src / "fields.emd", "fields.onnx", tile=16, classes=CLASSES)
    image = rng.integers(0, 50, size=(3, 40, 52)).astype(np.uint8)
    image[:, 30:, :8] = 0
    raster = write_raster(tmp_path / "image.tif", image, nodata=0)

    dlpk = tmp_path / "fields.dlpk"
    assert run("packagemodel", {"MODEL_DEFINITION": str(emd), "SUMMARY": "round trip", "OUTPUT": str(dlpk)},
               qgis_context) == {"OUTPUT": str(dlpk)}
    with zipfile.ZipFile(dlpk) as zf:
        assert sorted(zf.namelist()) == ["fields.emd", "fields.onnx"]
    folder = tmp_path / "extracted"
    extracted = run("extractpackage", {"INPUT": str(dlpk), "OUTPUT_FOLDER": str(folder)}, qgis_context)
    assert (extracted["EMD"], extracted["SUMMARY"]) == (str(folder / "fields.emd"), "round trip")
    assert Path(extracted["MODEL_FILE"]).read_bytes() == (src / "fields.onnx").read_bytes()

    outputs = {}
    for name, model in (("dlpk", dlpk), ("extracted", extracted["EMD"]), ("original", emd)):
        out = tmp_path / f"classified_{name}.tif"
        result = run("classifypixels", {"INPUT": str(raster), "MODEL": str(model), "ARGUMENTS": "padding 2;batch_size 4",
                                        "DEVICE": 1, "OUTPUT": str(out)}, qgis_context)
        assert result["OUTPUT"] == str(out)
        outputs[name] = read(out)

    values, gt, crs, nodata, rat = outputs["dlpk"]
    valid = (image != 0).any(axis=0)
    scores = numpy_conv_mirror(np.where(valid, image, 0).astype(np.float64), weight, bias)
    expected = np.where(np.argmax(scores, axis=0) == 1, 7, 3).astype(np.uint8)
    expected[~valid] = nodata
    assert np.array_equal(values, expected)
    assert (values == 3).sum() > 100 and (values == 7).sum() > 100
    assert rat == [(3, "Field"), (7, "Forest")]
    for name in ("extracted", "original"):
        other = outputs[name]
        assert np.array_equal(other[0], values), name
        assert other[1:] == (gt, crs, nodata, rat), name
    assert (tmp_path / "classified_extracted.qml").read_text(encoding="utf-8") == \
        (tmp_path / "classified_dlpk.qml").read_text(encoding="utf-8")

# SPDX-License-Identifier: GPL-2.0-or-later
"""Inputs that used to crash, hang or leak raw exceptions: each now gives a clear message (or a correct output).

The dangerous ones (a FIFO as MODEL, threads 100000, an .emd nested 100,000 levels deep) run in a child process
with a timeout (:mod:`isolated_processing`), so a regression shows as a failed test rather than a hung suite.
Every test checks that its inputs are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, numpy_conv_same, read_raster, write_emd, write_raster
from isolated_processing import run_isolated
from qgis.core import QgsProcessingException
from recording_feedback import RecordingFeedback

CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
VALUES = np.array([1, 2, 5])
WEIGHT = np.random.default_rng(21).integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)


def digest(*paths: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def case(tmp_path) -> dict:
    image = np.random.default_rng(22).integers(0, 9, size=(3, 20, 18)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    export_onnx(conv_module(3, 3, 1, weight=WEIGHT), tmp_path / "m.onnx", 3, 8)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=CLASSES)
    expected = VALUES[np.argmax(numpy_conv_same(image, WEIGHT, np.zeros(3)), axis=0)]
    return {"raster": raster, "emd": emd, "onnx": tmp_path / "m.onnx", "expected": expected, "folder": tmp_path,
            "image": image}


def classify(context, **params) -> tuple[dict, RecordingFeedback]:
    import processing

    feedback = RecordingFeedback()
    return processing.run("dltools:classifypixels", params, context=context, feedback=feedback), feedback


def classify_error(context, **params) -> str:
    with pytest.raises(QgsProcessingException) as info:
        classify(context, **params)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ in a child process
def test_threads_100000_are_capped_with_a_warning(case):
    before = digest(case["raster"], case["emd"], case["onnx"])
    out = case["folder"] / "out.tif"
    got = run_isolated("dltools:classifypixels", {"INPUT": str(case["raster"]), "MODEL": str(case["emd"]),
                                                  "ARGUMENTS": "threads 100000", "OUTPUT": str(out)},
                       env={"DLTOOLS_THREADS": ""})
    assert got["returncode"] == 0 and got["ok"], got
    cores = len(os.sched_getaffinity(0))
    assert f"Argument 'threads' 100000 is more than the {cores} CPU cores this process may use: using {cores}" \
        in got["log"]
    assert np.array_equal(read_raster(out), case["expected"])
    assert digest(case["raster"], case["emd"], case["onnx"]) == before


def test_fifo_as_model_is_refused_without_hanging(case):
    fifo = case["folder"] / "fifo.emd"
    os.mkfifo(fifo)
    out = case["folder"] / "out.tif"
    got = run_isolated("dltools:classifypixels", {"INPUT": str(case["raster"]), "MODEL": str(fifo),
                                                  "OUTPUT": str(out)}, timeout=120)
    assert got["returncode"] == 0 and not got["ok"], got
    assert got["error"] == (f"Model '{fifo}' is not a regular file (it is a pipe, socket or device): pass the .emd, "
                            ".dlpk or model file itself")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ ONNX metadata
def _deepness_model(folder: Path, metadata: dict) -> Path:
    return export_onnx(conv_module(3, 3, 1, weight=WEIGHT), folder / "deep.onnx", 3, 8, dynamic_hw=True,
                       metadata={"model_type": "Segmentor", "class_names": ["a", "b", "c"], **metadata})


@pytest.mark.parametrize("metadata,message", [
    ({"tile_size": -5}, "ONNX metadata 'tile_size' must be at least 1 and at most 65536, not -5"),
    ({"tile_size": 0}, "ONNX metadata 'tile_size' must be at least 1 and at most 65536, not 0"),
    ({"tile_size": 7.5}, "ONNX metadata 'tile_size' must be a whole number, not 7.5"),
    ({"standardization_mean": ["a", "b", "c"]},
     "ONNX metadata 'standardization_mean' must be a list of numbers; found \"a\""),
    ({"standardization_std": [1, 0, 1]}, "ONNX metadata 'standardization_std' must be a list of finite numbers above 0"),
    ({"seg_thresh": 5}, "ONNX metadata 'seg_thresh' must be at least 0 and at most 1, not 5"),
    ({"tiles_overlap": 100}, "ONNX metadata 'tiles_overlap' must be at least 0 and less than 100, not 100"),
])
def test_bad_onnx_metadata_is_a_clear_message(context, case, metadata, message):
    model = _deepness_model(case["folder"], metadata)
    before = digest(case["raster"], model)
    error = classify_error(context, INPUT=str(case["raster"]), MODEL=str(model), OUTPUT=str(case["folder"] / "o.tif"))
    assert error.startswith(message)
    assert digest(case["raster"], model) == before and not (case["folder"] / "o.tif").exists()


@pytest.mark.parametrize("value", [["x"], [1.5], [True], [-1]])
def test_ignore_mapped_class_must_be_channel_indexes(context, case, value):
    data = json.loads(case["emd"].read_text())
    data["ignore_mapped_class"] = value
    case["emd"].write_text(json.dumps(data))
    error = classify_error(context, INPUT=str(case["raster"]), MODEL=str(case["emd"]),
                           OUTPUT=str(case["folder"] / "o.tif"))
    assert error == ("Key 'ignore_mapped_class' must be a list of channel indexes (whole numbers, 0 or more); found "
                     f"{json.dumps(value[0])}")


# ------------------------------------------------------------------------------------------------ south-up rasters
def test_south_up_raster_with_an_extent_matches_the_no_extent_run(context, case, tmp_path):
    from osgeo import gdal

    south = tmp_path / "south.tif"
    flipped = case["image"][:, ::-1, :].copy()  # row 0 is the southern edge
    write_raster(south, flipped)
    ds = gdal.Open(str(south), gdal.GA_Update)
    ds.SetGeoTransform((500000.0, 1.0, 0.0, 3999980.0, 0.0, 1.0))  # y grows with the row: south-up
    ds = None
    before = digest(south)
    whole = tmp_path / "whole.tif"
    classify(context, INPUT=str(south), MODEL=str(case["emd"]), ARGUMENTS="padding 0", OUTPUT=str(whole))
    part = tmp_path / "part.tif"
    extent = "500003,500012,3999985,3999995 [EPSG:32633]"  # columns 3..12, rows 5..15 from the southern edge
    classify(context, INPUT=str(south), MODEL=str(case["emd"]), ARGUMENTS="padding 0", EXTENT=extent, OUTPUT=str(part))
    whole_classes = read_raster(whole)
    assert np.array_equal(whole_classes, case["expected"][::-1, :])
    out = gdal.Open(str(part))
    assert out.GetGeoTransform() == (500003.0, 1.0, 0.0, 3999985.0, 0.0, 1.0)
    assert (out.RasterXSize, out.RasterYSize) == (9, 10)
    assert np.array_equal(out.ReadAsArray(), whole_classes[5:15, 3:12])
    assert digest(south) == before


# ------------------------------------------------------------------------------------------------ untrusted model answers
class _Values:
    """An integer class map: 70001 where band 1 > 4, else 1 (Classes are {1, 2})."""

    def __new__(cls):
        import torch

        class Values(torch.nn.Module):
            def forward(self, x):
                return torch.where(x[:, 0] > 4, torch.tensor(70001), torch.tensor(1)).to(torch.int64)

        return Values()


class _Scores:
    """Two class scores (band 1, band 2); NaN (or +Inf) in the first wherever band 1 > 4."""

    def __new__(cls, bad: float):
        import torch

        class Scores(torch.nn.Module):
            def forward(self, x):
                first = torch.where(x[:, 0:1] > 4, torch.tensor(bad), x[:, 0:1])
                return torch.cat([first, x[:, 1:2]], dim=1)

        return Scores()


def _model(folder: Path, module, classes) -> Path:
    export_onnx(module, folder / "odd.onnx", 3, 8)
    return write_emd(folder / "odd.emd", "odd.onnx", tile=8, classes=classes)


def test_class_values_outside_classes_are_nodata_and_counted(context, case):
    image = case["image"]
    emd = _model(case["folder"], _Values(), [(1, "one", (1, 1, 1)), (2, "two", (2, 2, 2))])
    before = digest(case["raster"], emd)
    out = case["folder"] / "values.tif"
    _, feedback = classify(context, INPUT=str(case["raster"]), MODEL=str(emd), ARGUMENTS="padding 0",
                           OUTPUT=str(out))
    from osgeo import gdal

    ds = gdal.Open(str(out))
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    wrong = image[0] > 4
    assert np.array_equal(ds.ReadAsArray(), np.where(wrong, nodata, 1))
    assert (f"{int(wrong.sum())} pixels had class values that are not in the model definition's Classes "
            f"(70001 ({int(wrong.sum())} pixels)): they are NoData") in feedback.errors
    assert digest(case["raster"], emd) == before


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("arguments", ["padding 0", "padding 0;test_time_augmentation true", "padding 2;blend true"])
def test_nan_or_inf_scores_are_nodata_and_counted(context, case, bad, arguments):
    image = case["image"]
    emd = _model(case["folder"], _Scores(bad), [(1, "one", (1, 1, 1)), (2, "two", (2, 2, 2))])
    out = case["folder"] / "scores.tif"
    probs = case["folder"] / "probs.tif"
    _, feedback = classify(context, INPUT=str(case["raster"]), MODEL=str(emd), ARGUMENTS=arguments,
                           OUTPUT=str(out), OUTPUT_PROBABILITIES=str(probs))
    classes = read_raster(out)
    wrong = image[0] > 4
    expected = np.where(image[0] >= image[1], 1, 2)
    assert (classes[wrong] == 255).all()
    assert np.array_equal(classes[~wrong], expected[~wrong])
    n = int(wrong.sum())
    assert f"{n} pixels had NaN or infinite scores from the model: they are NoData" in feedback.errors
    assert np.isnan(read_raster(probs)[:, classes == 255]).all()


# ------------------------------------------------------------------------------------------------ .emd keys
def _emd_with(case, **changes) -> Path:
    data = json.loads(case["emd"].read_text())
    data.update(changes)
    case["emd"].write_text(json.dumps(data))
    return case["emd"]


@pytest.mark.parametrize("changes,message", [
    ({"Threshold": 5}, "Key 'Threshold' must be at least 0 and at most 1, not 5"),
    ({"Threshold": -0.1}, "Key 'Threshold' must be at least 0 and at most 1, not -0.1"),
    ({"Padding": 4}, "Key 'Padding' 4 leaves no centre in a 8x8 tile: it must be less than half the tile"),
    ({"ImageHeight": 100000}, "Key 'ImageHeight' must be at most 65536 pixels, not 100000"),
    ({"BatchSize": 0}, "Key 'BatchSize' must be at least 1, not 0"),
    ({"ModelPadding": -1}, "Key 'ModelPadding' must be at least 0, not -1"),
    ({"QGISPlugin": {"standardization_mean": [0, 0, 0], "standardization_std": [1, 0, 1]}},
     "QGISPlugin.standardization_std values must be above 0"),
])
def test_numeric_emd_keys_are_range_checked(context, case, changes, message):
    emd = _emd_with(case, **changes)
    before = digest(case["raster"], emd)
    error = classify_error(context, INPUT=str(case["raster"]), MODEL=str(emd), OUTPUT=str(case["folder"] / "o.tif"))
    assert error.startswith(message), error
    assert digest(case["raster"], emd) == before and not (case["folder"] / "o.tif").exists()


def test_nan_in_an_emd_is_refused(context, case):
    case["emd"].write_text(case["emd"].read_text().replace('"ImageHeight"', '"Threshold": NaN, "ImageHeight"'))
    error = classify_error(context, INPUT=str(case["raster"]), MODEL=str(case["emd"]),
                           OUTPUT=str(case["folder"] / "o.tif"))
    assert error == "Key 'Threshold' must be a finite number, not nan"


def test_duplicate_keys_are_warned_by_name(context, case):
    text = case["emd"].read_text()
    case["emd"].write_text(text.replace('"ModelType"', '"ImageWidth": 16, "ModelType"', 1))  # 8 comes later: wins
    out = case["folder"] / "dup.tif"
    _, feedback = classify(context, INPUT=str(case["raster"]), MODEL=str(case["emd"]), ARGUMENTS="padding 0",
                           OUTPUT=str(out))
    assert ("model definition 'm.emd': key 'ImageWidth' is given more than once in one object; the last value is "
            "used") in feedback.errors
    assert np.array_equal(read_raster(out), case["expected"])


def test_emd_nested_100000_levels_is_refused_in_a_child_process(case):
    deep = case["folder"] / "deep.emd"
    data = json.loads(case["emd"].read_text())
    deep.write_text(json.dumps(data)[:-1] + ', "Extra": ' + "[" * 100000 + "]" * 100000 + "}")
    before = digest(case["raster"], deep)
    got = run_isolated("dltools:classifypixels", {"INPUT": str(case["raster"]), "MODEL": str(deep),
                                                  "OUTPUT": str(case["folder"] / "o.tif")}, timeout=120)
    assert got["returncode"] == 0 and not got["ok"], got
    assert got["error"] == ("model definition 'deep.emd' nests lists or objects too deeply to read (more than 64 "
                            "levels): refused")
    assert digest(case["raster"], deep) == before and not (case["folder"] / "o.tif").exists()


def test_emd_nested_100_levels_is_refused(context, case):
    data = json.loads(case["emd"].read_text())
    data["Extra"] = json.loads("[" * 100 + "]" * 100)
    case["emd"].write_text(json.dumps(data))
    error = classify_error(context, INPUT=str(case["raster"]), MODEL=str(case["emd"]),
                           OUTPUT=str(case["folder"] / "o.tif"))
    assert error == "model definition 'm.emd' nests lists or objects more than 64 levels deep: refused"

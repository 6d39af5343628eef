# SPDX-License-Identifier: GPL-2.0-or-later
"""Input normalisation (core/normalize.py): each rule as numbers, and end to end as what the model really sees.

The end-to-end tests run a 1x1 identity convolution declared as ``ModelType Regression``: the engine writes
the raw model output as float32 bands, so the output raster *is* the normalised input the model received.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, read_raster, write_emd, write_raster
from dltools.core.engine.normalize import IMAGENET_MEAN, IMAGENET_STD, build_normaliser, resolve_bands
from dltools.core.errors import InputDataError, ModelDefinitionError
from dltools.core.model.definition import ModelDefinition, NormalizationStats
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.classify_pixels.pipeline import classify_pixels

RNG = np.random.default_rng(11)


def md(**kwargs) -> ModelDefinition:
    base = dict(source="test", origin="json", raw={}, model_type="ImageClassification", image_height=16, image_width=16)
    base.update(kwargs)
    return ModelDefinition(**base)


def no_range(band: int) -> tuple[float, float]:
    raise AssertionError("the band range must not be needed here")


# ------------------------------------------------------------------------------------------ the rules as numbers
def test_normalization_stats_are_indexed_by_extract_bands():
    stats = NormalizationStats(band_min_values=[0, 10, 100], band_max_values=[10, 30, 300],
                               scaled_mean_values=[0.1, 0.2, 0.3], scaled_std_values=[0.5, 0.25, 2.0])
    n = build_normaliser(md(normalization_stats=stats), [2, 0], "uint16", no_range)
    x = np.array([[[250.0]], [[4.0]]], np.float32)  # band 2 = 250, band 0 = 4
    got = n.apply(x.copy())
    assert got[0, 0, 0] == pytest.approx(((250 - 100) / 200 - 0.3) / 2.0, rel=1e-6)
    assert got[1, 0, 0] == pytest.approx(((4 - 0) / 10 - 0.1) / 0.5, rel=1e-6)
    assert n.description.startswith("NormalizationStats")


def test_normalization_stats_without_scaled_values_only_rescale():
    stats = NormalizationStats(band_min_values=[2, 2], band_max_values=[6, 2])  # band 1: zero span is not a /0
    n = build_normaliser(md(normalization_stats=stats), [0, 1], "float32", no_range)
    np.testing.assert_allclose(n.apply(np.array([[[4.0]], [[5.0]]], np.float32))[:, 0, 0], [0.5, 3.0])


def test_normalization_stats_too_short_for_extract_bands():
    stats = NormalizationStats(band_min_values=[0, 0], band_max_values=[1, 1])
    with pytest.raises(ModelDefinitionError, match="band_min_values has 2 values but ExtractBands uses band index 3"):
        build_normaliser(md(normalization_stats=stats), [0, 3], "uint8", no_range)


def test_data_range_on_8_bit_is_from_0_255():
    n = build_normaliser(md(data_range=(0.0, 1.0)), [0, 1], "uint8", no_range)
    np.testing.assert_allclose(n.scale, [1 / 255] * 2, rtol=1e-6)
    np.testing.assert_allclose(n.offset, [0, 0])
    n = build_normaliser(md(data_range=(-1.0, 1.0)), [0], "uint8", no_range)
    np.testing.assert_allclose(n.apply(np.array([[[0.0, 127.5, 255.0]]], np.float32))[0, 0], [-1, 0, 1], atol=1e-6)


def test_data_range_on_other_types_is_from_each_band_min_max():
    ranges = {0: (100.0, 300.0), 3: (-5.0, 5.0), 4: (7.0, 7.0)}
    n = build_normaliser(md(data_range=(0.0, 1.0)), [3, 0, 4], "int16", lambda b: ranges[b])
    got = n.apply(np.array([[[0.0]], [[250.0]], [[7.0]]], np.float32))[:, 0, 0]
    np.testing.assert_allclose(got, [0.5, 0.75, 0.0], atol=1e-6)  # a constant band does not divide by zero
    assert "each band's min..max" in n.description


def test_deepness_metadata():
    n = build_normaliser(md(divide_by_255=True), [0, 1, 2], "uint8", no_range)
    np.testing.assert_allclose(n.scale, [1 / 255] * 3, rtol=1e-6)
    assert n.description == "QGISPlugin.divide_by_255 / standardization_mean in the model definition: x / 255"
    n = build_normaliser(md(divide_by_255=True, standardization_mean=[0.5], standardization_std=[0.25],
                            deepness_metadata={"model_type": "Segmentor", "standardization_mean": "[0.5]"}), [0, 1],
                         "uint8", no_range)
    np.testing.assert_allclose(n.apply(np.array([[[255.0]], [[0.0]]], np.float32))[:, 0, 0], [2.0, -2.0], atol=1e-5)
    assert n.description == ("Deepness convention, recognised from the ONNX metadata (model_type, "
                             "standardization_mean): x / 255, then (x - mean) / std")


def test_an_ultralytics_export_is_named_as_such():
    """An Ultralytics YOLO ONNX export carries task/imgsz/names/stride and no Deepness key: the log says so."""
    meta = {"task": "detect", "imgsz": "[640, 640]", "names": "{0: 'car'}", "stride": "32", "author": "Ultralytics"}
    n = build_normaliser(md(divide_by_255=True, deepness_metadata=meta), [0, 1, 2], "uint8", no_range)
    np.testing.assert_allclose(n.scale, [1 / 255] * 3, rtol=1e-6)
    assert n.description == ("Ultralytics YOLO convention, recognised from the ONNX metadata (imgsz, names, stride, "
                             "task): RGB scaled to 0..1 as Ultralytics trains: x / 255")


def test_arcgis_learn_defaults_to_imagenet_on_three_bands_only():
    n = build_normaliser(md(framework="arcgis.learn.models._inferencing"), [0, 1, 2], "uint8", no_range)
    x = np.array([[[255 * m]] for m in IMAGENET_MEAN], np.float32)
    np.testing.assert_allclose(n.apply(x)[:, 0, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(n.scale, [1 / (255 * s) for s in IMAGENET_STD], rtol=1e-6)
    four = build_normaliser(md(arcgis_learn_version="2.2.0"), [0, 1, 2, 3], "uint8", no_range)
    assert four.description.startswith("none")


def test_first_rule_wins_and_plain_models_get_raw_pixels():
    stats = NormalizationStats(band_min_values=[0], band_max_values=[2])
    n = build_normaliser(md(normalization_stats=stats, data_range=(0.0, 1.0), divide_by_255=True), [0], "uint8", no_range)
    assert n.scale[0] == pytest.approx(0.5)
    plain = build_normaliser(md(), [0, 1], "float32", no_range)
    np.testing.assert_array_equal(plain.scale, [1, 1])
    np.testing.assert_array_equal(plain.offset, [0, 0])
    assert plain.description == "none: pixel values are passed unchanged"


def test_resolve_bands():
    assert resolve_bands(md(extract_bands=[3, 1]), 4, [], "r.tif") == [3, 1]
    assert resolve_bands(md(), 5, [], "r.tif", model_channels=3) == [0, 1, 2]
    assert resolve_bands(md(), 2, [], "r.tif") == [0, 1]
    assert resolve_bands(md(extract_band_names=["NIR", "red"]), 3, ["Red", "Green", "nir"], "r.tif") == [2, 0]
    with pytest.raises(InputDataError, match=r"needs band 4 \(ExtractBands \[0, 3\], 0-based\) but raster 'r.tif' has "
                                             r"only 3 band\(s\)"):
        resolve_bands(md(extract_bands=[0, 3]), 3, [], "r.tif")
    with pytest.raises(InputDataError, match=r"has no band named 'swir'.*its band names are: 'Red', 'nir'"):
        resolve_bands(md(extract_band_names=["swir"]), 2, ["Red", "nir"], "r.tif")


# ------------------------------------------------------------------------------------------ what the model sees
def seen_by_model(tmp_path: Path, image: np.ndarray, bands: list[int], nodata=None, **emd) -> np.ndarray:
    raster = write_raster(tmp_path / "in.tif", image, nodata=nodata)
    n = len(bands)
    conv = conv_module(n, n, 1, weight=np.eye(n, dtype=np.float32)[:, :, None, None])
    export_onnx(conv, tmp_path / "id.onnx", n, 16)
    path = write_emd(tmp_path / "id.emd", "id.onnx", model_type="Regression", tile=16, bands=bands, **emd)
    out = tmp_path / "seen.tif"
    classify_pixels(str(raster), load_model_definition(str(path)), str(out), "padding 2")
    seen = read_raster(out)
    return seen if seen.ndim == 3 else seen[None]


def test_model_sees_normalization_stats_of_its_extract_bands(tmp_path):
    image = RNG.integers(0, 1000, size=(3, 20, 23)).astype(np.uint16)
    stats = {"band_min_values": [0, 100, 200], "band_max_values": [1000, 600, 1200],
             "scaled_mean_values": [0.5, 0.25, 0.75], "scaled_std_values": [0.25, 0.5, 2.0]}
    seen = seen_by_model(tmp_path, image, [2, 0], NormalizationStats=stats)
    want = [((image[b].astype(np.float64) - [0, 100, 200][b]) / [1000, 500, 1000][b] - [0.5, 0.25, 0.75][b]) / [0.25, 0.5, 2.0][b]
            for b in (2, 0)]
    np.testing.assert_allclose(seen, np.stack(want), rtol=1e-5, atol=1e-5)


def test_model_sees_data_range_stretch_with_nodata_excluded(tmp_path):
    image = RNG.integers(500, 3000, size=(2, 20, 23)).astype(np.int16)
    image[0, 0, 0], image[1, 0, 0] = 500, 3000
    image[:, 5:9, 5:9] = -9999  # NoData: neither in the band range nor seen by the model
    seen = seen_by_model(tmp_path, image, [1, 0], nodata=-9999, DataRange=[-1, 1])
    valid = image[0] != -9999
    for out_band, b in enumerate((1, 0)):
        lo, hi = image[b][valid].min(), image[b][valid].max()
        want = -1 + 2 * (image[b].astype(np.float64) - lo) / (hi - lo)
        np.testing.assert_allclose(seen[out_band][valid], want[valid], rtol=1e-5, atol=1e-5)
    assert np.isnan(seen[:, ~valid]).all()  # NoData pixels stay NoData (NaN) in a float output


def test_model_sees_deepness_scaling(tmp_path):
    image = RNG.integers(0, 256, size=(3, 18, 21)).astype(np.uint8)
    plugin = {"divide_by_255": True, "standardization_mean": [0.5, 0.4, 0.3], "standardization_std": [0.2, 0.1, 0.4]}
    seen = seen_by_model(tmp_path, image, [0, 1, 2], QGISPlugin=plugin)
    mean, std = np.array([0.5, 0.4, 0.3])[:, None, None], np.array([0.2, 0.1, 0.4])[:, None, None]
    np.testing.assert_allclose(seen, (image / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_model_sees_raw_pixels_without_rules(tmp_path):
    image = RNG.integers(-300, 300, size=(2, 18, 21)).astype(np.int16)
    seen = seen_by_model(tmp_path, image, [1, 0])
    np.testing.assert_array_equal(seen, image[[1, 0]].astype(np.float32))

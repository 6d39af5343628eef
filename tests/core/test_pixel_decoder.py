# SPDX-License-Identifier: GPL-2.0-or-later
"""Output mapping rules of core/decoders/pixel_classes.py, end to end through the engine with tiny exact models.

Each model is a 1x1 convolution (or a small torch module) with exactly representable weights, run on integer
rasters with no normalisation, so the expected class of every pixel follows from the rule under test alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders import RecordingProgress, conv_module, export_onnx, read_raster, write_emd, write_raster
from dltools.core.engine.pixel_decoder import ARGMAX_SLICE, PixelDecoder, argmax_channels
from dltools.core.errors import InputDataError
from dltools.core.model.definition import ClassInfo, ModelDefinition
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.classify_pixels.pipeline import classify_pixels

RNG = np.random.default_rng(7)
TILE = 16


def identity(bands: int, scale: float = 1.0, bias: float = 0.0):
    """A 1x1 convolution whose channel i is ``scale * band i + bias``."""
    return conv_module(bands, bands, 1, weight=np.eye(bands, dtype=np.float32)[:, :, None, None] * scale,
                       bias=[bias] * bands)


def model(tmp_path: Path, module, bands: int, classes, name: str = "m", **emd) -> Path:
    export_onnx(module, tmp_path / f"{name}.onnx", bands, TILE)
    return write_emd(tmp_path / f"{name}.emd", f"{name}.onnx", tile=TILE, bands=list(range(bands)), classes=classes,
                     **emd)


def run(tmp_path: Path, raster: Path, emd: Path, arguments: str = "padding 0;batch_size 4", probabilities: bool = False,
        progress=None, name: str = "out") -> tuple[np.ndarray, np.ndarray | None]:
    out = tmp_path / f"{name}.tif"
    probs = tmp_path / f"{name}_p.tif" if probabilities else None
    classify_pixels(str(raster), load_model_definition(str(emd)), str(out), arguments,
                    str(probs) if probs else None, progress=progress)
    return read_raster(out), (read_raster(probs) if probs else None)


@pytest.fixture(scope="module")
def bands4(tmp_path_factory) -> tuple[Path, np.ndarray]:
    # uint16: GDAL would take a fourth 8-bit band for alpha (a mask)
    image = RNG.integers(0, 10, size=(4, 29, 35)).astype(np.uint16)
    return write_raster(tmp_path_factory.mktemp("dec") / "b4.tif", image, block=16), image


def test_one_channel_per_class(tmp_path, bands4):
    raster, image = bands4
    classes = [(10, "a", (1, 1, 1)), (20, "b", (2, 2, 2)), (30, "c", (3, 3, 3))]
    out, _ = run(tmp_path, raster, model(tmp_path, identity(3), 3, classes))
    assert np.array_equal(out, np.array([10, 20, 30])[np.argmax(image[:3], axis=0)])


def test_background_channel_first(tmp_path, bands4):
    raster, image = bands4
    classes = [(1, "a", (1, 1, 1)), (2, "b", (2, 2, 2)), (7, "c", (3, 3, 3))]
    emd = model(tmp_path, identity(4), 4, classes)
    out, _ = run(tmp_path, raster, emd)
    lut = np.array([0, 1, 2, 7])
    assert np.array_equal(out, lut[np.argmax(image, axis=0)])
    assert (out == 0).any()  # band 0 is the largest somewhere: background is written as 0

    no_bg, _ = run(tmp_path, raster, emd, "padding 0;predict_background False", name="nobg")
    assert not (no_bg == 0).any()
    assert np.array_equal(no_bg, lut[1 + np.argmax(image[1:], axis=0)])


def test_ignore_mapped_class_never_wins(tmp_path, bands4):
    raster, image = bands4
    classes = [(1, "a", (1, 1, 1)), (2, "b", (2, 2, 2)), (3, "c", (3, 3, 3))]
    out, _ = run(tmp_path, raster, model(tmp_path, identity(3), 3, classes, ignore_mapped_class=[1]))
    scores = image[:3].astype(float)
    scores[1] = -np.inf
    assert np.array_equal(out, np.array([1, 2, 3])[np.argmax(scores, axis=0)])
    assert not (out == 2).any()


@pytest.mark.parametrize("threshold,cut", [(None, 5), (0.5, 5), (0.9, 8), (0.1, 3)])
def test_one_channel_logits_use_a_sigmoid(tmp_path, bands4, threshold, cut):
    """logit = band - 5; sigmoid(logit) >= threshold  <=>  band >= cut (0.5 -> 5, 0.9 -> 7.2 -> 8, 0.1 -> 2.8 -> 3)."""
    raster, image = bands4
    emd = model(tmp_path, identity(1, bias=-5.0), 1, [(0, "land", (1, 1, 1)), (4, "water", (0, 0, 255))])
    args = "padding 0" + (f";threshold {threshold}" if threshold is not None else "")
    out, probs = run(tmp_path, raster, emd, args, probabilities=True)
    assert np.array_equal(out, np.where(image[0] >= cut, 4, 0))
    np.testing.assert_allclose(probs, 1.0 / (1.0 + np.exp(-(image[0] - 5.0))), rtol=0, atol=1e-6)


def test_one_channel_probabilities_are_thresholded_as_they_are(tmp_path, bands4):
    """The model ends in its own sigmoid-like map: p = band / 8 clipped to [0, 1]; no second sigmoid is applied."""
    import torch

    raster, image = bands4

    class Prob(torch.nn.Module):
        def forward(self, x):
            return torch.clamp(x[:, :1] * 0.125, 0.0, 1.0)

    emd = model(tmp_path, Prob(), 1, [(9, "thing", (9, 9, 9))])
    out, probs = run(tmp_path, raster, emd, "padding 0;threshold 0.5", probabilities=True)
    # one class: background is 0, the class is its own value
    assert np.array_equal(out, np.where(image[0] >= 4, 9, 0))
    np.testing.assert_array_equal(probs, np.minimum(image[0] * 0.125, 1.0).astype(np.float32))


def test_one_channel_logits_do_not_depend_on_the_batch(tmp_path):
    """Whether a one-channel output is logits or probabilities is a property of the model, not of a batch.

    The right half holds logits 0.25 (sigmoid 0.56: the class at threshold 0.5); the left half logits -3/3.
    A chip that sees only the right half has all its outputs inside [0, 1]; taking that one chip's values as
    probabilities would make those pixels background with batch size 1 but the class with batch size 4.
    """
    image = np.zeros((1, 32, 32), np.float32)
    image[0, :, :16] = np.where(RNG.random((32, 16)) < 0.5, -3.0, 3.0)
    image[0, :, 16:] = 0.25
    raster = write_raster(tmp_path / "in.tif", image)
    emd = model(tmp_path, identity(1), 1, [(0, "bg", (0, 0, 0)), (1, "fg", (255, 0, 0))])
    expected = (image[0] >= 0).astype(np.uint8)
    for batch in (1, 4):
        out, _ = run(tmp_path, raster, emd, f"padding 0;batch_size {batch}", name=f"b{batch}")
        assert np.array_equal(out, expected), f"batch size {batch}"


def test_asking_for_probabilities_does_not_change_a_class(tmp_path, bands4):
    """Scores 2^-30 apart all round to the same float32 softmax; the classes still come from the scores themselves."""
    raster, image = bands4
    classes = [(1, "a", (1, 1, 1)), (2, "b", (2, 2, 2)), (3, "c", (3, 3, 3))]
    emd = model(tmp_path, identity(3, scale=2.0 ** -30), 3, classes)
    want = np.array([1, 2, 3])[np.argmax(image[:3], axis=0)]
    plain, _ = run(tmp_path, raster, emd, name="plain")
    with_probs, probs = run(tmp_path, raster, emd, probabilities=True, name="probs")
    assert np.array_equal(plain, want)
    assert np.array_equal(with_probs, want)
    np.testing.assert_allclose(probs, 1 / 3, atol=1e-6)


def test_output_batch_fixed_at_one(tmp_path, bands4):
    """Input batch dynamic, output batch baked in at 1 (a reshape in the graph, like Deepness's ``bsx512x512``
    dummies): the model can only take one chip per call, so the engine must not send it four."""
    import warnings

    import torch

    raster, image = bands4

    class Flat(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(x[:, 0] - 5.0).reshape(1, TILE, TILE)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Flat(), torch.zeros(1, 4, TILE, TILE), str(tmp_path / "flat.onnx"), dynamo=False,
                          input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}},
                          opset_version=13)
    emd = write_emd(tmp_path / "flat.emd", "flat.onnx", tile=TILE, bands=[0, 1, 2, 3],
                    classes=[(0, "land", (1, 1, 1)), (1, "water", (0, 0, 255))])
    progress = RecordingProgress()
    out, _ = run(tmp_path, raster, emd, "padding 0;batch_size 4", progress=progress)
    assert np.array_equal(out, (image[0] >= 5).astype(np.uint8))
    assert "The model's batch dimension is fixed at 1: using batch size 1" in progress.infos


def test_deepness_one_channel_model_with_one_class_name(tmp_path, testdata):
    """Deepness turns a one-channel output into a binary mask: background, and the named class."""
    raster = testdata("deepness", "dummy_fotomap_small.tif")
    model = testdata("deepness", "models", "dummy_segmentation_models__one_output_sigmoid_bsx1x512x512.onnx")
    md = load_model_definition(str(model))
    out = tmp_path / "coffee.tif"
    classify_pixels(str(raster), md, str(out), "padding 0;threshold 0.4", str(tmp_path / "p.tif"))
    probs = read_raster(tmp_path / "p.tif")
    foreground = probs >= 0.4
    assert foreground.any() and not foreground.all()
    classes = read_raster(out)
    assert len(np.unique(classes[foreground])) == 1 and len(np.unique(classes[~foreground])) == 1
    assert classes[foreground][0] != classes[~foreground][0]  # the class is not written as background
    assert [c.name for c in md.classes] == ["background", "Coffee"]
    assert set(np.unique(classes[foreground])) == {1} and set(np.unique(classes[~foreground])) == {0}


def test_integer_output_is_written_as_is(tmp_path, bands4):
    import torch

    raster, image = bands4

    class ArgMax(torch.nn.Module):
        def forward(self, x):
            return torch.argmax(x[:, :3], dim=1) * 10 + 10  # int64 [B, H, W]: class values themselves

    classes = [(10, "a", (1, 1, 1)), (20, "b", (2, 2, 2)), (30, "c", (3, 3, 3))]
    emd = model(tmp_path, ArgMax(), 4, classes)
    progress = RecordingProgress()
    out, _ = run(tmp_path, raster, emd, "padding 2;blend True", progress=progress)
    assert np.array_equal(out, np.array([10, 20, 30])[np.argmax(image[:3], axis=0)])
    assert any("blend needs probabilities" in w for w in progress.warnings)
    with pytest.raises(InputDataError, match="returns class values, not scores: there are no probabilities"):
        run(tmp_path, raster, emd, probabilities=True, name="p")
    assert not (tmp_path / "p.tif").exists() and not (tmp_path / "p_p.tif").exists()


def test_channel_count_that_matches_no_rule(tmp_path, bands4):
    raster, _ = bands4
    classes = [(1, "a", (1, 1, 1)), (2, "b", (2, 2, 2)), (3, "c", (3, 3, 3))]
    emd = model(tmp_path, identity(2), 2, classes)
    with pytest.raises(InputDataError, match=r"The model returns 2 channels per pixel, but the model definition has 3 "
                                             r"classes: expected 3 \(one per class\), 4 \(background first\) or 1 "
                                             r"\(a probability\); fix Classes in the .emd"):
        run(tmp_path, raster, emd)
    assert not (tmp_path / "out.tif").exists()


def test_output_that_is_not_an_image(tmp_path, bands4):
    import torch

    raster, _ = bands4

    class Pool(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))  # [B, C]: a chip classifier, not a pixel model

    emd = model(tmp_path, Pool(), 3, [(0, "a", (1, 1, 1)), (1, "b", (2, 2, 2)), (2, "c", (3, 3, 3))])
    with pytest.raises(InputDataError, match=r"returns an output of shape \[1, 3\]; a pixel model must return"):
        run(tmp_path, raster, emd)


def test_output_size_that_is_not_a_centred_crop(tmp_path, bands4):
    raster, _ = bands4
    import torch

    conv = torch.nn.Conv2d(3, 3, 2)  # no padding: 15x15 from 16x16, which no centred crop gives
    emd = model(tmp_path, conv.eval(), 3, [(0, "a", (1, 1, 1)), (1, "b", (2, 2, 2)), (2, "c", (3, 3, 3))])
    with pytest.raises(InputDataError, match=r"returns 15x15 tiles from 16x16 input: only the same size or a centred "
                                             r"crop \(ModelPadding\)"):
        run(tmp_path, raster, emd)


# ------------------------------------------------------------------------------------------ the decoder alone
def definition(values: list[int], model_type: str = "ImageClassification") -> ModelDefinition:
    return ModelDefinition(source="test", origin="json", raw={}, model_type=model_type, image_height=8, image_width=8,
                           classes=[ClassInfo(v, f"c{v}", (v, v, v)) for v in values])


def test_decoder_softmax_probabilities_sum_to_one():
    dec = PixelDecoder(definition([3, 4, 5]), {}, 3, False)
    logits = RNG.normal(0, 4, size=(2, 3, 5, 5)).astype(np.float32)
    p = dec.probabilities(logits)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    e = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), atol=1e-6)
    assert np.array_equal(dec.indices_from_raw(logits), np.argmax(logits, axis=1))
    assert dec.output_values == [3, 4, 5] and dec.prob_names == ["c3", "c4", "c5"]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_running_maximum_equals_numpy_argmax(dtype):
    """The plane-by-plane arg-max gives numpy's answer pixel for pixel: ties to the lowest class index (scores
    drawn from a few integers, so ties are everywhere), the first NaN's channel where a pixel has one, +-inf,
    suppressed channels as -inf, a plane taller than one slice, and a transposed (NHWC) output read as it is."""
    rng = np.random.default_rng(11)
    width = 300
    height = ARGMAX_SLICE // width * 2 + 7  # two full slices and a partial one
    for channels, suppressed in ((2, []), (3, [0]), (6, [2, 5]), (4, [1, 2, 3])):
        scores = rng.integers(-2, 3, size=(2, channels, height, width)).astype(dtype)
        for value, share in ((np.nan, 0.02), (np.inf, 0.02), (-np.inf, 0.02)):
            scores[rng.random(scores.shape) < share] = value
        scores[0, :, 0, :channels] = np.nan  # a pixel whose every channel is NaN
        expected = scores.copy()
        expected[:, suppressed] = -np.inf
        want = np.argmax(expected, axis=1)
        got = argmax_channels(scores, suppressed)
        assert got.dtype == np.uint8 and np.array_equal(got, want), (channels, suppressed)
        nhwc = np.ascontiguousarray(scores.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        assert np.array_equal(argmax_channels(nhwc, suppressed), want)
    # the decoder's own arg-max is this one: background suppressed, ignore_mapped_class never wins
    dec = PixelDecoder(definition([1, 2]), {"predict_background": False}, 3, False)
    tied = np.zeros((1, 3, 2, 2), np.float32)
    tied[0, 2, 1, 1] = 1
    assert np.array_equal(dec.indices_from_raw(tied), [[[1, 1], [1, 2]]])


def test_decoder_modes_and_values():
    assert PixelDecoder(definition([1, 2]), {}, 3, False).mode == "background"
    assert PixelDecoder(definition([1, 2]), {}, 3, False).output_values == [0, 1, 2]
    assert PixelDecoder(definition([1, 2]), {}, 2, False).mode == "softmax"
    sig = PixelDecoder(definition([5, 6]), {"threshold": 0.7}, 1, False)
    assert sig.mode == "sigmoid" and sig.output_values == [5, 6]
    assert PixelDecoder(definition([5]), {}, 1, False).output_values == [0, 5]
    assert PixelDecoder(definition([1, 2, 3]), {}, 1, True).mode == "values"
    assert PixelDecoder(definition([], "Regression"), {}, 2, False).mode == "regression"
    # no classes at all: one class per channel, valued by channel index
    assert PixelDecoder(definition([]), {}, 4, False).output_values == [0, 1, 2, 3]
    probs = np.array([[[[0.69, 0.7, 0.71]]]], np.float32)
    assert np.array_equal(sig.class_values(sig.indices_from_raw(probs)), [[[5, 6, 6]]])


def test_nonfinite_pixels_finds_every_nan_and_infinity_and_only_those():
    """The one-pass check (the scores' sum) never hides a NaN or an infinity in a channel that does not win, and
    finite scores whose sum overflows float32 are still finite pixels."""
    from dltools.core.engine.pixels import nonfinite_pixels

    scores = np.zeros((2, 3, 4, 5), np.float32)
    assert nonfinite_pixels(scores) is None
    huge = np.full((1, 3, 4, 5), 3e38, np.float32)  # sums to inf in float32, every value finite
    assert nonfinite_pixels(huge) is None
    scores[0, 2, 1, 3] = -np.inf  # a losing channel
    scores[1, 0, 3, 0] = np.nan
    scores[1, 1, 0, 4] = np.inf
    want = np.zeros((2, 4, 5), bool)
    want[0, 1, 3] = want[1, 3, 0] = want[1, 0, 4] = True
    assert np.array_equal(nonfinite_pixels(scores), want)
    assert nonfinite_pixels(np.zeros((1, 4, 5), np.int64)) is None

# SPDX-License-Identifier: GPL-2.0-or-later
"""core.pipelines.classify_pixels end to end: probabilities, NoData, test-time augmentation, blending, the real
Deepness closed-form models, styling, cancellation, failures and grid requests.

Synthetic cases use exact models (integer weights on integer rasters, no normalisation) whose whole-image result
numpy computes; the Deepness models have closed forms (see ../shared/testdata/deepness/models/MODELS.md).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from builders import (
    RecordingProgress,
    conv_module,
    export_onnx,
    numpy_conv_mirror,
    numpy_conv_same,
    read_raster,
    write_emd,
    write_raster,
)
from dltools.core.engine import augment
from dltools.core.errors import CancelledError, InputDataError, OutputError
from dltools.core.model.loader import load_model_definition
from dltools.core.raster.grid import TileGrid
from dltools.core.raster.request import RasterRequest
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from osgeo import gdal

RNG = np.random.default_rng(99)
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
VALUES = np.array([1, 2, 5])
WEIGHT = RNG.integers(-2, 3, size=(3, 3, 5, 5)).astype(np.float32)
BIAS = np.array([0.0, 1.0, -1.0], np.float32)
POINTWISE = RNG.integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
TILE = 16


def softmax(x: np.ndarray, axis: int = 0) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per pixel: where it is tiny, float rounding may pick either class."""
    s = np.sort(probs, axis=0)
    return s[-1] - s[-2]


def side_files_absent(path: Path) -> bool:
    return not any(p.exists() for p in (path, Path(f"{path}.aux.xml"), path.with_suffix(".qml")))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    export_onnx(conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS), folder / "conv5.onnx", 3, TILE)
    export_onnx(conv_module(3, 3, 1, weight=POINTWISE), folder / "point.onnx", 3, TILE)
    export_onnx(conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS), folder / "conv5_any.onnx", 3, TILE, dynamic_hw=True)
    return {
        # 16 x 24 tiles are not square: no transposed views in TTA, only the 4 flips
        "conv5_wide": write_emd(folder / "conv5_wide.emd", "conv5_any.onnx", tile=TILE, classes=CLASSES, ImageWidth=24),
        "conv5": write_emd(folder / "conv5.emd", "conv5.onnx", tile=TILE, classes=CLASSES),
        "point": write_emd(folder / "point.emd", "point.onnx", tile=TILE, classes=CLASSES),
        "conv5_pixel": write_emd(folder / "conv5_pixel.emd", "conv5.onnx", tile=TILE, classes=CLASSES,
                                 ImageSpaceUsed="PIXEL_SPACE"),
    }


@pytest.fixture(scope="module")
def raster(tmp_path_factory) -> tuple[Path, np.ndarray]:
    image = RNG.integers(0, 10, size=(3, 41, 47)).astype(np.uint8)
    return write_raster(tmp_path_factory.mktemp("r") / "in.tif", image, block=16), image


def run(raster: Path, emd: Path, out: Path, arguments: str, probabilities: bool = False, progress=None,
        request: RasterRequest | None = None):
    probs = out.with_name(out.stem + "_p.tif") if probabilities else None
    result = classify_pixels(str(raster), load_model_definition(str(emd)), str(out), arguments,
                             str(probs) if probs else None, request=request, progress=progress)
    return result, read_raster(out), (read_raster(probs) if probs else None)


# ------------------------------------------------------------------------------------------ probabilities, NoData
def test_probabilities_equal_softmax_and_nodata(tmp_path, models):
    image = RNG.integers(0, 10, size=(3, 37, 45)).astype(np.uint8)
    nodata = np.zeros((37, 45), bool)
    nodata[:6, :9] = True  # a corner
    nodata[20:23, 30:40] = True  # a hole
    image[:, nodata] = 200
    raster = write_raster(tmp_path / "nd.tif", image, nodata=200, block=16)
    result, classes, probs = run(raster, models["conv5"], tmp_path / "out.tif", "padding 2;batch_size 4", True)

    seen = np.where(nodata, 0, image)  # NoData pixels reach the model as 0 (mirrored past the edge as they are)
    logits = numpy_conv_mirror(seen, WEIGHT, BIAS)
    want = softmax(logits)
    assert result.nodata == 255 and result.output_values == [1, 2, 5]
    assert np.array_equal(classes[nodata], np.full(nodata.sum(), 255))
    assert np.array_equal(classes[~nodata], VALUES[np.argmax(logits, axis=0)][~nodata])
    assert probs.shape == (3, 37, 45) and probs.dtype == np.float32
    assert np.isnan(probs[:, nodata]).all()
    np.testing.assert_allclose(probs[:, ~nodata], want[:, ~nodata], rtol=0, atol=1e-5)
    ds = gdal.Open(str(tmp_path / "out_p.tif"))
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(3)] == ["one", "two", "five"]
    assert np.isnan(ds.GetRasterBand(1).GetNoDataValue())
    assert result.pixel_counts == {v: int((classes == v).sum()) for v in (1, 2, 5) if (classes == v).any()}


def test_background_probabilities_drop_the_background_band(tmp_path, raster):
    path, image = raster
    export_onnx(conv_module(3, 3, 1, weight=POINTWISE), tmp_path / "bg.onnx", 3, TILE)
    emd = write_emd(tmp_path / "bg.emd", "bg.onnx", tile=TILE, classes=[(3, "a", (1, 2, 3)), (4, "b", (4, 5, 6))])
    _, classes, probs = run(path, emd, tmp_path / "out.tif", "padding 0", True)
    logits = numpy_conv_same(image, POINTWISE, np.zeros(3))
    assert np.array_equal(classes, np.array([0, 3, 4])[np.argmax(logits, axis=0)])
    assert probs.shape[0] == 2
    np.testing.assert_allclose(probs, softmax(logits)[1:], atol=1e-5)


def test_nodata_collar_of_a_real_landsat_scene(tmp_path, testdata, models):
    """RGB.byte.tif has NoData 0 on each band and a wide collar: the output is NoData exactly where every band is 0."""
    src = testdata("landsat_rgb", "RGB.byte.tif")
    export_onnx(conv_module(3, 3, 1, weight=np.eye(3, dtype=np.float32)[:, :, None, None]), tmp_path / "id.onnx", 3, 64)
    emd = write_emd(tmp_path / "id.emd", "id.onnx", tile=64, classes=CLASSES)
    _, classes, _ = run(src, emd, tmp_path / "out.tif", "padding 4;batch_size 9")
    image = read_raster(src)
    all_nodata = (image == 0).all(axis=0)
    assert 0.2 < all_nodata.mean() < 0.6  # the collar is big, and so is the valid area
    assert np.array_equal(classes == 255, all_nodata)
    assert np.array_equal(classes[~all_nodata], VALUES[np.argmax(image, axis=0)][~all_nodata])
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert ds.GetRasterBand(1).GetNoDataValue() == 255
    assert ds.GetGeoTransform() == gdal.Open(str(src)).GetGeoTransform()


# ------------------------------------------------------------------------------------------ TTA and blending
@pytest.mark.parametrize("args", ["test_time_augmentation True", "blend True", "test_time_augmentation True;blend True",
                                  "test_time_augmentation True;merge_policy max"])
def test_pointwise_model_is_unchanged_by_tta_and_blend(tmp_path, raster, models, args):
    path, image = raster
    _, plain, plain_p = run(path, models["point"], tmp_path / "plain.tif", "padding 3;batch_size 4", True)
    progress = RecordingProgress()
    _, got, got_p = run(path, models["point"], tmp_path / "aug.tif", f"padding 3;batch_size 4;{args}", True, progress)
    assert np.array_equal(got, plain)
    np.testing.assert_allclose(got_p, plain_p, atol=1e-6)
    tiles = next(m for m in progress.infos if m.startswith("Tiles:"))
    assert ("test-time augmentation x8" in tiles) == ("test_time_augmentation" in args)
    assert tiles.endswith(", blended") == ("blend" in args)


def tta_reference(image: np.ndarray, transforms: list[int], policy: str = "mean") -> np.ndarray:
    """The whole image through each transform, softmax, transformed back, merged (mirroring is symmetric)."""
    stack = [augment.inverse(softmax(numpy_conv_mirror(augment.forward(image, k), WEIGHT, BIAS)), k)
             for k in transforms]
    return getattr(np.stack(stack), policy)(axis=0)


@pytest.mark.parametrize("emd,transforms,policy", [("conv5", list(range(8)), "mean"), ("conv5_pixel", [0, 2], "mean"),
                                                   ("conv5", list(range(8)), "max"), ("conv5", list(range(8)), "min"),
                                                   ("conv5_wide", [0, 1, 2, 3], "mean")])
def test_tta_on_a_5x5_model_equals_the_whole_image_merge(tmp_path, raster, models, emd, transforms, policy):
    path, image = raster
    _, classes, probs = run(path, models[emd], tmp_path / "out.tif",
                            f"padding 2;batch_size 4;test_time_augmentation True;merge_policy {policy}", True)
    want = tta_reference(image, transforms, policy)
    np.testing.assert_allclose(probs, want, atol=1e-5)
    sure = margin(want) > 1e-4  # merged probabilities tie often (integer logits, saturated softmax)
    assert sure.sum() > 500
    assert np.array_equal(classes[sure], VALUES[np.argmax(want, axis=0)][sure])
    # and it is not the plain result: the 8 views of a 5x5 kernel differ
    assert not np.allclose(probs, softmax(numpy_conv_mirror(image, WEIGHT, BIAS)), atol=1e-3)


def exact_chip_mask(size: int, tile: int, pad: int, radius: int = 2) -> np.ndarray:
    """Pixels (along one axis) that every chip covering them computes exactly: their neighbourhood is in the chip
    (past the raster's edge the chip holds the mirrored pixels the reference has too)."""
    grid = TileGrid(size, 1, tile, tile, pad)
    ok = np.ones(size, bool)
    for c in range(grid.cols):
        start = grid.chip_window(0, c)[0]
        for y in range(max(start, 0), min(start + tile, size)):
            if y - radius < start or y + radius >= start + tile:
                ok[y] = False
    return ok


def test_blend_on_a_5x5_model(tmp_path, raster, models):
    """Blended probabilities are a weighted mean of each covering chip's: exact where every covering chip is exact."""
    path, image = raster
    _, classes, probs = run(path, models["conv5"], tmp_path / "out.tif", "padding 3;batch_size 4;blend True", True)
    plain = softmax(numpy_conv_mirror(image, WEIGHT, BIAS))
    assert np.isin(classes, VALUES).all()
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    assert (probs >= 0).all() and (probs <= 1 + 1e-6).all()
    exact = exact_chip_mask(41, TILE, 3)[:, None] & exact_chip_mask(47, TILE, 3)[None, :]
    assert 0.2 < exact.mean() < 0.9
    np.testing.assert_allclose(probs[:, exact], plain[:, exact], atol=1e-5)
    sure = exact & (margin(plain) > 1e-4)
    assert np.array_equal(classes[sure], VALUES[np.argmax(plain, axis=0)][sure])
    assert not np.allclose(probs[:, ~exact], plain[:, ~exact], atol=1e-3)  # chip borders do blend in


def test_blend_with_a_centre_crop_model_is_exact_everywhere(tmp_path, raster):
    import torch

    path, image = raster
    conv = conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS)

    class Crop(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x)[:, :, 3:-3, 3:-3]

    export_onnx(Crop().eval(), tmp_path / "crop.onnx", 3, 20)
    declared = write_emd(tmp_path / "crop.emd", "crop.onnx", tile=20, classes=CLASSES, ModelPadding=3)
    # without ModelPadding the crop is inferred from the output size, and a larger padding shifts the blend window
    inferred = write_emd(tmp_path / "inferred.emd", "crop.onnx", tile=20, classes=CLASSES)
    plain = softmax(numpy_conv_mirror(image, WEIGHT, BIAS))
    for emd, args in ((declared, "batch_size 4;blend True"),
                      (declared, "batch_size 1;blend True;test_time_augmentation True"),
                      (inferred, "batch_size 4;blend True;padding 5"), (inferred, "batch_size 1;blend True;padding 7")):
        result, classes, probs = run(path, emd, tmp_path / "out.tif", args, True)
        assert result.padding == (int(args[-1]) if emd is inferred else 3)
        want = plain if "augmentation" not in args else tta_reference(image, list(range(8)))
        np.testing.assert_allclose(probs, want, atol=1e-5)
        sure = margin(want) > 1e-4
        assert np.array_equal(classes[sure], VALUES[np.argmax(want, axis=0)][sure])


# ------------------------------------------------------------------------------------------ Deepness closed forms
def deepness_emd(tmp_path: Path, testdata, model: str, classes, **extra) -> Path:
    onnx = testdata("deepness", "models", model)
    return write_emd(tmp_path / "deepness.emd", str(onnx), tile=512, classes=classes, **extra)


def test_deepness_dummy_model_x_to_the_8th(tmp_path, testdata):
    raster = testdata("deepness", "dummy_fotomap_small.tif")
    emd = deepness_emd(tmp_path, testdata, "dummy_segmentation_models__dummy_model.onnx",
                       [(0, "red", (255, 0, 0)), (1, "green", (0, 255, 0)), (2, "blue", (0, 0, 255))],
                       QGISPlugin={"divide_by_255": True})
    progress = RecordingProgress()
    _, classes, probs = run(raster, emd, tmp_path / "out.tif", "padding 16", True, progress)
    rgb = read_raster(raster)[:3].astype(np.float64) / 255.0
    scores = rgb ** 8
    assert classes.shape == (841, 1243)
    assert np.array_equal(classes, np.argmax(scores, axis=0))  # x^8 is increasing: exact, ties included
    assert len(np.unique(classes)) == 3
    assert "Normalisation: QGISPlugin.divide_by_255 / standardization_mean in the model definition: x / 255" in \
        progress.infos
    assert "The model's batch dimension is fixed at 1: using batch size 1" in progress.infos
    np.testing.assert_allclose(probs, softmax(scores), atol=1e-5)


def test_deepness_regression_model_vegetation_index(tmp_path, testdata):
    """A plain ONNX with Regressor metadata: float output (2G-R-B)/(2G+R+B) of x/255, NaN where 0/0."""
    raster = testdata("deepness", "dummy_fotomap_small.tif")
    model = testdata("deepness", "models", "dummy_regression_models__dummy_regression_model.onnx")
    md = load_model_definition(str(model))
    assert md.model_type == "Regression" and md.divide_by_255
    out = tmp_path / "vi.tif"
    result = classify_pixels(str(raster), md, str(out))
    assert result.nodata is None and not Path(tmp_path / "vi.qml").exists()
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 1 and ds.GetRasterBand(1).DataType == gdal.GDT_Float32
    assert ds.GetGeoTransform() == gdal.Open(str(raster)).GetGeoTransform()
    got = ds.ReadAsArray()
    r, g, b = (read_raster(raster)[:3].astype(np.float64) / 255.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (2 * g - r - b) / (2 * g + r + b)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.nanmin(got) < 0 < np.nanmax(got)


def correlate_valid(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """What a Conv2d without padding computes (cross-correlation, 'valid'), in float64 through the FFT."""
    _, h, w = image.shape
    kh, kw = weight.shape[2:]
    spectra = np.fft.rfft2(image, (h, w))
    out = []
    for o in range(weight.shape[0]):
        kernels = np.fft.rfft2(weight[o, :, ::-1, ::-1], (h, w))
        full = np.fft.irfft2((spectra * kernels).sum(axis=0), (h, w))
        out.append(full[kh - 1:, kw - 1:] + bias[o])  # circular wrap-around only touches the first kh-1 rows/cols
    return np.stack(out)


def test_correlate_valid_reference():
    image = RNG.normal(size=(2, 12, 15))
    weight = RNG.normal(size=(3, 2, 5, 4))
    bias = RNG.normal(size=3)
    want = np.zeros((3, 8, 12))
    for o in range(3):
        for y in range(8):
            for x in range(12):
                want[o, y, x] = (image[:, y:y + 5, x:x + 4] * weight[o]).sum() + bias[o]
    np.testing.assert_allclose(correlate_valid(image, weight, bias), want, atol=1e-10)


def test_deepness_output_smaller_than_input(tmp_path, testdata):
    """512 -> 484: a 29x29 'valid' convolution and a sigmoid, i.e. a centred crop of 14 pixels.

    Closed form: the model on the whole image mirrored by 14 (what the chips see beyond the raster) is the
    29x29 convolution of that padded image; the test computes it with torch in float64 from the ONNX weights and
    compares every pixel (classes where the two logits are not within 1e-3 of each other, probabilities to 1e-5).
    The raster is a 700x500 window of the real photo map (GDAL-translated), so 4 chips do the work.
    """
    import onnx
    from onnx import numpy_helper

    photo = testdata("deepness", "dummy_fotomap_small.tif")
    model = testdata("deepness", "models", "dummy_segmentation_models__different_output_size_512_to_484.onnx")
    raster = tmp_path / "window.tif"
    gdal.Translate(str(raster), str(photo), srcWin=[300, 200, 700, 500], bandList=[1, 2, 3])
    emd = deepness_emd(tmp_path, testdata, model.name, [(0, "a", (9, 9, 9)), (1, "b", (200, 200, 200))],
                       DataRange=[0, 1])
    progress = RecordingProgress()
    result, classes, probs = run(raster, emd, tmp_path / "out.tif", "", True, progress)
    assert result.padding == 64 and result.tiles == 4
    assert any("of 512x512 pixels with padding 64" in m for m in progress.infos)

    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(str(model)).graph.initializer}
    padded = np.pad(read_raster(raster).astype(np.float64) / 255.0, ((0, 0), (14, 14), (14, 14)), mode="reflect")
    logits = correlate_valid(padded, inits["0.weight"], inits["0.bias"])
    assert logits.shape == (2, 500, 700) and classes.shape == (500, 700)
    sure = np.abs(logits[0] - logits[1]) > 1e-3
    assert sure.mean() > 0.99
    assert np.array_equal(classes[sure], np.argmax(logits, axis=0)[sure])
    sig = 1.0 / (1.0 + np.exp(-logits))  # two sigmoids that do not sum to 1: softmax makes them probabilities
    np.testing.assert_allclose(probs, softmax(sig), atol=1e-5)
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert ds.GetGeoTransform() == gdal.Open(str(raster)).GetGeoTransform()


# ------------------------------------------------------------------------------------------ styling
def test_class_raster_is_styled(tmp_path, raster, models):
    path, _ = raster
    run(path, models["point"], tmp_path / "out.tif", "padding 0")
    ds = gdal.Open(str(tmp_path / "out.tif"))
    band = ds.GetRasterBand(1)
    ct = band.GetColorTable()
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    assert [ct.GetColorEntry(v)[:3] for v, _, _ in CLASSES] == [c for _, _, c in CLASSES]
    rat = band.GetDefaultRAT()
    assert [rat.GetNameOfCol(i) for i in range(rat.GetColumnCount())] == ["Value", "Class", "Red", "Green", "Blue"]
    assert [(rat.GetValueAsInt(i, 0), rat.GetValueAsString(i, 1)) for i in range(rat.GetRowCount())] == \
        [(1, "one"), (2, "two"), (5, "five")]
    qml = (tmp_path / "out.qml").read_text()
    assert qml.count("<paletteEntry") == 3 and 'label="five"' in qml and 'color="#0000ff"' in qml


# ------------------------------------------------------------------------------------------ cancel and failures
def test_cancel_after_the_first_batch_leaves_nothing(tmp_path, raster, models):
    path, _ = raster
    out = tmp_path / "out.tif"
    progress = RecordingProgress(cancel_after=1)
    with pytest.raises(CancelledError, match="cancelled"):
        run(path, models["conv5"], out, "padding 2;batch_size 1", True, progress)
    assert progress.updates >= 1
    assert side_files_absent(out) and side_files_absent(tmp_path / "out_p.tif")


def test_cancel_or_failure_leaves_an_existing_output_as_it_was(tmp_path, raster, models):
    """Outputs are written beside the target and renamed on success: a cancelled run keeps the previous result."""
    path, _ = raster
    out = tmp_path / "out.tif"
    run(path, models["conv5"], out, "padding 2;batch_size 1", True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {"out.tif", "out.qml", "out_p.tif"} <= set(before)
    with pytest.raises(CancelledError):
        run(path, models["conv5"], out, "padding 3;batch_size 1", True, RecordingProgress(cancel_after=2))
    with pytest.raises(InputDataError):
        run(path, models["conv5"], out, "padding 3;batch_size 1;block_size 20", True, _FailingProgress())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left either


class _FailingProgress(RecordingProgress):
    """Fails the run from inside the engine (as a bad block would) after two progress updates."""

    def set_progress(self, percent: float) -> None:
        super().set_progress(percent)
        if self.updates >= 2:
            raise InputDataError("injected failure")


def test_a_failing_writer_stops_the_run_instead_of_hanging(tmp_path, raster, models, monkeypatch):
    """A write error (disk full) while the model thread waits for the writer must end the run with that error.

    Fault injection: BlockWriter.write_block is slowed and then fails, as a full disk would; the run goes on in a
    thread so that a hang fails the test instead of blocking the suite.
    """
    import time

    from dltools.core.raster import gdal_io as raster_io

    def full_disk(self, x, y, data):
        time.sleep(0.3)  # long enough for the model thread to fill the queue to the writer and wait
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(raster_io.BlockWriter, "write_block", full_disk)
    big = write_raster(tmp_path / "big.tif", RNG.integers(0, 10, size=(3, 160, 160)).astype(np.uint8))
    outcome: list[BaseException] = []

    def work():
        try:
            run(big, models["point"], tmp_path / "out.tif", "padding 0;batch_size 1")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the run hung after the writer failed"
    assert len(outcome) == 1 and isinstance(outcome[0], OutputError), outcome
    assert str(outcome[0]).startswith(f"No space left on device while writing the output '{tmp_path / 'out.tif'}'")
    assert side_files_absent(tmp_path / "out.tif")


def test_windows_are_read_ahead_one_block_at_most_and_the_same_pixels_come_out(tmp_path, raster, models,
                                                                               monkeypatch):
    """The read-ahead thread reads the next block's window while the reader cuts the current one: never more than
    READ_AHEAD windows beyond the one being cut (memory bounded by the block size); the output is as before."""
    from dltools.core.engine import blocks
    from dltools.core.engine.pixels import PixelTask

    path, _ = raster
    _, expected, _ = run(path, models["point"], tmp_path / "ref.tif", "padding 0;batch_size 1;block_size 8")
    counts = {"loaded": 0, "cut": 0, "most": 0}
    real_load = PixelTask.load

    def load(self, job):
        counts["loaded"] += 1
        counts["most"] = max(counts["most"], counts["loaded"] - counts["cut"])
        context, batches = real_load(self, job)

        def cut():
            counts["cut"] += 1
            yield from batches

        return context, cut()

    monkeypatch.setattr(PixelTask, "load", load)
    result, out, _ = run(path, models["point"], tmp_path / "out.tif", "padding 0;batch_size 1;block_size 8")
    assert result.blocks >= 6 and np.array_equal(out, expected)
    assert counts["loaded"] == counts["cut"] == result.blocks
    assert 1 <= counts["most"] <= blocks.READ_AHEAD + 1


def test_an_error_while_reading_ahead_is_that_error(tmp_path, raster, models, monkeypatch):
    """A window that cannot be read (here the fourth) ends the run with the reading's own message, whichever
    stage notices first, and leaves nothing behind."""
    from dltools.core.engine.pixels import PixelTask

    path, _ = raster
    real_load = PixelTask.load

    def load(self, job):
        if job.index == 3:
            raise InputDataError(f"Cannot read raster 'in.tif' at block {job.index}")
        return real_load(self, job)

    monkeypatch.setattr(PixelTask, "load", load)
    for _ in range(5):  # the reader may stop before or after the main loop sees the error: the same message
        with pytest.raises(InputDataError, match="Cannot read raster 'in.tif' at block 3"):
            run(path, models["point"], tmp_path / "out.tif", "padding 0;batch_size 1;block_size 8")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_worker_thread_that_cannot_start_is_a_clear_error_and_stops_the_other(tmp_path, raster, models,
                                                                                 monkeypatch):
    """'can't start new thread' for the writer: the reader already running is stopped, nothing is left behind."""
    from dltools.core.engine import blocks

    path, _ = raster
    started = []
    real_start = blocks._Stage.start

    def start(self):
        if self.name == "dltools-writer":
            raise RuntimeError("can't start new thread")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(blocks._Stage, "start", start)
    (tmp_path / "out.tif").write_bytes(b"old")
    with pytest.raises(OutputError) as info:
        run(path, models["point"], tmp_path / "out.tif", "padding 0;batch_size 1")
    assert str(info.value).startswith("Cannot start the dltools-writer thread (can't start new thread): the system "
                                      "has no room for another thread; lower 'threads'")
    assert started and not started[0].is_alive()  # the reader was stopped and joined
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"] and (tmp_path / "out.tif").read_bytes() == b"old"


def test_bad_inputs_are_clear_errors(tmp_path, raster, models):
    path, image = raster
    md = load_model_definition(str(models["point"]))
    no_crs = write_raster(tmp_path / "nocrs.tif", image, epsg=None)
    with pytest.raises(InputDataError, match="'nocrs.tif' has no coordinate reference system: assign one"):
        classify_pixels(str(no_crs), md, str(tmp_path / "a.tif"))
    two = write_raster(tmp_path / "two.tif", image[:2])
    with pytest.raises(InputDataError, match=r"needs band 3 \(ExtractBands \[0, 1, 2\], 0-based\) but raster 'two.tif' "
                                             r"has only 2 band\(s\)"):
        classify_pixels(str(two), md, str(tmp_path / "b.tif"))
    far = RasterRequest(extent=(0.0, 0.0, 10.0, 10.0))
    with pytest.raises(InputDataError, match=r"The processing extent .* does not overlap the raster"):
        classify_pixels(str(path), md, str(tmp_path / "c.tif"), request=far)
    with pytest.raises(OutputError, match="must be a GeoTIFF"):
        classify_pixels(str(path), md, str(tmp_path / "d.png"))
    with pytest.raises(OutputError, match="Output folder .*missing.* does not exist"):
        classify_pixels(str(path), md, str(tmp_path / "missing" / "e.tif"))
    detector = write_emd(tmp_path / "det.emd", str(md.model_file), model_type="ObjectDetection", tile=TILE)
    with pytest.raises(InputDataError, match="ModelType 'ObjectDetection' is not a pixel classification model"):
        classify_pixels(str(path), load_model_definition(str(detector)), str(tmp_path / "f.tif"))
    assert not list(tmp_path.glob("[a-f].tif"))


# ------------------------------------------------------------------------------------------ grid requests
def test_extent_is_snapped_to_input_pixels(tmp_path, raster, models):
    path, image = raster
    gt = gdal.Open(str(path)).GetGeoTransform()  # origin (500000, 4000000), 1 m pixels
    request = RasterRequest(extent=(gt[0] + 5.5, gt[3] - 30.2, gt[0] + 20.1, gt[3] - 10.7))
    _, classes, _ = run(path, models["point"], tmp_path / "out.tif", "padding 0", request=request)
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert ds.GetGeoTransform() == (gt[0] + 5, 1.0, 0.0, gt[3] - 10, 0.0, -1.0)
    assert classes.shape == (21, 16)  # rows 10..30, columns 5..20
    want = VALUES[np.argmax(numpy_conv_same(image, POINTWISE, np.zeros(3)), axis=0)]
    assert np.array_equal(classes, want[10:31, 5:21])


def test_cell_size_resamples_the_input(tmp_path, raster, models):
    path, _ = raster
    gt = gdal.Open(str(path)).GetGeoTransform()
    progress = RecordingProgress()
    result, classes, _ = run(path, models["point"], tmp_path / "out.tif", "padding 0", progress=progress,
                             request=RasterRequest(cell_size=2.5))
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert (ds.RasterXSize, ds.RasterYSize) == (19, 17)  # ceil(47 / 2.5), ceil(41 / 2.5)
    assert ds.GetGeoTransform() == (gt[0], 2.5, 0.0, gt[3], 0.0, -2.5)
    assert "The raster is resampled on the fly (bilinear) to the requested grid" in progress.infos
    assert result.pixels == 19 * 17
    # the last row of cells (40 m .. 42.5 m down, centre 41.25 m) lies past the raster's 41 rows: NoData, not a class
    assert (classes[16] == 255).all()
    assert np.isin(classes[:16], VALUES).all()


@pytest.mark.parametrize("bands,dtype", [(3, np.uint8), (5, np.uint16), (4, np.int16)])
def test_cell_size_on_a_raster_with_nodata(tmp_path, raster, models, bands, dtype):
    """Resampled reads know NoData and the raster's edge whatever the band count (GDAL's own alpha-as-mask
    rule only covers 2 and 4 bands)."""
    path, image = raster
    holed = np.concatenate([image, image[:bands - 3]]).astype(dtype)
    holed[:, :20, :20] = 0
    src = write_raster(tmp_path / "holed.tif", holed, nodata=0, block=16)
    _, classes, _ = run(src, models["point"], tmp_path / "out.tif", "padding 0", request=RasterRequest(cell_size=5.0))
    assert classes.shape == (9, 10)
    # NoData: the hole (cells centred at 2.5 .. 17.5 m), and past the raster (centres at 42.5 m down, 47.5 m across)
    nodata = np.zeros((9, 10), bool)
    nodata[:4, :4] = True
    nodata[8, :] = nodata[:, 9] = True
    assert np.array_equal(classes == 255, nodata)

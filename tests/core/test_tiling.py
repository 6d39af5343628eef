# SPDX-License-Identifier: GPL-2.0-or-later
"""The chip grid and the block engine's stitching, checked pixel for pixel against the model on the whole image.

The model is one Conv2d with a 5x5 kernel ('same' zero padding, receptive field radius 2), integer weights and
biases, and the rasters hold small integers with no normalisation, so every logit is an exact integer in float32
and the whole-image reference is exact.  The default edge rule mirrors the raster past its edges, so the reference
is the whole image reflected by the kernel's radius (``numpy_conv_mirror``); with ``edge_fill zero`` the outside is
zero in both (``numpy_conv_same``).  With a padding of at least 2 every kept chip centre sees exactly what the
whole-image model sees, so the tiled raster must equal the reference for every tile size, batch size, block size,
backend and raster size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from builders import (
    RecordingProgress,
    conv_module,
    export_onnx,
    export_torchscript,
    numpy_conv_mirror,
    numpy_conv_same,
    read_raster,
    write_emd,
    write_raster,
)
from dltools.core.errors import ArgumentError, InputDataError
from dltools.core.model.loader import load_model_definition
from dltools.core.raster.grid import TileGrid
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from dltools.core.trust import CodeTrust

TRUSTED = CodeTrust.all()  # these tests' own TorchScript files

CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
VALUES = np.array([v for v, _, _ in CLASSES])
RNG = np.random.default_rng(20240501)
WEIGHT = RNG.integers(-2, 3, size=(3, 3, 5, 5)).astype(np.float32)
BIAS = np.array([1.0, 0.0, -1.0], np.float32)


def expected_classes(image: np.ndarray, edge_fill: str = "mirror") -> np.ndarray:
    conv = numpy_conv_mirror if edge_fill == "mirror" else numpy_conv_same
    return VALUES[np.argmax(conv(image, WEIGHT, BIAS), axis=0)]


@pytest.fixture(scope="module")
def conv():
    return conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS)


@pytest.fixture(scope="module")
def odd_raster(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """53 columns x 37 rows of integers 0..9, uint8 (no normalisation applies to a plain ONNX .emd)."""
    image = RNG.integers(0, 10, size=(3, 37, 53)).astype(np.uint8)
    path = write_raster(tmp_path_factory.mktemp("tiling") / "odd.tif", image, block=16)
    return path, image


def onnx_emd(folder: Path, conv, tile: int, **kwargs) -> Path:
    """An ONNX export of ``conv`` for ``tile`` x ``tile`` chips and its .emd."""
    fixed = kwargs.pop("fixed_batch", None)
    name = f"conv{tile}_{fixed or 'dyn'}"
    export_onnx(conv, folder / f"{name}.onnx", 3, tile, fixed_batch=fixed)
    return write_emd(folder / f"{name}.emd", f"{name}.onnx", tile=tile, classes=CLASSES, **kwargs)


def run(raster: Path, emd: Path, out: Path, arguments: str, progress=None) -> np.ndarray:
    classify_pixels(str(raster), load_model_definition(str(emd), trust=TRUSTED), str(out), arguments, progress=progress)
    return read_raster(out)


# ------------------------------------------------------------------------------------------ TileGrid
@pytest.mark.parametrize("edge_fill", ["mirror", "zero"])
@pytest.mark.parametrize("width,height,tile,pad", [(53, 37, 16, 2), (53, 37, 20, 3), (100, 7, 24, 5), (5, 5, 32, 8),
                                                   (64, 64, 16, 0), (12, 30, 16, 2)])
def test_chip_cores_partition_the_grid(width, height, tile, pad, edge_fill):
    grid = TileGrid(width, height, tile, tile, pad, edge_fill)
    core = tile - 2 * pad
    owner = np.zeros((height, width), int)
    for r in range(grid.rows):
        for c in range(grid.cols):
            x, y, w, h = grid.core_window(r, c)
            owner[y:y + h, x:x + w] += 1
            cx, cy, cw, ch = grid.chip_window(r, c)
            assert (cw, ch) == (tile, tile) and w > 0 and h > 0
            # the kept pixels lie in the chip's centre: `pad` pixels of context on every side
            assert cx + pad <= x and x + w <= cx + pad + core and cy + pad <= y and y + h <= cy + pad + core
            if edge_fill == "zero":
                assert (cx, cy) == (x - pad, y - pad)
            else:
                # past the raster only the outer margin (or, on a raster smaller than a centre, the rest of the chip)
                assert cx >= -pad and cy >= -pad
                assert cx + tile <= max(width, core) + pad and cy + tile <= max(height, core) + pad
                if c == grid.cols - 1 and width >= core:
                    assert cx + tile == width + pad  # the last chip's centre ends at the raster's edge
        assert grid.row_height(r) == grid.core_window(r, 0)[3]
    assert (owner == 1).all()  # every output pixel comes from exactly one chip centre
    assert grid.count == grid.rows * grid.cols
    assert grid.rows == -(-height // (tile - 2 * pad)) and grid.cols == -(-width // (tile - 2 * pad))


def test_edge_fill_must_be_known():
    with pytest.raises(ArgumentError, match="edge_fill 'wrap' is not one of mirror, zero"):
        TileGrid(10, 10, 16, 16, 2, "wrap")


def test_padding_must_leave_a_centre():
    TileGrid(10, 10, 16, 16, 7)
    with pytest.raises(ArgumentError, match=r"padding 8 is too large for 16x16 tiles.*at most 7"):
        TileGrid(10, 10, 16, 16, 8)


# ------------------------------------------------------------------------------------------ engine vs whole image
@pytest.mark.parametrize("edge_fill", ["mirror", "zero"])
@pytest.mark.parametrize("tile,pad", [(16, 2), (20, 3), (24, 5), (13, 4)])
def test_tiled_equals_whole_image_for_tiles_that_do_not_divide(tmp_path, conv, odd_raster, tile, pad, edge_fill):
    raster, image = odd_raster
    emd = onnx_emd(tmp_path, conv, tile)
    assert 37 % (tile - 2 * pad) and 53 % (tile - 2 * pad)
    out = run(raster, emd, tmp_path / "out.tif", f"padding {pad};batch_size 4;edge_fill {edge_fill}")
    assert out.shape == (37, 53) and out.dtype == np.uint8
    assert np.array_equal(out, expected_classes(image, edge_fill))
    if edge_fill == "mirror":  # the references differ at the edges, so each test can fail
        assert not np.array_equal(out, expected_classes(image, "zero"))


@pytest.mark.parametrize("block_size,batch", [(1, 1), (12, 4), (30, 4), (40, 9), (1000, 4)])
def test_block_size_never_changes_a_pixel(tmp_path, conv, odd_raster, block_size, batch):
    """Blocks of 1 chip, of a few chips (not dividing the raster) and one block: the same raster, exactly."""
    raster, image = odd_raster
    emd = onnx_emd(tmp_path, conv, 16)
    progress = RecordingProgress()
    out = run(raster, emd, tmp_path / "out.tif", f"padding 3;batch_size {batch};block_size {block_size}", progress)
    assert np.array_equal(out, expected_classes(image))
    blocks = next(m for m in progress.infos if m.startswith("Blocks:"))
    per_side = max(1, block_size // 10)
    want = -(-6 // per_side) * -(-4 // per_side)  # 6 x 4 chips of 10 x 10 centres
    assert blocks.startswith(f"Blocks: {want} of")


@pytest.mark.parametrize("edge_fill", ["mirror", "zero"])
def test_blended_tiles_are_the_same_whatever_the_blocks(tmp_path, conv, odd_raster, edge_fill):
    """Blending sums every covering tile's weighted scores, across block edges too: in the same order, so the
    probabilities are bit-identical for blocks of one tile, of a few tiles and one block."""
    raster, _ = odd_raster
    emd = onnx_emd(tmp_path, conv, 16)
    outs = []
    for block_size in (1, 24, 1000):
        out = tmp_path / f"b{block_size}.tif"
        probs = tmp_path / f"b{block_size}_p.tif"
        classify_pixels(str(raster), load_model_definition(str(emd), trust=TRUSTED), str(out),
                        f"padding 3;batch_size 4;blend True;edge_fill {edge_fill};block_size {block_size}", str(probs))
        outs.append((read_raster(out), read_raster(probs)))
    for classes, probs in outs[1:]:
        assert np.array_equal(classes, outs[0][0]) and probs.tobytes() == outs[0][1].tobytes()


def zero_reacting_module():
    """A model that answers class 'two' on every pixel of a chip holding any exact 0, else class 'one'."""
    import torch

    class ZeroAlarm(torch.nn.Module):
        def forward(self, x):
            z = (x == 0).to(torch.float32).amax(dim=(1, 2, 3), keepdim=True)
            ones = torch.ones_like(x[:, :1])
            return torch.cat([ones * (1 - z), ones * z, ones * -1.0], dim=1)

    return ZeroAlarm().eval()


@pytest.mark.parametrize("shape,tile,pad", [((37, 53), 16, 2), ((7, 11), 32, 4), ((40, 40), 20, 0), ((16, 45), 16, 3)])
def test_no_chip_sees_a_zero_that_is_not_in_the_raster(tmp_path, shape, tile, pad):
    """Edge tiles hold real (mirrored) pixels: a model alarmed by any exact 0 never fires on a raster without 0."""
    image = RNG.integers(1, 10, size=(3, *shape)).astype(np.uint8)
    raster = write_raster(tmp_path / "nozero.tif", image, block=None)
    export_onnx(zero_reacting_module(), tmp_path / "zero.onnx", 3, tile)
    emd = write_emd(tmp_path / "zero.emd", "zero.onnx", tile=tile, classes=CLASSES)
    out = run(raster, emd, tmp_path / "out.tif", f"padding {pad};batch_size 4")
    assert (out == 1).all()
    # control: the zero-filled edge tiles of the old rule do show it (unless the tiles fit the raster exactly)
    zero = run(raster, emd, tmp_path / "zero.tif", f"padding {pad};batch_size 4;edge_fill zero")
    if pad or shape[0] % tile or shape[1] % tile:
        assert (zero == 2).any()


@pytest.mark.parametrize("batch,used", [(1, 1), (4, 4), (9, 9), (6, 4)])
def test_batch_size_never_changes_a_pixel(tmp_path, conv, odd_raster, batch, used):
    raster, image = odd_raster
    emd = onnx_emd(tmp_path, conv, 16)
    progress = RecordingProgress()
    out = run(raster, emd, tmp_path / "out.tif", f"padding 2;batch_size {batch}", progress)
    assert np.array_equal(out, expected_classes(image))
    tiles_line = next(m for m in progress.infos if m.startswith("Tiles:"))
    assert f"batch size {used}," in tiles_line
    assert "Tiles: 20 (5 x 4) of 16x16 pixels with padding 2" in tiles_line
    if batch != used:
        assert f"batch_size {batch} is not a perfect square: using {used}" in progress.infos
    else:
        assert not any("perfect square" in m for m in progress.infos)
    assert progress.percents[-1] == pytest.approx(100.0)
    assert progress.percents == sorted(progress.percents)


def test_too_little_padding_shows_seams_exactly_where_chips_meet(tmp_path, conv, odd_raster):
    """Control: with padding 1 (< the receptive field radius 2) pixels next to a chip centre's edge go wrong (the
    raster's edges too: the mirrored margin is 1 pixel, the model needs 2), and only those."""
    raster, image = odd_raster
    emd = onnx_emd(tmp_path, conv, 16)
    out = run(raster, emd, tmp_path / "out.tif", "padding 1;batch_size 4")
    wrong = out != expected_classes(image)
    assert wrong.any()
    grid = TileGrid(53, 37, 16, 16, 1)
    core = grid.core_w
    # along each axis: distance of each pixel to the edge of the centre of the chip that owns it
    dist_y = np.zeros(37, int)
    for r in range(grid.rows):
        _, y, _, h = grid.core_window(r, 0)
        oy = grid.core_origin(r, 0)[1]
        ys = np.arange(y, y + h)
        dist_y[ys] = np.minimum(ys - oy, oy + core - 1 - ys)
    dist_x = np.zeros(53, int)
    for c in range(grid.cols):
        x, _, w, _ = grid.core_window(0, c)
        ox = grid.core_origin(0, c)[0]
        xs = np.arange(x, x + w)
        dist_x[xs] = np.minimum(xs - ox, ox + core - 1 - xs)
    rows, cols = np.nonzero(wrong)
    assert ((dist_y[rows] == 0) | (dist_x[cols] == 0)).all()


def test_odd_raster_smaller_than_one_tile(tmp_path, conv):
    image = RNG.integers(0, 10, size=(3, 7, 11)).astype(np.uint8)
    raster = write_raster(tmp_path / "tiny.tif", image, block=None)
    emd = onnx_emd(tmp_path, conv, 32)
    progress = RecordingProgress()
    out = run(raster, emd, tmp_path / "out.tif", "padding 4;batch_size 4", progress)
    assert out.shape == (7, 11)
    assert np.array_equal(out, expected_classes(image))
    zero = run(raster, emd, tmp_path / "zero.tif", "padding 4;batch_size 4;edge_fill zero")
    assert np.array_equal(zero, expected_classes(image, "zero"))
    assert any(m.startswith("Tiles: 1 (1 x 1) of 32x32") for m in progress.infos)


def test_non_square_tiles(tmp_path, conv, odd_raster):
    raster, image = odd_raster
    export_onnx(conv, tmp_path / "wide.onnx", 3, 16, dynamic_hw=True)
    emd = write_emd(tmp_path / "wide.emd", "wide.onnx", tile=16, classes=CLASSES, ImageWidth=24)
    progress = RecordingProgress()
    out = run(raster, emd, tmp_path / "out.tif", "padding 2;batch_size 4", progress)
    assert np.array_equal(out, expected_classes(image))
    assert any(m.startswith("Tiles: 12 (3 x 4) of 24x16 pixels") for m in progress.infos)


def test_nhwc_model(tmp_path, conv, odd_raster):
    """ModelFormat NHWC: the engine feeds [B, H, W, C] and reads the output back the same way."""
    import torch

    raster, image = odd_raster

    class ChannelsLast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ChannelsLast().eval(), torch.zeros(1, 16, 16, 3), str(tmp_path / "nhwc.onnx"), dynamo=False,
                          input_names=["input"], output_names=["output"], opset_version=13,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    emd = write_emd(tmp_path / "nhwc.emd", "nhwc.onnx", tile=16, classes=CLASSES, ModelFormat="NHWC")
    out = run(raster, emd, tmp_path / "out.tif", "padding 2;batch_size 4")
    assert np.array_equal(out, expected_classes(image))


def test_torchscript_backend_gives_the_same_raster(tmp_path, conv, odd_raster):
    raster, image = odd_raster
    onnx_out = run(raster, onnx_emd(tmp_path, conv, 20), tmp_path / "onnx.tif", "padding 3;batch_size 4")
    export_torchscript(conv, tmp_path / "conv.pt")
    emd = write_emd(tmp_path / "ts.emd", "conv.pt", tile=20, classes=CLASSES, framework="PyTorch")
    progress = RecordingProgress()
    ts_out = run(raster, emd, tmp_path / "ts.tif", "padding 3;batch_size 4", progress)
    assert any("torch on cpu" in m for m in progress.infos)
    assert np.array_equal(ts_out, onnx_out)
    assert np.array_equal(ts_out, expected_classes(image))


@pytest.mark.parametrize("fixed", [1, 3])
def test_fixed_batch_onnx_models(tmp_path, conv, odd_raster, fixed):
    raster, image = odd_raster
    emd = onnx_emd(tmp_path, conv, 16, fixed_batch=fixed)
    progress = RecordingProgress()
    out = run(raster, emd, tmp_path / "out.tif", "padding 2;batch_size 4", progress)
    assert np.array_equal(out, expected_classes(image))
    assert f"The model's batch dimension is fixed at {fixed}: using batch size {fixed}" in progress.infos
    # 20 chips: with 3 per call the last call is padded with zero chips whose results are dropped
    assert any(f"batch size {fixed}," in m for m in progress.infos if m.startswith("Tiles:"))


class CentreCrop:
    """The model returns only the centre of its tile (what ModelPadding describes)."""

    @staticmethod
    def module(conv, crop: int):
        import torch

        class Crop(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = conv

            def forward(self, x):
                y = self.conv(x)
                return y[:, :, crop:y.shape[2] - crop, crop:y.shape[3] - crop]

        return Crop().eval()


@pytest.mark.parametrize("model_padding,padding", [(3, None), (2, 2), (4, 9)])
def test_model_padding_centre_crop(tmp_path, conv, odd_raster, model_padding, padding):
    """The model crops itself: nothing more is cropped, padding is forced to ModelPadding (a given value is ignored)."""
    raster, image = odd_raster
    export_onnx(CentreCrop.module(conv, model_padding), tmp_path / "crop.onnx", 3, 20)
    emd = write_emd(tmp_path / "crop.emd", "crop.onnx", tile=20, classes=CLASSES, ModelPadding=model_padding)
    progress = RecordingProgress()
    args = "batch_size 4" + (f";padding {padding}" if padding is not None else "")
    out = run(raster, emd, tmp_path / "out.tif", args, progress)
    assert np.array_equal(out, expected_classes(image))
    assert any(f"of 20x20 pixels with padding {model_padding}," in m for m in progress.infos)
    if padding is not None and padding != model_padding:
        assert any("fixed by the model" in w for w in progress.warnings)


def test_model_padding_that_does_not_match_the_output(tmp_path, conv, odd_raster):
    raster, _ = odd_raster
    export_onnx(CentreCrop.module(conv, 3), tmp_path / "crop.onnx", 3, 20)
    emd = write_emd(tmp_path / "crop.emd", "crop.onnx", tile=20, classes=CLASSES, ModelPadding=2)
    with pytest.raises(InputDataError, match=r"ModelPadding is 2 but the model returns 14x14 from 20x20 \(a padding "
                                             r"of 3\): fix ModelPadding"):
        run(raster, emd, tmp_path / "out.tif", "batch_size 4")
    assert not (tmp_path / "out.tif").exists()


def test_output_grid_is_the_input_grid(tmp_path, conv):
    image = RNG.integers(0, 10, size=(3, 30, 41)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image, origin=(345678.5, 5432109.25), cell=(0.5, 0.25), epsg=32632)
    out = tmp_path / "out.tif"
    classify_pixels(str(raster), load_model_definition(str(onnx_emd(tmp_path, conv, 16)), trust=TRUSTED), str(out), "padding 2")
    from osgeo import gdal

    src, dst = gdal.Open(str(raster)), gdal.Open(str(out))
    assert dst.GetGeoTransform() == src.GetGeoTransform() == (345678.5, 0.5, 0.0, 5432109.25, 0.0, -0.25)
    assert dst.GetProjection() == src.GetProjection()
    assert (dst.RasterXSize, dst.RasterYSize, dst.RasterCount) == (41, 30, 1)
    assert np.array_equal(dst.ReadAsArray(), expected_classes(image))

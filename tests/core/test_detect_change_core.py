# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Change (core/pipelines/detect_change.py) end to end: real GeoTIFFs, real ONNX Runtime sessions, and change
models built here whose every output pixel is known.

The models compare band 0 of the two dates.  With ``d = to - from`` (``d`` summed over a 3x3 window for the 3x3
variant, zero padded like the model's own convolution), the two-class model scores ``[T, |d|]`` (class 1 "Change"
where ``|d| > T``) and the three-class model ``[T, d, -d]`` (1 "Increase", 2 "Decrease").  Pixel values are integers
and ``T`` ends in .5, so the arg-max never ties and the expected map is exact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from builders import RecordingProgress, export_onnx, write_emd, write_raster
from dltools.core.backends.base import DeviceRequest
from dltools.core.errors import CancelledError, InputDataError, OutputError
from dltools.core.model.loader import load_model_definition
from dltools.core.raster.request import RasterRequest
from dltools.core.tools.detect_change.pipeline import detect_change
from osgeo import gdal, osr

CPU = DeviceRequest("cpu", threads=1)
TWO = [(0, "No change", (0, 0, 0)), (1, "Change", (255, 0, 0))]
THREE = [(0, "No change", (0, 0, 0)), (1, "Increase", (0, 200, 0)), (2, "Decrease", (200, 0, 0))]
TILE = 16
ORIGIN = (500000.0, 4000000.0)


# ------------------------------------------------------------------------------------------------ models
def change_module(per_date: int, threshold: float, kernel: int = 1, three_class: bool = False, two_inputs: bool = False,
                  band: int = 0):
    """The change model: band ``band`` of each date, difference, optional 3x3 box sum, class scores."""
    import torch

    class Change(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("box", torch.ones(1, 1, kernel, kernel))

        def scores(self, before, after):
            d = after[:, band:band + 1] - before[:, band:band + 1]
            if kernel > 1:
                d = torch.nn.functional.conv2d(d, self.box, padding=kernel // 2)
            t = torch.zeros_like(d) + threshold
            return torch.cat([t, d, -d] if three_class else [t, torch.abs(d)], dim=1)

    class Stacked(Change):
        def forward(self, x):
            return self.scores(x[:, :per_date], x[:, per_date:])

    class TwoInputs(Change):
        def forward(self, before, after):
            return self.scores(before, after)

    module = TwoInputs() if two_inputs else Stacked()
    module.eval()
    return module


def expected_change(before: np.ndarray, after: np.ndarray, threshold: float, kernel: int = 1,
                    three_class: bool = False, band: int = 0) -> np.ndarray:
    """What the change model gives on whole rasters (numpy, float64)."""
    d = after[band].astype(np.float64) - before[band].astype(np.float64)
    if kernel > 1:
        p = kernel // 2
        padded = np.pad(d, p)
        h, w = d.shape
        d = sum(padded[dy:dy + h, dx:dx + w] for dy in range(kernel) for dx in range(kernel))
    if three_class:
        return np.where(d > threshold, 1, np.where(-d > threshold, 2, 0)).astype(np.uint8)
    return (np.abs(d) > threshold).astype(np.uint8)


def make_model(folder: Path, name: str, *, bands_per_date: int = 3, extract: list[int] | None = None,
               threshold: float = 20.5, kernel: int = 1, three_class: bool = False, two_inputs: bool = False,
               model_type: str = "ImageClassification") -> Path:
    """An .emd + .onnx change model in ``folder``; returns the .emd."""
    folder.mkdir(parents=True, exist_ok=True)
    extract = extract if extract is not None else list(range(2 * bands_per_date))
    per_date = len(extract) // 2
    module = change_module(per_date, threshold, kernel, three_class, two_inputs)
    export_onnx(module, folder / f"{name}.onnx", per_date if two_inputs else 2 * per_date, TILE,
                n_inputs=2 if two_inputs else 1)
    return write_emd(folder / f"{name}.emd", f"{name}.onnx", model_type=model_type, tile=TILE, bands=extract,
                     classes=THREE if three_class else TWO, ModelConfiguration="change_detection")


# ------------------------------------------------------------------------------------------------ rasters
def synthetic_pair(h: int = 64, w: int = 64, bands: int = 3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two dates: noise of at most 5 in band 0 everywhere, a +60 block, a -60 block and a +60 one-pixel line on
    column 16; the other bands change at random (the model must ignore them)."""
    rng = np.random.default_rng(seed)
    before = rng.integers(70, 180, size=(bands, h, w)).astype(np.uint8)
    after = before.copy()
    after[0] = (before[0].astype(int) + rng.integers(-5, 6, size=(h, w))).astype(np.uint8)
    after[0, 8:20, 30:50] = before[0, 8:20, 30:50] + 60
    after[0, 40:56, 4:14] = before[0, 40:56, 4:14] - 60
    after[0, 20:40, 16] = before[0, 20:40, 16] + 60
    after[1:] = rng.integers(0, 256, size=(bands - 1, h, w)).astype(np.uint8)
    return before, after


def grid_of(path: Path) -> tuple[tuple, int, int, str]:
    ds = gdal.Open(str(path))
    out = (ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize, ds.GetProjection())
    ds = None
    return out


def output_band(path: Path) -> tuple[np.ndarray, float | None, str]:
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    out = band.ReadAsArray(), band.GetNoDataValue(), gdal.GetDataTypeName(band.DataType)
    ds = None
    return out


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    before, after = synthetic_pair()
    return (write_raster(tmp_path / "from.tif", before), write_raster(tmp_path / "to.tif", after), before, after)


def run(pair_or_paths, emd: Path, output: Path, arguments: str = "", progress=None, request=None):
    md = load_model_definition(emd)
    return detect_change(str(pair_or_paths[0]), str(pair_or_paths[1]), md, str(output), arguments,
                         request=request, device=CPU, progress=progress or RecordingProgress())


# ------------------------------------------------------------------------------------------------ exact pixels
@pytest.mark.parametrize("two_inputs", [False, True], ids=["stacked", "two-inputs"])
@pytest.mark.parametrize("three_class", [False, True], ids=["2-class", "3-class"])
def test_pointwise_model_gives_the_exact_change_map(tmp_path, pair, two_inputs, three_class):
    emd = make_model(tmp_path / "m", "change", three_class=three_class, two_inputs=two_inputs)
    rec = RecordingProgress()
    result = run(pair, emd, tmp_path / "out.tif", "padding 0;batch_size 4", rec)
    expected = expected_change(pair[2], pair[3], 20.5, three_class=three_class)
    values, nodata, dtype = output_band(tmp_path / "out.tif")
    assert np.array_equal(values, expected)
    # Exactly the blocks and the line changed; their direction decides the 3-class values.
    assert int(expected.astype(bool).sum()) == 12 * 20 + 16 * 10 + 20
    if three_class:
        assert set(np.unique(expected[8:20, 30:50])) == {1} and set(np.unique(expected[40:56, 4:14])) == {2}
    assert (dtype, nodata) == ("Byte", 255)
    assert grid_of(tmp_path / "out.tif") == grid_of(pair[0])
    assert result.output_values == ([0, 1, 2] if three_class else [0, 1])
    assert result.pixel_counts == {int(v): int((expected == v).sum()) for v in np.unique(expected)}
    assert (result.tiles, result.padding, result.batch_size) == (16, 0, 4)
    assert rec.warnings == []
    assert not any("resampled" in line or "reprojected" in line or "overlap" in line for line in rec.infos)
    assert "Normalisation: none: pixel values are passed unchanged" in rec.infos


@pytest.mark.parametrize("two_inputs", [False, True], ids=["stacked", "two-inputs"])
def test_3x3_model_needs_and_gets_its_padding(tmp_path, pair, two_inputs):
    emd = make_model(tmp_path / "m", "box", kernel=3, threshold=100.5, two_inputs=two_inputs, three_class=True)
    expected = expected_change(pair[2], pair[3], 100.5, kernel=3, three_class=True)
    run(pair, emd, tmp_path / "padded.tif", "padding 2;batch_size 1")
    assert np.array_equal(output_band(tmp_path / "padded.tif")[0], expected)
    # The one-pixel line on column 16 reaches column 15 through the 3x3 window ...
    assert (expected[21:39, 15] == 1).all()
    # ... but not with padding 0, where column 15 ends a tile and the model sees zeros beyond it.
    run(pair, emd, tmp_path / "unpadded.tif", "padding 0")
    unpadded = output_band(tmp_path / "unpadded.tif")[0]
    assert (unpadded[21:39, 15] == 0).all()
    assert not np.array_equal(unpadded, expected)


def test_extract_bands_pick_the_dates_from_the_stack(tmp_path, pair):
    """ExtractBands [0, 3] with 3 bands per date: the first band of each date; [3, 0] hands the dates over swapped."""
    emd = make_model(tmp_path / "m", "pick", extract=[0, 3], three_class=True)
    run(pair, emd, tmp_path / "out.tif", "padding 0")
    expected = expected_change(pair[2], pair[3], 20.5, three_class=True)
    assert np.array_equal(output_band(tmp_path / "out.tif")[0], expected)
    swapped = make_model(tmp_path / "s", "swap", extract=[3, 0], three_class=True)
    run(pair, swapped, tmp_path / "swapped.tif", "padding 0")
    assert np.array_equal(output_band(tmp_path / "swapped.tif")[0], np.choose(expected, [0, 2, 1]))


def test_band_count_mismatch_is_warned(tmp_path, pair):
    before, after = pair[2], pair[3]
    to4 = write_raster(tmp_path / "to4.tif", np.concatenate([after, after[:1]]))
    emd = make_model(tmp_path / "m", "pick", extract=[0, 3])
    rec = RecordingProgress()
    run((pair[0], to4), emd, tmp_path / "out.tif", "padding 0", rec)
    assert rec.warnings == ["The from-raster has 3 bands and the to-raster 4: check ExtractBands [0, 3]"]
    assert np.array_equal(output_band(tmp_path / "out.tif")[0], expected_change(before, after, 20.5))


def test_dates_of_different_types_are_stretched_band_by_band(tmp_path):
    """Byte before, UInt16 after, DataRange [0, 1]: the stack is read as float32 and each band is stretched from its
    own raster's min..max (0..200 before, 0..2000 after), so equal steps of 10 and 100 compare equal."""
    rng = np.random.default_rng(5)
    k0 = rng.integers(0, 21, size=(32, 48))
    k0[0, 0], k0[0, 1] = 0, 20  # both ends of the range occur
    k1 = k0.copy()
    k1[4:12, 8:30] = np.clip(k0[4:12, 8:30] + 4, 0, 20)
    k1[20:28, 30:40] = np.clip(k0[20:28, 30:40] - 3, 0, 20)
    before = write_raster(tmp_path / "from8.tif", (10 * k0).astype(np.uint8))
    after = write_raster(tmp_path / "to16.tif", (100 * k1).astype(np.uint16))
    emd = make_model(tmp_path / "m", "norm", extract=[0, 1], threshold=0.125, three_class=True)
    data = json.loads(emd.read_text())
    data["DataRange"] = [0, 1]
    emd.write_text(json.dumps(data))
    rec = RecordingProgress()
    run((before, after), emd, tmp_path / "out.tif", "padding 0", rec)
    expected = expected_change(k0[None] / 20.0, k1[None] / 20.0, 0.125, three_class=True)
    assert (expected == 1).sum() > 50 and (expected == 2).sum() > 20
    assert np.array_equal(output_band(tmp_path / "out.tif")[0], expected)
    assert "Normalisation: DataRange: linear stretch from each band's min..max to [0, 1]" in rec.infos


# ------------------------------------------------------------------------------------------------ grids
def test_to_raster_with_another_cell_size_is_resampled_onto_the_from_grid(tmp_path):
    """From: 1 m, 64x64.  To: 2 m, 32x32 over the same area, one 2 m block brighter by 100 in band 0.  Bilinear
    upsampling by 2 weighs neighbours 3/4 and 1/4 (rounded to integers for Byte): inside the block's edge d is 75 or
    56, just outside 25 or 19, so with T = 50.5 the change map is the block at 1 m, exactly."""
    before = np.full((3, 64, 64), 100, np.uint8)
    after2 = np.full((3, 32, 32), 100, np.uint8)
    after2[0, 5:12, 8:20] = 200
    src = write_raster(tmp_path / "from.tif", before)
    dst = write_raster(tmp_path / "to2m.tif", after2, cell=2.0)
    emd = make_model(tmp_path / "m", "change", threshold=50.5)
    rec = RecordingProgress()
    run((src, dst), emd, tmp_path / "out.tif", "padding 2", rec)
    expected = np.zeros((64, 64), np.uint8)
    expected[10:24, 16:40] = 1
    assert grid_of(tmp_path / "out.tif") == grid_of(src)
    assert np.array_equal(output_band(tmp_path / "out.tif")[0], expected)
    assert "The to-raster's grid differs from the processing grid: it is resampled on the fly (bilinear)" in rec.infos
    assert not any("overlap" in line for line in rec.infos)


def _warp(src: Path, dst: Path, epsg: int, res: float) -> Path:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    gdal.Warp(str(dst), str(src), options=gdal.WarpOptions(dstSRS=srs.ExportToWkt(), xRes=res, yRes=res,
                                                           resampleAlg="near", dstNodata=0))
    return dst


@pytest.mark.parametrize("epsg, res", [(3857, 1.0), (32634, 1.0)], ids=["web-mercator", "utm-34"])
def test_to_raster_in_another_crs_is_reprojected_on_the_fly(tmp_path, epsg, res):
    """The to-raster is the later date warped (nearest) to another CRS; reading it back onto the from-grid
    resamples twice, so only a band of 2 pixels around the changed block's edge may differ from the block."""
    before = np.full((3, 64, 64), 100, np.uint8)
    after = before.copy()
    after[0, 20:40, 24:44] = 200
    src = write_raster(tmp_path / "from.tif", before)
    to_native = write_raster(tmp_path / "to_native.tif", after)
    dst = _warp(to_native, tmp_path / f"to_{epsg}.tif", epsg, res)
    assert grid_of(dst)[3] != grid_of(src)[3]
    emd = make_model(tmp_path / "m", "change", threshold=50.5)
    rec = RecordingProgress()
    run((src, dst), emd, tmp_path / "out.tif", "padding 2", rec)
    assert grid_of(tmp_path / "out.tif") == grid_of(src)
    assert "The to-raster's grid differs from the processing grid: it is reprojected on the fly (bilinear)" in rec.infos
    values, nodata, _ = output_band(tmp_path / "out.tif")
    block = np.zeros((64, 64), bool)
    block[20:40, 24:44] = True
    edge = np.zeros((64, 64), bool)
    edge[18:42, 22:46] = True
    edge[22:38, 26:42] = False
    border = np.ones((64, 64), bool)
    border[2:-2, 2:-2] = False  # the warped raster's own NoData collar may reach the outer pixels
    sure = ~edge & ~border
    assert np.array_equal(values[sure], block[sure].astype(np.uint8))
    assert (values[edge] != nodata).all()
    assert abs(int((values == 1).sum()) - 400) <= 40


def test_partial_overlap_processes_only_the_overlap(tmp_path, pair):
    before, after = pair[2], pair[3]
    # The to-raster starts 16 m east and 8 m south of the from-raster, on the same 1 m grid.
    dst = write_raster(tmp_path / "to_shift.tif", after, origin=(ORIGIN[0] + 16, ORIGIN[1] - 8))
    emd = make_model(tmp_path / "m", "change")
    rec = RecordingProgress()
    result = run((pair[0], dst), emd, tmp_path / "out.tif", "padding 0", rec)
    gt, w, h, _ = grid_of(tmp_path / "out.tif")
    assert (gt, w, h) == ((ORIGIN[0] + 16, 1.0, 0.0, ORIGIN[1] - 8, 0.0, -1.0), 48, 56)
    assert "Only the overlap of the two rasters is processed: 48 x 56 cells" in rec.infos
    assert not any("resampled" in line for line in rec.infos)  # aligned: read directly
    expected = expected_change(before[:, 8:, 16:], after[:, :56, :48], 20.5)
    assert np.array_equal(output_band(tmp_path / "out.tif")[0], expected)
    assert result.pixels == 48 * 56


def test_non_overlapping_rasters_are_refused(tmp_path, pair):
    dst = write_raster(tmp_path / "far.tif", pair[3], origin=(ORIGIN[0] + 1000, ORIGIN[1]))
    emd = make_model(tmp_path / "m", "change")
    with pytest.raises(InputDataError) as exc:
        run((pair[0], dst), emd, tmp_path / "out.tif")
    assert str(exc.value) == "Rasters 'from.tif' and 'far.tif' do not overlap: there is nothing to compare"
    assert not (tmp_path / "out.tif").exists()


def test_extent_and_cell_size_request(tmp_path, pair):
    """A processing extent on the from-grid gives exactly that window of the full run."""
    emd = make_model(tmp_path / "m", "change")
    run(pair, emd, tmp_path / "full.tif", "padding 0")
    full = output_band(tmp_path / "full.tif")[0]
    request = RasterRequest(extent=(ORIGIN[0] + 10, ORIGIN[1] - 50, ORIGIN[0] + 40, ORIGIN[1] - 5))
    run(pair, emd, tmp_path / "part.tif", "padding 0", request=request)
    gt, w, h, _ = grid_of(tmp_path / "part.tif")
    assert (gt[0], gt[3], w, h) == (ORIGIN[0] + 10, ORIGIN[1] - 5, 30, 45)
    assert np.array_equal(output_band(tmp_path / "part.tif")[0], full[5:50, 10:40])


# ------------------------------------------------------------------------------------------------ NoData
def test_nodata_in_either_date_is_nodata_in_the_output(tmp_path):
    before, after = synthetic_pair(seed=3)
    before[before == 0] = 1
    after[after == 0] = 1
    before[:, 2:6, 2:30] = 0      # NoData in the earlier date only
    after[:, 50:60, 40:62] = 0    # NoData in the later date only
    before[:, 10:14, 33:37] = 0   # inside the changed block, in both
    after[:, 10:14, 33:37] = 0
    src = write_raster(tmp_path / "from.tif", before, nodata=0)
    dst = write_raster(tmp_path / "to.tif", after, nodata=0)
    emd = make_model(tmp_path / "m", "change", two_inputs=True)
    result = run((src, dst), emd, tmp_path / "out.tif", "padding 2")
    values, nodata, _ = output_band(tmp_path / "out.tif")
    invalid = (before == 0).all(axis=0) | (after == 0).all(axis=0)
    assert int(invalid.sum()) == 4 * 28 + 10 * 22 + 16
    expected = expected_change(before, after, 20.5)
    expected[invalid] = 255
    assert nodata == 255
    assert np.array_equal(values, expected)
    assert sum(result.pixel_counts.values()) == 64 * 64 - int(invalid.sum())


# ------------------------------------------------------------------------------------------------ styling
def test_output_is_styled_with_the_change_classes(tmp_path, pair):
    emd = make_model(tmp_path / "m", "change", three_class=True)
    run(pair, emd, tmp_path / "out.tif", "padding 0")
    ds = gdal.Open(str(tmp_path / "out.tif"))
    band = ds.GetRasterBand(1)
    ct = band.GetColorTable()
    assert [ct.GetColorEntry(i)[:3] for i in range(3)] == [(0, 0, 0), (0, 200, 0), (200, 0, 0)]
    rat = band.GetDefaultRAT()
    assert [(rat.GetValueAsInt(i, 0), rat.GetValueAsString(i, 1)) for i in range(rat.GetRowCount())] == [
        (0, "No change"), (1, "Increase"), (2, "Decrease")]
    ds = None
    qml = (tmp_path / "out.qml").read_text(encoding="utf-8")
    assert qml.count("<paletteEntry") == 3
    for label in ("No change", "Increase", "Decrease"):
        assert f'label="{label}"' in qml


# ------------------------------------------------------------------------------------------------ refusals
def test_model_that_is_not_a_pixel_classifier_is_refused(tmp_path, pair):
    emd = make_model(tmp_path / "m", "det", model_type="ObjectDetection")
    with pytest.raises(InputDataError, match="^ModelType 'ObjectDetection' is not a pixel model"):
        run(pair, emd, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_extract_bands_beyond_both_rasters_are_refused(tmp_path, pair):
    emd = make_model(tmp_path / "m", "wide", extract=[0, 1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(InputDataError) as exc:
        run(pair, emd, tmp_path / "out.tif")
    assert str(exc.value) == ("The model needs band 8 of the stacked dates (ExtractBands [0, 1, 2, 3, 4, 5, 6, 7]) but "
                              "the from-raster has 3 and the to-raster 3 bands")
    assert not (tmp_path / "out.tif").exists()


def test_two_input_model_with_an_odd_band_count_is_refused(tmp_path, pair):
    emd = make_model(tmp_path / "m", "two", two_inputs=True)
    data = load_model_definition(emd)
    data.extract_bands = [0, 1, 3]
    with pytest.raises(InputDataError, match="^The model takes two images but 3 bands were read"):
        detect_change(str(pair[0]), str(pair[1]), data, str(tmp_path / "out.tif"), device=CPU)
    assert not (tmp_path / "out.tif").exists()


def test_unwritable_output_is_refused(tmp_path, pair):
    emd = make_model(tmp_path / "m", "change")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    with pytest.raises(OutputError, match="^Output folder '.*blocker' is a file, not a folder$"):
        run(pair, emd, blocker / "out.tif")
    with pytest.raises(OutputError, match="^Output folder '.*missing' does not exist$"):
        run(pair, emd, tmp_path / "missing" / "out.tif")
    with pytest.raises(OutputError, match=r"^Output '.*out\.png' must be a GeoTIFF \(\.tif\)"):
        run(pair, emd, tmp_path / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "from.tif", "m", "to.tif"]


def test_raster_without_crs_is_refused(tmp_path, pair):
    dst = write_raster(tmp_path / "nocrs.tif", pair[3], epsg=None)
    emd = make_model(tmp_path / "m", "change")
    with pytest.raises(InputDataError, match="^Raster 'nocrs.tif' has no coordinate reference system"):
        run((pair[0], dst), emd, tmp_path / "out.tif")


# ------------------------------------------------------------------------------------------------ cancel
def test_cancelling_leaves_no_output(tmp_path, pair):
    emd = make_model(tmp_path / "m", "change")
    rec = RecordingProgress(cancel_after=2)
    with pytest.raises(CancelledError):
        run(pair, emd, tmp_path / "out.tif", "padding 0;batch_size 1", rec)
    assert rec.updates >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from.tif", "m", "to.tif"]


# ------------------------------------------------------------------------------------------------ real NAIP pair
def test_naip_water_change(tmp_path, testdata):
    """Water appeared / disappeared between the 2009 and 2020 NAIP images of a prairie-pothole area.

    The model (built here) computes NDWI = (G - NIR) / (G + NIR) for each date and calls a pixel water where it is
    above 0: class 1 where water appeared, 2 where it disappeared, 0 otherwise.  The reference is the same rule in
    numpy on the 2009 raster and the 2020 raster read on the 2009 grid by GDAL with nearest-neighbour resampling.
    The grids differ (2020 is 1 m off and one row shorter), so the plugin resamples 2020 bilinearly and the two
    cannot agree exactly where NDWI is near 0 or at water edges: at least 95% of valid pixels must agree, and each
    change class must cover a fair area.
    """
    import torch

    old = testdata("naip", "naip_m_4709963_se_14_1_20090818.tif")
    new = testdata("naip", "naip_m_4709963_se_14_1_20200831.tif")

    class Water(torch.nn.Module):
        def forward(self, x):  # x: G, NIR of 2009 then G, NIR of 2020
            w0 = ((x[:, 0:1] - x[:, 1:2]) / (x[:, 0:1] + x[:, 1:2] + 1e-6) > 0).float()
            w1 = ((x[:, 2:3] - x[:, 3:4]) / (x[:, 2:3] + x[:, 3:4] + 1e-6) > 0).float()
            return torch.cat([torch.zeros_like(w0) + 0.5, w1 - w0, w0 - w1], dim=1)

    folder = tmp_path / "water"
    folder.mkdir()
    export_onnx(Water().eval(), folder / "water.onnx", 4, 128)
    emd = write_emd(folder / "water.emd", "water.onnx", tile=128, bands=[1, 3, 5, 7], ModelConfiguration="change_detection",
                    classes=[(0, "No change", (255, 255, 255)), (1, "Water appeared", (0, 0, 255)),
                             (2, "Water disappeared", (255, 128, 0))])
    rec = RecordingProgress()
    out = tmp_path / "water_change.tif"
    run((old, new), emd, out, "padding 0;batch_size 4", rec)
    gt, w, h, _ = grid_of(out)
    old_gt, old_w, old_h, old_crs = grid_of(old)
    assert gt[1] == 5.0 and gt[5] == -5.0 and (gt[0] - old_gt[0]) % 5 == 0 and (gt[3] - old_gt[3]) % 5 == 0
    # The overlap, snapped outwards to 2009's cells, is all of 2009's grid ...
    assert (gt, w, h) == (old_gt, old_w, old_h)
    assert not any(line.startswith("Only the overlap") for line in rec.infos)
    assert "The to-raster's grid differs from the processing grid: it is resampled on the fly (bilinear)" in rec.infos

    values, nodata, _ = output_band(out)
    # ... but 2020 ends 4 m above the centres of 2009's last row, which is NoData.
    assert (values[-1] == nodata).all() and (values[:-1, 1:-1] != nodata).all()
    xmin, ymax = gt[0], gt[3]
    bounds = (xmin, ymax - 5 * h, xmin + 5 * w, ymax)

    def on_grid(path: Path) -> np.ndarray:
        ds = gdal.Warp("", str(path), options=gdal.WarpOptions(format="MEM", outputBounds=bounds, width=w, height=h,
                                                               resampleAlg="near"))
        arr = ds.ReadAsArray().astype(np.float64)
        ds = None
        return arr

    a, b = on_grid(old), on_grid(new)
    valid = (a != 0).any(axis=0) & (b != 0).any(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w0 = (a[1] - a[3]) / (a[1] + a[3]) > 0
        w1 = (b[1] - b[3]) / (b[1] + b[3]) > 0
    reference = np.where(w1 & ~w0, 1, np.where(w0 & ~w1, 2, 0))
    ok = values != nodata
    assert ok.sum() >= 0.99 * valid.sum()
    both = ok & valid
    agreement = float((values[both] == reference[both]).mean())
    assert agreement >= 0.95, agreement
    for cls in (1, 2):
        assert (values == cls).sum() > 200, (cls, int((values == cls).sum()))
        assert (reference == cls).sum() > 200
    assert math.isclose((values[both] == 0).mean(), (reference[both] == 0).mean(), abs_tol=0.03)

    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    ct = band.GetColorTable()
    assert [ct.GetColorEntry(i)[:3] for i in range(3)] == [(255, 255, 255), (0, 0, 255), (255, 128, 0)]
    rat = band.GetDefaultRAT()
    assert [rat.GetValueAsString(i, 1) for i in range(rat.GetRowCount())] == [
        "No change", "Water appeared", "Water disappeared"]
    ds = None
    qml = out.with_suffix(".qml").read_text(encoding="utf-8")
    assert [qml.count(f'label="{n}"') for n in ("No change", "Water appeared", "Water disappeared")] == [1, 1, 1]
    assert old_crs == grid_of(out)[3]

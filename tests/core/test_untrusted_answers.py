# SPDX-License-Identifier: GPL-2.0-or-later
"""A model's answers never become wrong output: class ids outside its classes, boxes of +-1e30, inverted or NaN
boxes are dropped and counted; complex-valued bands, a NaN cell size and a NaN overlap ratio are refused."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from builders import RecordingProgress, write_raster
from dltools.core.detection.decode import ChipDetections
from dltools.core.detection.nms import check_max_overlap, nms_polygons
from dltools.core.detection.screen import dropped_lines, screen
from dltools.core.errors import ArgumentError, InputDataError
from dltools.core.model.loader import load_model_definition
from dltools.core.raster.request import RasterRequest
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from dltools.core.tools.detect_objects.pipeline import detect_objects
from dltools.core.trust import CodeTrust
from osgeo import gdal, ogr


def test_screen_drops_and_counts_what_cannot_be_right():
    boxes = np.array([[1, 1, 5, 5], [1, 1, 5, 5], [1, 1, 5, 5], [1, 1, 5, 5], [1, 1, 5, 5],
                      [-1e30, -1e30, 1e30, 1e30], [6, 6, 2, 2], [np.nan, 0, 3, 3], [14, 14, 40, 90]], float)
    classes = np.array([0, 1, 3, 99, -5, 0, 1, 0, 1])
    det = ChipDetections(boxes, np.full(9, 0.9), classes)
    dropped: Counter = Counter()
    kept = screen(det, 2, 16, 16, dropped)
    assert kept.classes.tolist() == [0, 1, 1]  # the last one reaches past the tile, not far: kept
    assert kept.boxes.tolist() == [[1, 1, 5, 5], [1, 1, 5, 5], [14, 14, 40, 90]]
    assert dropped == {"unknown_class": 3, "outside": 1, "inverted": 1, "not_finite": 1}
    assert dropped_lines(dropped) == [
        "1 objects had an inverted box (x2 < x1 or y2 < y1): dropped",
        "1 objects had a NaN or infinite box or score: dropped",
        "1 objects had a box reaching far outside its tile (more than 8 tiles): dropped",
        "3 objects had a class id outside the model's classes: dropped"]


class _Hostile(torch.nn.Module):
    """A torchvision-style detector: in every tile one real square (2..6), plus a box of +-1e30, an inverted
    box and objects of labels 0, 3 and 99 (the model has classes 1 and 2: torchvision labels count from 1)."""

    def forward(self, images: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        out: list[dict[str, torch.Tensor]] = []
        for _ in images:
            boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0], [-1e30, -1e30, 1e30, 1e30], [9.0, 9.0, 5.0, 5.0],
                                  [8.0, 8.0, 12.0, 12.0], [8.0, 2.0, 12.0, 6.0], [2.0, 8.0, 6.0, 12.0]])
            out.append({"boxes": boxes, "scores": torch.full([6], 0.9),
                        "labels": torch.tensor([1, 1, 2, 0, 3, 99])})
        losses: dict[str, torch.Tensor] = {}
        return losses, out


def test_hostile_detector_answers_are_dropped_not_merged(tmp_path):
    import json

    raster = write_raster(tmp_path / "in.tif", np.zeros((3, 32, 32), np.uint8), cell=(1.0, 1.0))
    emd = {"Framework": "PyTorch", "ModelType": "ObjectDetection", "ImageHeight": 16, "ImageWidth": 16,
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "one"}, {"Value": 2, "Name": "two"}]}
    scripted = torch.jit.script(_Hostile())
    torch.jit.save(scripted, str(tmp_path / "hostile.pt"), _extra_files={"dltools.json": json.dumps(emd)})
    md = load_model_definition(str(tmp_path / "hostile.pt"), trust=CodeTrust.all())
    progress = RecordingProgress()
    result = detect_objects(str(raster), md, "padding 0;batch_size 1", progress=progress)
    # one real square per tile survives the seam merge (the 1e30 box would have swallowed them all)
    assert len(result.objects) == 4
    assert sorted({o.class_value for o in result.objects}) == [1]
    said = progress.infos + progress.warnings
    assert "4 objects had a box reaching far outside its tile (more than 8 tiles): dropped" in said
    assert "4 objects had an inverted box (x2 < x1 or y2 < y1): dropped" in said
    assert "12 objects had a class id outside the model's classes: dropped" in said


def test_complex_bands_are_refused(tmp_path):
    path = tmp_path / "complex.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, 2, gdal.GDT_CFloat32)
    ds.SetGeoTransform((0, 1, 0, 8, 0, -1))
    ds.SetProjection('LOCAL_CS["x"]')
    ds = None
    md = load_model_definition('{"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "/m.onnx", '
                               '"ImageHeight": 8, "ImageWidth": 8}', check_file=False)
    md.model_file = tmp_path / "absent.onnx"
    with pytest.raises(InputDataError, match=r"^Raster 'complex.tif' band 1 holds complex numbers \(CFloat32\)"):
        classify_pixels(str(path), md, str(tmp_path / "out.tif"))


def test_nan_cell_size_is_refused(tmp_path):
    from dltools.core.raster.request import processing_grid

    raster = write_raster(tmp_path / "in.tif", np.zeros((1, 8, 8), np.uint8))
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(InputDataError, match="CELL_SIZE must be a finite number above 0"):
            processing_grid(str(raster), RasterRequest(cell_size=bad))


def test_nan_overlap_ratio_is_refused_by_the_nms_rule():
    square = ogr.CreateGeometryFromWkt("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))")
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ArgumentError, match="MAX_OVERLAP_RATIO must be a number from 0 to 1"):
            nms_polygons([square, square.Clone()], np.array([0.5, 0.6]), None, bad)
        with pytest.raises(ArgumentError):
            check_max_overlap(bad)
    assert check_max_overlap(0.5) == 0.5


class _SmallMasks(torch.nn.Module):
    """A torchvision-style detector whose instance masks are 7x7 whatever the tile."""

    def forward(self, images: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        out: list[dict[str, torch.Tensor]] = []
        for _ in images:
            out.append({"boxes": torch.tensor([[2.0, 2.0, 6.0, 6.0]]), "scores": torch.tensor([0.9]),
                        "labels": torch.tensor([1]), "masks": torch.ones(1, 1, 7, 7)})
        losses: dict[str, torch.Tensor] = {}
        return losses, out


def test_masks_of_another_size_are_an_error_naming_the_shapes(tmp_path):
    import json

    raster = write_raster(tmp_path / "in.tif", np.zeros((3, 32, 32), np.uint8))
    emd = {"Framework": "PyTorch", "ModelType": "InstanceDetection", "ImageHeight": 32, "ImageWidth": 32,
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "one"}]}
    torch.jit.save(torch.jit.script(_SmallMasks()), str(tmp_path / "masks.pt"),
                   _extra_files={"dltools.json": json.dumps(emd)})
    md = load_model_definition(str(tmp_path / "masks.pt"), trust=CodeTrust.all())
    with pytest.raises(InputDataError, match=r"^The detector returned masks of shape \[1, 1, 7, 7\] for tiles of "
                                             r"32x32 pixels: instance masks must cover the tile"):
        detect_objects(str(raster), md, "padding 0;batch_size 1")


def test_out_of_memory_advice_names_what_used_the_memory(monkeypatch):
    """NMS has no batch_size: running out of memory there is never answered with 'lower batch_size'."""
    from dltools.core.detection import nms
    from dltools.core.errors import memory_advice

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nms, "candidate_pairs", exhausted)
    square = ogr.CreateGeometryFromWkt("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))")
    with pytest.raises(MemoryError) as info:
        nms.nms_polygons([square] * 3, np.array([0.5, 0.6, 0.7]), None, 0.5)
    advice = memory_advice(info.value)
    assert advice.startswith("Out of memory while merging or suppressing detected objects") and "batch_size" not in advice
    try:
        raise MemoryError
    except MemoryError as exc:  # raised outside the engine's detection code: the model's batch
        assert "lower batch_size" in memory_advice(exc)

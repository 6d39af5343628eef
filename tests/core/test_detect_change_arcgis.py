# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn ChangeDetector definitions (ModelConfiguration "change_detection") run as ArcGIS runs them:
each date min-max scaled to 0-1 then (x - 0.5) / 0.5, and every change class written as the first non-zero Value."""

from __future__ import annotations

import json

import numpy as np
import torch
from builders import export_onnx, read_raster, write_raster
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.detect_change.pipeline import detect_change


class SignedChange(torch.nn.Module):
    """Scores [no change, increase, decrease] from band 0 of each date: d = to - from (normalised units)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 1:2] - x[:, 0:1]
        t = torch.full_like(d, 0.25)
        return torch.cat([t, d, -d], 1)


def _emd(tmp_path, **extra):
    export_onnx(SignedChange(), tmp_path / "chg.onnx", 2, 16)
    data = {"Framework": "arcgis.learn.models._inferencing", "ModelConfiguration": "change_detection",
            "ModelType": "ImageClassification", "InferenceFunction": "ArcGISImageClassifier.py",
            "ModelFile": "chg.onnx", "ImageHeight": 16, "ImageWidth": 16, "ExtractBands": [0, 1],
            "ArcGISLearnVersion": "2.0.0",
            "Classes": [{"Value": 0, "Name": "No change", "Color": [0, 0, 0]},
                        {"Value": 5, "Name": "Change", "Color": [255, 0, 0]},
                        {"Value": 9, "Name": "Other", "Color": [0, 255, 0]}]}
    data.update(extra)
    path = tmp_path / "chg.emd"
    path.write_text(json.dumps(data))
    return load_model_definition(str(path))


def _pair(tmp_path):
    before = np.full((1, 20, 24), 100, np.uint8)
    after = before.copy()
    after[0, 2:8, 3:9] = 140      # +40 -> +0.31 in (x-0.5)/0.5 units: above 0.25
    after[0, 12:18, 10:20] = 60   # -40: a decrease, written as the first change class too
    after[0, 0, 0] = 110          # +10 -> +0.078: below 0.25, no change
    return (write_raster(tmp_path / "a.tif", before), write_raster(tmp_path / "b.tif", after))


def test_arcgis_change_detection_scales_and_writes_binary_change(tmp_path):
    a, b = _pair(tmp_path)
    md = _emd(tmp_path)
    out = tmp_path / "out.tif"
    detect_change(str(a), str(b), md, str(out), "padding 2;batch_size 4")
    got = read_raster(out)
    expected = np.zeros((20, 24), np.uint8)
    expected[2:8, 3:9] = 5
    expected[12:18, 10:20] = 5
    assert np.array_equal(got, expected)


def test_normalization_stats_give_the_min_max(tmp_path):
    a, b = _pair(tmp_path)
    # band_min/max 0..1000: the +40 step is now 0.08 in normalised units, under the 0.25 threshold
    md = _emd(tmp_path, NormalizationStats={"band_min_values": [0, 0], "band_max_values": [1000, 1000]})
    out = tmp_path / "out.tif"
    detect_change(str(a), str(b), md, str(out), "padding 2")
    assert not read_raster(out).any()

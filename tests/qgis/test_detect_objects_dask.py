# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects' blocks on a Dask cluster (SCHEDULER local:2): the same objects as in-process."""

from __future__ import annotations

import pytest
from builders import write_raster
from detection_models import expected_boxes, square_scene, yolo_v8_onnx
from recording_feedback import RecordingFeedback

pytest.importorskip("distributed", reason="dask[distributed] is not installed")

W, H = 150, 130
SQUARES = [(5, 5, 10, 0, 200), (40, 20, 20, 1, 230), (56, 50, 16, 0, 190), (90, 60, 12, 0, 180),
           (-4, 80, 10, 1, 210), (140, 100, 20, 0, 250), (100, 120, 14, 1, 220), (120, 30, 28, 1, 240)]


def features(layer) -> list[tuple]:
    return sorted((f.geometry().asWkt(6), f["Class"], f["ClassValue"], round(f["Confidence"], 4))
                  for f in layer.getFeatures())


def test_detect_objects_on_a_local_cluster_equals_in_process(context, tmp_path):
    import processing

    raster = write_raster(tmp_path / "scene.tif", square_scene(W, H, SQUARES), origin=(500000.0, 4000000.0))
    onnx = yolo_v8_onnx(tmp_path / "yolo.onnx", 48, {0: "red", 1: "green"})
    params = {"INPUT": str(raster), "MODEL": str(onnx), "ARGUMENTS": "padding 8;batch_size 4;block_size 64",
              "OUTPUT": "memory:"}
    local = processing.run("dltools:detectobjects", params, context=context)["OUTPUT"]
    feedback = RecordingFeedback()
    dask = processing.run("dltools:detectobjects", {**params, "SCHEDULER": "local:2", "RETRIES": 1},
                          context=context, feedback=feedback)["OUTPUT"]
    assert local.featureCount() == len(expected_boxes(W, H, SQUARES))
    assert features(dask) == features(local)
    assert any(line.startswith("Dask: ") and "ran on" in line for line in feedback.infos)

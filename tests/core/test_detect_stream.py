# SPDX-License-Identifier: GPL-2.0-or-later
"""Detect Objects writes the objects no seam can touch as their block finishes and holds only those near a seam:
the output is the same as a run that merges every object at the end, in-process, in a child process and on Dask,
on a scene of squares cut by tile and block seams."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from builders import RecordingProgress, write_raster
from detection_models import expected_boxes, square_scene, yolo_v8_onnx
from dltools.core.errors import CancelledError
from dltools.core.model.loader import load_model_definition
from dltools.core.runner.parent import run_in_child
from dltools.core.tools.detect_objects import stream
from dltools.core.tools.detect_objects.pipeline import detect_objects
from dltools.core.trust import CodeTrust
from osgeo import ogr

W, H = 320, 260
# 48-pixel tiles with padding 8 (32-pixel centres), blocks of 128 pixels: seams every 32, block seams every 128
ARGS = "padding 8;batch_size 4;block_size 128;threshold 0.3"


def _squares() -> list[tuple[int, int, int, int, int]]:
    rng = np.random.default_rng(5)
    out = []
    for y in range(2, H - 14, 18):
        for x in range(2, W - 14, 18):
            out.append((x + int(rng.integers(0, 4)), y + int(rng.integers(0, 4)), int(rng.integers(4, 13)),
                        int(rng.integers(0, 2)), int(rng.integers(120, 255))))
    return out


SQUARES = _squares()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    raster = write_raster(d / "scene.tif", square_scene(W, H, SQUARES), origin=(0.0, 0.0), cell=1.0)
    md = load_model_definition(str(yolo_v8_onnx(d / "yolo48.onnx", 48, {0: "red", 1: "green"})),
                               trust=CodeTrust.all())
    return raster, md


def _key(objects) -> list[tuple]:
    return sorted((o.wkb, o.class_name, o.class_value, o.confidence) for o in objects)


def _boxes(objects) -> list[tuple]:
    out = []
    for o in objects:
        x1, x2, y1, y2 = ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope()
        out.append((x1, -y2, x2, -y1, o.class_value))
    return sorted(out)


def _merged_at_the_end(monkeypatch):
    """No block has an interior: every object is held and merged once at the end, as before streaming."""
    monkeypatch.setattr(stream, "block_interior", lambda chips, job: (np.inf, np.inf, -np.inf, -np.inf))


def _counts(progress) -> tuple[int, int]:
    line = next(t for t in progress.infos if t.startswith("Objects written as their blocks finished"))
    streamed, settled, at_end = (int(part.rsplit(" ", 1)[1]) for part in line.split(";"))
    return streamed, settled + at_end


def test_squares_cross_block_seams():
    crossing = [s for s in SQUARES if (s[0] // 128 != (s[0] + s[2] - 1) // 128) or (s[1] // 128 != (s[1] + s[2] - 1) // 128)]
    assert len(crossing) >= 5


def test_streamed_objects_are_those_of_one_merge_at_the_end(scene, monkeypatch):
    raster, md = scene
    progress = RecordingProgress()
    streamed = detect_objects(str(raster), md, ARGS, progress=progress)
    assert streamed.blocks == 9
    n_streamed, n_held = _counts(progress)
    assert n_streamed > 0 and n_held > 0 and n_streamed + n_held == len(streamed.objects)
    want = sorted((float(x1), float(y1), float(x2), float(y2), c) for x1, y1, x2, y2, c, _ in
                  expected_boxes(W, H, SQUARES))
    assert _boxes(streamed.objects) == want  # every square once, those cut by block seams united
    _merged_at_the_end(monkeypatch)
    progress = RecordingProgress()
    at_end = detect_objects(str(raster), md, ARGS, progress=progress)
    assert _counts(progress)[0] == 0
    assert _key(streamed.objects) == _key(at_end.objects)
    assert (streamed.before_merge, streamed.after_merge) == (at_end.before_merge, at_end.after_merge)
    assert streamed.per_class == at_end.per_class


def test_a_child_process_gives_the_same_objects_and_its_file_goes(scene, tmp_path, monkeypatch):
    raster, md = scene
    here = detect_objects(str(raster), md, ARGS)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the child's temporary folder is made
    there = run_in_child("detect_objects", (str(raster), md, ARGS))
    folder = os.path.dirname(there.objects.path)
    assert os.path.dirname(folder) == str(tmp_path) and os.path.basename(folder).startswith("dltools-run-")
    assert _key(there.objects) == _key(here.objects)
    there.objects.discard()
    here.objects.discard()
    assert not os.path.exists(there.objects.path) and not os.path.exists(here.objects.path)
    assert os.listdir(tmp_path) == []  # the child's folder went with its last file


def test_a_cancelled_child_run_leaves_no_temporary_file(scene, tmp_path, monkeypatch):
    raster, md = scene
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(CancelledError):
        run_in_child("detect_objects", (str(raster), md, ARGS), {"progress": RecordingProgress(cancel_after=3)})
    assert os.listdir(tmp_path) == []


def test_dask_gives_the_same_objects(scene):
    pytest.importorskip("distributed")
    raster, md = scene
    here = detect_objects(str(raster), md, ARGS)
    on_dask = detect_objects(str(raster), md, ARGS, scheduler="local:2")
    assert _key(on_dask.objects) == _key(here.objects)


def test_nms_holds_every_object_and_gives_the_same_result(scene, monkeypatch):
    raster, md = scene
    progress = RecordingProgress()
    with_nms = detect_objects(str(raster), md, ARGS, run_nms=True, max_overlap_ratio=0.0, progress=progress)
    assert not any(t.startswith("Objects written as their blocks") for t in progress.infos)
    _merged_at_the_end(monkeypatch)
    assert _key(detect_objects(str(raster), md, ARGS, run_nms=True, max_overlap_ratio=0.0).objects) == \
        _key(with_nms.objects)


def test_held_objects_are_settled_once_the_blocks_beside_them_are_done(scene, monkeypatch):
    """Settling from the first held object on (a run does it from 50,000, each time the held objects double):
    objects near a seam between two finished blocks are written before the end, still the same objects."""
    raster, md = scene
    here = detect_objects(str(raster), md, ARGS)
    monkeypatch.setattr(stream, "SETTLE_MIN", 0)
    progress = RecordingProgress()
    settled = detect_objects(str(raster), md, ARGS, progress=progress)
    line = next(t for t in progress.infos if t.startswith("Objects written as their blocks finished"))
    streamed, early, at_end = (int(part.rsplit(" ", 1)[1]) for part in line.split(";"))
    assert streamed > 0 and early > 0 and streamed + early + at_end == len(settled.objects)
    assert _key(settled.objects) == _key(here.objects)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects runs its model in a child process, as the raster tools do: through processing.run a model
that crashes its runtime, never finishes or takes gigabytes ends the run with a clear message and this QGIS
process classifies the next features; the rows are the ones the in-process run writes."""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import evil_torchscript
import hostile_onnx
import pytest
from child_settings import child_defaults, setting  # noqa: F401 - the autouse fixture
from osgeo import ogr
from qgis.core import NULL, QgsProcessingException, QgsVectorLayer
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))
from co_models import (  # noqa: E402
    grid_raster,
    mean_emd,
    wkt_line,
    wkt_point,
    wkt_polygon,
    wkt_rect,
    write_object_emd,
)
from test_classify_objects import write_layer  # noqa: E402

ALG = "dltools:classifyobjects"
FEATURES = [wkt_point(20.3, 30.7), wkt_line((10.2, 5.2), (20.8, 9.6)), wkt_rect(10, 20, 20, 30), None,
            wkt_polygon((10, 10), (20, 10), (10, 20)), wkt_polygon((0, 0), (8, 8), (8, 0), (0, 8)),
            wkt_point(1.5, 62.5), wkt_point(70.0, 10.0)]


@pytest.fixture
def grid(tmp_path) -> Path:
    return grid_raster(tmp_path / "grid.tif")


@pytest.fixture
def features(tmp_path) -> Path:
    return write_layer(tmp_path / "in.gpkg", FEATURES, extra_fields=(("note", ogr.OFTString),),
                       attrs=[{"note": f"n{i}"} for i in range(len(FEATURES))])


def two_class_emd(model: Path, framework: str = "ONNX") -> Path:
    """Two bands in, one class per band out (the hostile files' classifier form)."""
    return write_object_emd(model.with_suffix(".emd"), model.name, tile=16, bands=[0, 1],
                            classes=[(0, "a"), (1, "b")], framework=framework)


def run(context, params: dict, out: Path, feedback=None) -> QgsVectorLayer:  # noqa: ANN001
    import processing

    processing.run(ALG, {**params, "OUTPUT": str(out)}, context=context, feedback=feedback or RecordingFeedback())
    layer = QgsVectorLayer(str(out), "out", "ogr")
    assert layer.isValid()
    return layer


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("dltools-objects-*")}


def refused(context, params: dict, out: Path, feedback=None) -> str:  # noqa: ANN001
    before = leftovers()
    with pytest.raises(QgsProcessingException) as info:
        run(context, params, out, feedback)
    assert not out.exists() and not [p for p in out.parent.iterdir() if "dltools-" in p.name]
    assert leftovers() <= before  # the feature and rows files went with the run
    return str(info.value)


def table(layer: QgsVectorLayer) -> list[tuple]:
    names = [f.name() for f in layer.fields()]
    return [(tuple(None if f[n] == NULL else f[n] for n in names), f.geometry().asWkt(6)) for f in layer.getFeatures()]


def good_run(context, tmp_path: Path, grid: Path, features: Path, name: str = "good.gpkg") -> list[tuple]:
    """The mean model after a bad one: the same QGIS classifies every feature as the model computes."""
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    layer = run(context, {"INPUT": str(grid), "FEATURES": str(features), "ARGUMENTS": "batch_size 3",
                          "MODEL": str(mean_emd(folder, band=0, tile=7))}, tmp_path / name)
    labels = [f["ClassLabel"] for f in layer.getFeatures()]
    assert labels[:3] == ["m21", "m16", "m16"] and labels[3] == NULL and labels[-1] == NULL
    return table(layer)


def test_the_child_writes_the_rows_the_in_process_run_writes(context, tmp_path, grid, features):
    child = good_run(context, tmp_path, grid, features, "child.gpkg")
    setting("DLTOOLS_RUN_IN_CHILD", False)
    assert good_run(context, tmp_path, grid, features, "here.gpkg") == child
    assert [row[0][3] for row in child] == [f"n{i}" for i in range(len(FEATURES))]  # attributes joined back
    folder = tmp_path / "models"
    images = {}
    for where in ("here", "child"):  # images as objects, each image of a VRT separately
        setting("DLTOOLS_RUN_IN_CHILD", where == "child")
        images[where] = table(run(context, {"INPUT": str(grid), "MODEL": str(mean_emd(folder, band=0, tile=7)),
                                            "PROCESSING_MODE": 1}, tmp_path / f"images_{where}.gpkg"))
    assert images["here"] == images["child"] and images["child"][0][0][1:4] == (str(grid), "m33", 66)


def test_a_runtime_crash_ends_the_run_clearly_and_qgis_runs_the_next_model(context, tmp_path, grid, features):
    evil_torchscript.torchscript_blank_lines(tmp_path / "crash.pt")  # torch.jit.load dies of SIGSEGV
    message = refused(context, {"INPUT": str(grid), "FEATURES": str(features), "ALLOW_CUSTOM_CODE": True,
                                "MODEL": str(two_class_emd(tmp_path / "crash.pt", "PyTorch"))}, tmp_path / "out.gpkg")
    assert message.startswith("The model's runtime crashed (SIGSEGV) while running the model; QGIS is unaffected "
                              "and no output was written.")
    good_run(context, tmp_path, grid, features)


def test_cancel_stops_a_model_that_never_ends_within_2_s(context, tmp_path, grid, features):
    feedback = RecordingFeedback()
    threading.Timer(1.5, feedback.cancel).start()
    started = time.monotonic()
    loop = hostile_onnx.endless_loop(tmp_path / "loop.onnx", classifier=True)
    message = refused(context, {"INPUT": str(grid), "FEATURES": str(features), "MODEL": str(two_class_emd(loop))},
                      tmp_path / "out.gpkg", feedback)
    assert "ancel" in message
    assert time.monotonic() - started < 1.5 + 2.0
    good_run(context, tmp_path, grid, features)


def test_memory_watchdog_stops_the_child(context, tmp_path, grid, features):
    from dltools.core.runner.parent import available_memory

    setting("DLTOOLS_MEMORY_PERCENT", 100.0 * 2**30 / available_memory())  # about 1 GiB
    hog = hostile_onnx.memory_hog_from_input(tmp_path / "hog.onnx", gib=3.0, classifier=True)
    message = refused(context, {"INPUT": str(grid), "FEATURES": str(features), "MODEL": str(two_class_emd(hog))},
                      tmp_path / "out.gpkg")
    assert message.startswith("The run was stopped: it used ") and "GiB of memory, more than its limit" in message
    good_run(context, tmp_path, grid, features)


def test_time_limit_per_model_call(context, tmp_path, grid):
    setting("DLTOOLS_CALL_SECONDS", 1)
    loop = hostile_onnx.endless_loop(tmp_path / "loop.onnx", classifier=True)
    message = refused(context, {"INPUT": str(grid), "MODEL": str(two_class_emd(loop))}, tmp_path / "out.gpkg")
    assert message.startswith("The run was stopped: one call of the model took more than 1 s")

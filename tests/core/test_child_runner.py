# SPDX-License-Identifier: GPL-2.0-or-later
"""A run in a child process (core/runner): the same output as in-process, and a model that crashes, loops for
ever or takes all the memory ends the run with a clear message while this process lives on."""

from __future__ import annotations

import re
import time
from pathlib import Path

import hostile_onnx
import numpy as np
import pytest
from builders import RecordingProgress, conv_module, export_onnx, read_raster, write_emd, write_raster
from child_runs import CLASSES, CancelAfter, emd_for, leftovers, small_raster
from dltools.core.errors import BackendError, CancelledError
from dltools.core.model.loader import load_model_definition
from dltools.core.runner.parent import ChildLimits, run_in_child
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from dltools.core.trust import CodeTrust


@pytest.fixture
def raster(tmp_path) -> Path:
    return small_raster(tmp_path / "in.tif")


def test_a_run_in_a_child_writes_what_an_in_process_run_writes(tmp_path, raster):
    model = export_onnx(conv_module(2, 2, 3), tmp_path / "conv.onnx", 2, 16)
    md = load_model_definition(str(emd_for(tmp_path, model)))
    classify_pixels(str(raster), md, str(tmp_path / "here.tif"), "padding 2", progress=RecordingProgress())
    progress = RecordingProgress()
    result = run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "there.tif"), "padding 2"),
                          {"progress": progress}, progress)
    assert np.array_equal(read_raster(tmp_path / "there.tif"), read_raster(tmp_path / "here.tif"))
    assert result.output == str(tmp_path / "there.tif") and result.tiles > 0
    assert progress.percents and progress.percents[-1] == 100
    assert any(line.startswith("Model runs with onnxruntime on cpu") for line in progress.infos)
    assert leftovers(tmp_path) == []


def test_the_child_reports_progress_once_per_whole_percent(tmp_path):
    """Each report holds the child's model thread for a round trip to this process: 900 tiles give at most one
    report per whole percent (in-process: one per batch), increasing, ending at 100; a cancel made on seeing the
    first report stops the run there."""
    image = np.random.default_rng(6).integers(0, 50, size=(2, 240, 240)).astype(np.uint8)
    raster = write_raster(tmp_path / "big.tif", image)
    model = export_onnx(conv_module(2, 2, 1), tmp_path / "conv.onnx", 2, 8)
    md = load_model_definition(str(emd_for(tmp_path, model, tile=8)))
    here = RecordingProgress()
    classify_pixels(str(raster), md, str(tmp_path / "here.tif"), "padding 0;batch_size 1", progress=here)
    assert len(here.percents) == 900
    progress = RecordingProgress()
    run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "there.tif"), "padding 0;batch_size 1"),
                 {"progress": progress}, progress)
    assert np.array_equal(read_raster(tmp_path / "there.tif"), read_raster(tmp_path / "here.tif"))
    steps = [int(p) for p in progress.percents]
    assert 50 <= len(steps) <= 101 and steps == sorted(set(steps)) and progress.percents[-1] == 100
    stop = RecordingProgress(cancel_after=1)
    with pytest.raises(CancelledError):
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "stopped.tif"), "padding 0;batch_size 1"),
                     {"progress": stop}, stop)
    assert stop.percents == [stop.percents[0]] and stop.percents[0] < 1
    assert not (tmp_path / "stopped.tif").exists()


def test_a_run_leaves_no_pipe_of_the_child_open(tmp_path, raster):
    """Every pipe to the child is closed when the run ends, good or bad: no 'unclosed file' ResourceWarning."""
    import gc
    import warnings

    md = load_model_definition(str(emd_for(tmp_path, export_onnx(conv_module(2, 2, 3), tmp_path / "m.onnx", 2, 16))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")))
        with pytest.raises(Exception, match="batch_size"):
            run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "bad.tif"), "batch_size zero"))
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_engine_errors_come_back_as_they_were(tmp_path, raster):
    model = export_onnx(conv_module(2, 2, 3), tmp_path / "conv.onnx", 2, 16)
    md = load_model_definition(str(emd_for(tmp_path, model)))
    with pytest.raises(Exception) as info:
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "out.tif"), "batch_size zero"))
    assert type(info.value).__name__ == "ArgumentError" and "batch_size" in str(info.value)


def test_a_crash_of_the_runtime_is_a_clear_error_and_the_next_run_works(tmp_path, raster):
    import evil_torchscript

    crash = evil_torchscript.torchscript_blank_lines(tmp_path / "crash.pt")  # torch.jit.load dies of SIGSEGV
    md = load_model_definition(str(write_emd(tmp_path / "crash.emd", "crash.pt", framework="PyTorch", tile=16,
                                             bands=(0, 1), classes=CLASSES)), trust=CodeTrust.all())
    assert md.model_file == crash
    with pytest.raises(BackendError) as info:
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")))
    assert str(info.value).startswith("The model's runtime crashed (SIGSEGV) while running the model; QGIS is "
                                      "unaffected and no output was written.")
    assert not (tmp_path / "out.tif").exists() and leftovers(tmp_path) == []
    test_a_run_in_a_child_writes_what_an_in_process_run_writes(tmp_path, raster)  # and the next run works


def test_cancel_stops_a_model_that_never_ends_within_2_s(tmp_path, raster):
    md = load_model_definition(str(emd_for(tmp_path, hostile_onnx.endless_loop(tmp_path / "loop.onnx"))))
    progress = CancelAfter(1.0)
    with pytest.raises(CancelledError):
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")), {"progress": progress},
                     progress)
    assert time.monotonic() - progress.at < 2.0
    assert not (tmp_path / "out.tif").exists() and leftovers(tmp_path) == []


def test_in_process_onnx_cancel_terminates_the_call(tmp_path, raster):
    md = load_model_definition(str(emd_for(tmp_path, hostile_onnx.endless_loop(tmp_path / "loop.onnx"))))
    progress = CancelAfter(1.0)
    with pytest.raises(CancelledError):
        classify_pixels(str(raster), md, str(tmp_path / "out.tif"), progress=progress)
    assert time.monotonic() - progress.at < 2.0
    assert not (tmp_path / "out.tif").exists() and leftovers(tmp_path) == []


def test_time_limit_per_model_call(tmp_path, raster):
    md = load_model_definition(str(emd_for(tmp_path, hostile_onnx.endless_loop(tmp_path / "loop.onnx"))))
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")),
                     limits=ChildLimits(call_seconds=1.0))
    assert str(info.value).startswith("The run was stopped: one call of the model took more than 1 s, the time "
                                      "limit per model call")
    assert time.monotonic() - started < 30 and leftovers(tmp_path) == []


def test_memory_watchdog_stops_a_small_file_that_takes_gigabytes(tmp_path, raster):
    from dltools.core.runner.parent import available_memory

    hog = hostile_onnx.memory_hog_from_input(tmp_path / "hog.onnx", gib=3.0)  # a size no check of the file knows
    assert hog.stat().st_size < 400
    md = load_model_definition(str(emd_for(tmp_path, hog)))
    share = 1.0 * 2**30 / available_memory()  # a budget of 1 GiB
    with pytest.raises(BackendError) as info:
        run_in_child("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")),
                     limits=ChildLimits(memory_share=share))
    assert str(info.value).startswith("The run was stopped: it used ")
    # about 1 GiB: the child's budget is a share of the memory available when it starts, which moves a little
    limit = re.search(r"more than its limit of (\d\.\d) GiB", str(info.value))
    assert limit and 0.8 <= float(limit.group(1)) <= 1.2 and "lower batch_size" in str(info.value), str(info.value)
    assert not (tmp_path / "out.tif").exists() and leftovers(tmp_path) == []

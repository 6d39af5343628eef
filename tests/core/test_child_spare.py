# SPDX-License-Identifier: GPL-2.0-or-later
"""The child process kept ready for the next run (core/runner/spare.py): a run takes it and gets the same output
as a run in a process started for it, with the environment of the run, the watchdogs and cancel as before; a
spare that cannot serve is not used; none outlives its parent or the plugin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hostile_onnx
import numpy as np
import pytest
from builders import conv_module, export_onnx, read_raster
from child_runs import CancelAfter, bound_gib, emd_for, leftovers, process_ended, small_raster
from dltools.core.errors import BackendError, CancelledError
from dltools.core.memory import available_memory
from dltools.core.model.loader import load_model_definition
from dltools.core.runner import spare
from dltools.core.runner.parent import ChildLimits, ChildRun
from dltools.core.tools.classify_pixels.pipeline import classify_pixels


@pytest.fixture
def raster(tmp_path) -> Path:
    return small_raster(tmp_path / "in.tif")


@pytest.fixture(autouse=True)
def no_spare_before_or_after():
    spare.discard()
    yield
    spare.discard()


def _model(tmp_path: Path) -> Path:
    return emd_for(tmp_path, export_onnx(conv_module(2, 2, 3, seed=3), tmp_path / "m.onnx", 2, 16))


def _run(name: str, args: tuple, kwargs: dict | None = None, progress=None, limits=None) -> ChildRun:  # noqa: ANN001
    run = ChildRun(name, args, kwargs or {}, progress, limits or ChildLimits(), use_spare=True)
    run.answer = run.run()
    return run


def test_a_run_takes_the_ready_process_and_keeps_the_next_one(tmp_path, raster):
    md = load_model_definition(str(_model(tmp_path)))
    spare.keep()
    ready = spare.held_pid()
    assert ready is not None and spare.wait_warm()
    run = _run("classify_pixels", (str(raster), md, str(tmp_path / "child.tif")))
    assert run.proc.pid == ready  # the job ran in the process started before it
    classify_pixels(str(raster), md, str(tmp_path / "here.tif"))
    assert np.array_equal(read_raster(tmp_path / "child.tif"), read_raster(tmp_path / "here.tif"))
    assert process_ended(ready)  # one job per process
    following = spare.held_pid()
    assert following is not None and following != ready and not process_ended(following, 0.2)
    second = _run("classify_pixels", (str(raster), md, str(tmp_path / "again.tif")))
    assert second.proc.pid == following
    assert np.array_equal(read_raster(tmp_path / "again.tif"), read_raster(tmp_path / "here.tif"))


def test_a_run_without_a_spare_starts_one_for_itself_and_keeps_one_after(tmp_path, raster):
    md = load_model_definition(str(_model(tmp_path)))
    assert spare.held_pid() is None
    run = _run("classify_pixels", (str(raster), md, str(tmp_path / "child.tif")))
    assert run.answer.tiles > 0 and spare.held_pid() not in (None, run.proc.pid)


def test_the_job_runs_with_the_memory_budget_of_its_run_not_of_its_spare(tmp_path, raster):
    """The spare started with no budget; the run's budget (about 1 GiB, a share of what is available when the run
    starts) reaches it with the job: the 3 GiB constant is refused by the child's check of the file, naming that
    bound. Under the spare's own environment the check would have used no budget and the watchdog would have
    stopped the run instead."""
    spare.keep()
    assert spare.wait_warm()
    hog = hostile_onnx.memory_hog(tmp_path / "hog.onnx", gib=3.0)
    md = load_model_definition(str(emd_for(tmp_path, hog)))
    os.environ["DLTOOLS_SPARE_TEST"] = "run"  # set after the spare started: reaches the job all the same
    try:
        with pytest.raises(BackendError) as info:
            _run("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")),
                 limits=ChildLimits(memory_share=2**30 / available_memory()))
    finally:
        del os.environ["DLTOOLS_SPARE_TEST"]
    assert 0.8 <= (bound_gib(str(info.value)) or 0.0) <= 1.2, str(info.value)


def test_the_child_takes_the_environment_handed_over_with_the_job(monkeypatch):
    from dltools.core.runner.child import _take_environment

    monkeypatch.setenv("DLTOOLS_SPARE_OLD", "spare")
    before = dict(os.environ)
    try:
        _take_environment({**{k: v for k, v in before.items() if k != "DLTOOLS_SPARE_OLD"}, "DLTOOLS_SPARE_NEW": "x"})
        assert "DLTOOLS_SPARE_OLD" not in os.environ and os.environ["DLTOOLS_SPARE_NEW"] == "x"
    finally:
        os.environ.clear()
        os.environ.update(before)


def test_a_spare_that_ended_is_not_used_and_none_is_started_again(tmp_path, raster):
    md = load_model_definition(str(_model(tmp_path)))
    spare.keep()
    dead = spare.held_pid()
    os.kill(dead, signal.SIGKILL)  # as a runtime that crashes on import would end it
    assert process_ended(dead)
    run = _run("classify_pixels", (str(raster), md, str(tmp_path / "child.tif")))
    assert run.proc.pid != dead and (tmp_path / "child.tif").exists()
    assert spare.held_pid() is None  # given up for the session (until discard)


def test_a_spare_started_under_another_import_path_is_not_used(tmp_path, raster, monkeypatch):
    md = load_model_definition(str(_model(tmp_path)))
    spare.keep()
    old = spare.held_pid()
    monkeypatch.syspath_prepend(str(tmp_path))
    run = _run("classify_pixels", (str(raster), md, str(tmp_path / "child.tif")))
    assert run.proc.pid != old and process_ended(old)


def test_cancel_and_the_call_limit_stop_a_spare_as_any_child(tmp_path, raster):
    md = load_model_definition(str(emd_for(tmp_path, hostile_onnx.endless_loop(tmp_path / "loop.onnx"))))
    spare.keep()
    progress = CancelAfter(1.0)
    with pytest.raises(CancelledError):
        _run("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")), {"progress": progress}, progress)
    assert time.monotonic() - progress.at < 2.0
    with pytest.raises(BackendError, match="one call of the model took more than 1 s"):
        _run("classify_pixels", (str(raster), md, str(tmp_path / "out.tif")), limits=ChildLimits(call_seconds=1.0))
    assert not (tmp_path / "out.tif").exists() and leftovers(tmp_path) == []


def test_discard_ends_the_spare_and_removes_its_scratch_folder():
    spare.keep()
    pid, scratch = spare.held_pid(), spare._held.scratch
    assert os.path.isdir(scratch)
    spare.discard()
    assert process_ended(pid) and not os.path.exists(scratch) and spare.held_pid() is None


def test_a_spare_ends_by_itself_when_its_parent_dies():
    """A parent that dies without discarding (QGIS crashes): the spare reads the end of its stdin and exits."""
    script = ("import os, sys; sys.path[:0] = %r; from dltools.core.runner import spare; spare.keep(); "
              "print(spare.held_pid(), spare._held.scratch, flush=True); os._exit(0)") % [p for p in sys.path if p]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    orphan, scratch = out.stdout.split()[-2:]
    assert process_ended(int(orphan), 30.0)
    assert not os.path.exists(scratch)  # it removed its own scratch folder

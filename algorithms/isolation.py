# SPDX-License-Identifier: GPL-2.0-or-later
"""Where a tool's engine runs: in a child Python process (the default) or in QGIS's own.

A model file can crash its runtime, loop for ever or take all the memory; in a child process that ends the run
with a message and QGIS, with the user's unsaved work, lives on (``core/runner``). The provider settings
(Processing > Options > Providers > Deep Learning Tools) choose in-process instead, bound the child's memory
(a share of what is available when it starts) and the time of one model call, and keep the next run's child
ready (started after each run; one job per process all the same). Dask runs stay where they are:
their work already runs in worker processes.
"""

from __future__ import annotations

import os
from typing import Any

from qgis.core import QgsSettings

from ..core.flags import parse_bool
from ..core.progress import Progress
from ..core.runner.jobs import job_function
from ..core.runner.parent import ChildLimits, run_in_child
from .running import run_engine

RUN_IN_CHILD_SETTING = "DLTOOLS_RUN_IN_CHILD"
MEMORY_PERCENT_SETTING = "DLTOOLS_MEMORY_PERCENT"
CALL_SECONDS_SETTING = "DLTOOLS_CALL_SECONDS"
KEEP_READY_SETTING = "DLTOOLS_KEEP_PROCESS_READY"
#: the settings as (name, description, default), registered by the provider
SETTINGS = (
    (RUN_IN_CHILD_SETTING, "Run models in a separate process (QGIS lives on if a model crashes, hangs or takes "
                           "all the memory)", True),
    (MEMORY_PERCENT_SETTING, "Memory a run may use, in % of the memory available when it starts (separate "
                             "process only; 0 = no limit)", 80),
    (CALL_SECONDS_SETTING, "Time limit for one call of the model, in seconds (separate process only; 0 = none)", 0),
    (KEEP_READY_SETTING, "After a run, start the next run's separate process at once, so the next run starts "
                         "sooner (it waits with about 100 MB; each run still gets a new process)", True),
)
#: How long the dialog and Describe Model may take to read a model that must be opened to be described.
PROBE_SECONDS = 60.0


def _value(name: str, default: Any) -> Any:
    return QgsSettings().value(f"Processing/Configuration/{name}", default)


def _switch(name: str) -> bool:
    """An on/off setting that is on unless it says off (core.flags reads the words)."""
    return parse_bool(_value(name, True)) is not False


def _number(name: str, default: float) -> float:
    try:
        value = float(_value(name, default))
    except (TypeError, ValueError):
        return default
    return value if value >= 0 else default


def runs_in_child() -> bool:
    """The provider setting (default: yes); DLTOOLS_IN_PROCESS=1 in the environment says no (scripts, debugging)."""
    if os.environ.get("DLTOOLS_IN_PROCESS", "").strip() in ("1", "true", "yes"):
        return False
    return _switch(RUN_IN_CHILD_SETTING)


def keeps_ready() -> bool:
    """The provider setting (default: yes): keep a child process ready for the next run (core/runner/spare.py)."""
    return _switch(KEEP_READY_SETTING)


def child_limits(total_seconds: float = 0.0) -> ChildLimits:
    """The watchdogs' limits from the provider settings."""
    return ChildLimits(memory_share=min(_number(MEMORY_PERCENT_SETTING, 80.0), 100.0) / 100.0,
                       call_seconds=_number(CALL_SECONDS_SETTING, 0.0), total_seconds=total_seconds)


def run_tool(job: str, progress: Progress | None, *args: Any, **kwargs: Any) -> Any:
    """Run the engine function of ``job`` (core.runner.jobs) with these arguments, in a child process unless the
    settings say in-process or the run goes to a Dask scheduler; engine errors become QgsProcessingException."""
    if not runs_in_child() or kwargs.get("scheduler"):
        return run_engine(job_function(job), *args, **kwargs)
    return run_engine(run_in_child, job, args, kwargs, progress, child_limits(), keeps_ready())


def read_model_in_child(job: str, progress: Progress | None, *args: Any, **kwargs: Any) -> Any:
    """As :func:`run_tool`, with the probes' time limit (PROBE_SECONDS): Describe Model reads a model that may have
    to be run to be described, and a model that never returns must not hold the run for ever."""
    if not runs_in_child():
        return run_engine(job_function(job), *args, **kwargs)
    return run_engine(run_in_child, job, args, kwargs, progress, child_limits(PROBE_SECONDS), keeps_ready())


def probe_in_child(job: str, *args: Any, **kwargs: Any) -> Any:
    """A probe for the dialog or Describe Model (reading a model that must be opened): in a child process with a
    time limit, so a hostile file cannot freeze QGIS; in-process when the settings say so. Engine errors raise as
    they are (the callers catch them)."""
    if not runs_in_child():
        return job_function(job)(*args, **kwargs)
    return run_in_child(job, args, kwargs, None, child_limits(PROBE_SECONDS), keeps_ready())

# SPDX-License-Identifier: GPL-2.0-or-later
"""The child process's side: run one job and report on the message pipe.

Started by :mod:`.launch` as ``python -c <bootstrap>``: the bootstrap puts the parent's ``sys.path`` in place
and calls :func:`main`, which reads the job from stdin, takes the environment that comes with it, runs the named
engine function with a progress object that writes to the message pipe, and answers with the result or the
error. Any further byte on stdin is the parent asking to cancel. A spare (:mod:`.spare`) imports the engine's usual
modules first, while it waits; one whose parent goes away before giving it a job ends quietly.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Any, BinaryIO

from ..backends.base import observe_model_calls
from ..errors import DLToolsError, OutOfMemoryError, memory_advice
from ..safe_output import SCRATCH_PREFIX, announce_temporaries
from .jobs import job_function
from .protocol import WARM_ENV, ProgressSlot, receive, send


class ChildProgress:
    """The engine's Progress in the child: everything goes to the parent; cancel comes from the parent."""

    def __init__(self, pipe: BinaryIO, lock: threading.Lock) -> None:
        self.pipe = pipe
        self.lock = lock
        self.cancelled = threading.Event()
        self.answered = threading.Event()
        self.reported = -1  # the whole percent last reported

    def _send(self, kind: str, payload: Any) -> None:
        send(self.pipe, (kind, payload), self.lock)

    def set_progress(self, percent: float) -> None:
        """Report, then wait (briefly) for the parent's answer: a cancel made on seeing this progress is seen by
        the engine's next check, as in-process.  At most once per whole percent: each report stops the engine's
        model thread for a round trip to the parent (``make bench`` io-8192: 1,849 reports, one per tile, held the
        model thread 0.4-1.4 s on a loaded two-core machine); a cancel made at any other time still arrives at once."""
        step = int(percent)
        if step == self.reported and percent < 100:
            return
        self.reported = step
        self.answered.clear()
        self._send("progress", float(percent))
        if not self.cancelled.is_set():
            self.answered.wait(5.0)

    def is_canceled(self) -> bool:
        return self.cancelled.is_set()

    def info(self, message: str) -> None:
        self._send("info", str(message))

    def warning(self, message: str) -> None:
        self._send("warning", str(message))

    def debug(self, message: str) -> None:
        self._send("debug", str(message))


def _watch_stdin(stdin: BinaryIO, progress: ChildProgress) -> None:
    """After the job, the parent answers each progress report: ``.`` go on, ``c`` cancel (so does closing)."""
    while True:
        byte = stdin.read(1)
        if byte != b".":
            progress.cancelled.set()
            progress.answered.set()
            return
        progress.answered.set()


def _error_message(exc: BaseException) -> tuple[str, Any]:
    """The error as it can cross: the exception itself when it pickles and is the engine's, else its text."""
    import pickle

    if isinstance(exc, MemoryError):  # its traceback stays here: the advice is made from it now
        return ("error", OutOfMemoryError(memory_advice(exc)))
    if isinstance(exc, (DLToolsError, OSError)):
        try:
            pickle.dumps(exc)
            return ("error", exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle crosses as text
            pass
    text = f"{type(exc).__name__}: {exc}"
    return ("failure", text + "\n" + "".join(traceback.format_exception(exc))[-4000:])


def _warm_up() -> None:
    """A spare's wait put to use: import what most jobs import (numpy, GDAL, ONNX Runtime where installed and the
    tools), so the job starts at once. Nothing of a model is read here; torch stays unloaded (its import costs
    hundreds of MB that a run of an ONNX model never needs)."""
    import importlib

    from .jobs import JOBS

    for module in ("numpy", "osgeo.gdal", "onnxruntime"):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001, S112 - a missing runtime is said by the job that needs it
            continue
    for load in JOBS.values():
        try:
            load()
        except Exception:  # noqa: BLE001, S112 - as above: the job that needs it says what is wrong
            continue


def _remove_own_scratch() -> None:
    """The empty scratch folder the parent made for this process (its TMPDIR), when nothing else will remove it."""
    import shutil

    folder = os.environ.get("TMPDIR", "")
    if os.path.basename(folder).startswith(SCRATCH_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def _take_environment(env: dict[str, str]) -> None:
    """Run with the parent's environment of the moment it handed over the job, not of the moment this process
    started (a spare may have waited while settings changed)."""
    import tempfile

    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    os.environ.update(env)
    tempfile.tempdir = None  # the scratch folder of TMPDIR, should anything have asked before


def main(stdin: BinaryIO | None = None, pipe_fd: int | None = None) -> int:
    """Run the job read from ``stdin`` and report on the pipe ``pipe_fd``; the exit status is 0 when a result or
    an error was sent."""
    stdin = stdin or sys.stdin.buffer
    pipe = os.fdopen(pipe_fd if pipe_fd is not None else int(os.environ["DLTOOLS_RUNNER_FD"]), "wb")
    lock = threading.Lock()
    progress = ChildProgress(pipe, lock)
    try:
        if os.environ.get(WARM_ENV):
            _warm_up()
            send(pipe, ("warm", None), lock)
        name, args, kwargs, env = receive(stdin)
    except (EOFError, OSError):  # a spare whose parent closed (or left) without a job: its scratch goes with it
        _remove_own_scratch()
        return 0
    _take_environment(env)
    threading.Thread(target=_watch_stdin, args=(stdin, progress), daemon=True).start()
    observe_model_calls(lambda started: send(pipe, ("call", started), lock))
    announce_temporaries(lambda tmp, stem: send(pipe, ("temporary", (tmp, stem)), lock))
    args = [progress if isinstance(a, ProgressSlot) else a for a in args]
    kwargs = {k: progress if isinstance(v, ProgressSlot) else v for k, v in kwargs.items()}
    try:
        function = job_function(name)
        send(pipe, ("ready", None), lock)  # started: the interpreter and the tool's modules are loaded
        result = function(*args, **kwargs)
        message: tuple[str, Any] = ("result", result)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as a message
        message = _error_message(exc)
    try:
        send(pipe, message, lock)
    except Exception as exc:  # noqa: BLE001 - a result that does not pickle is a bug, said as such
        send(pipe, ("failure", f"the result could not be sent back: {type(exc).__name__}: {exc}"), lock)
    pipe.close()
    return 0

# SPDX-License-Identifier: GPL-2.0-or-later
"""The algorithm's side: start a child Python, hand it one job, relay what it says, and watch it.

The child is the Python QGIS runs (found as for the Dask ``local`` workers: ``sys.executable`` when it is a
Python, else the interpreter QGIS embeds), with the parent's ``sys.path`` (:mod:`.launch`), started for the run or
kept ready since the last one (:mod:`.spare`). The parent never blocks on the
child: a reader thread takes its messages, and the calling thread checks, ten times a second, cancel (ask, then
kill after :data:`CANCEL_GRACE` seconds), memory (the child's resident memory against a share of what was
available when it started) and the time of the model call in progress. A child that dies or is killed leaves
no temporary output: it announced each one, and the parent removes them.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, CancelledError, DLToolsError
from ..memory import available_memory
from ..progress import NullProgress, Progress
from ..safe_output import remove_temporaries, tidy_scratch
from . import spare
from .launch import Launched, job_environment, launch
from .protocol import ProgressSlot, send

#: Seconds a cancelled child gets to stop by itself before it is killed (the issue's bound is 2 s in all).
CANCEL_GRACE = 1.5
_POLL = 0.1


@dataclass(frozen=True)
class ChildLimits:
    """What the parent allows the child: a share of the memory available at its start (0: no watchdog), seconds
    per model call (0: no limit), seconds for the whole job (0: no limit; the dialog's probes use one)."""

    memory_share: float = 0.8
    call_seconds: float = 0.0
    total_seconds: float = 0.0


@dataclass
class _Watch:
    """What the parent learned from the child so far."""

    temporaries: list[tuple[str, str]] = field(default_factory=list)
    call_started: float | None = None
    #: seconds from the start of the run until the child had loaded the tool (the interpreter and imports, unless
    #: a spare had made them before), once it said so
    startup_seconds: float | None = None
    outcome: tuple[str, Any] | None = None
    peak_bytes: int = 0


def resident_memory(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ChildRun:
    """One job in one child process, relayed to ``progress`` and watched against ``limits``."""

    def __init__(self, name: str, args: tuple, kwargs: dict, progress: Progress | None, limits: ChildLimits,
                 use_spare: bool = False) -> None:
        self.use_spare = use_spare  # take the spare process (:mod:`.spare`) if one is ready, and keep the next one
        self.progress = progress or NullProgress()
        self.limits = limits
        self.watch = _Watch()
        self.args = tuple(ProgressSlot() if a is progress and progress is not None else a for a in args)
        self.kwargs = {k: ProgressSlot() if v is progress and progress is not None else v for k, v in kwargs.items()}
        self.name = name

    def run(self) -> Any:
        if self.progress.is_canceled():  # cancelled before it began: no process to start
            raise CancelledError("The run was cancelled.")
        self.started = time.monotonic()
        launched = (spare.take() if self.use_spare else None) or launch()
        try:
            answer = self._run(launched)
        except BaseException:
            shutil.rmtree(launched.scratch, ignore_errors=True)
            raise
        finally:
            if self.use_spare:  # the next run's process starts now that this one is done
                spare.keep()
        tidy_scratch(launched.scratch)  # what stays is the answer's (Detect Objects' objects), removed with it
        return answer

    def _run(self, launched: Launched) -> Any:
        available = available_memory()
        self.budget = int(available * self.limits.memory_share) if available and self.limits.memory_share > 0 \
            else None
        self.launched, self.proc = launched, launched.proc
        try:
            try:
                send(self.proc.stdin, (self.name, self.args, self.kwargs,
                                       job_environment(launched.scratch, self.budget, launched.write_fd)))
            except OSError:  # it died before it could take the job: said as its end, with its last words
                pass
            return self._loop(launched.inbox)
        finally:
            self._stop()

    def _loop(self, inbox: queue.Queue) -> Any:
        started = time.monotonic()
        cancelled_at: float | None = None
        while True:
            try:
                message = inbox.get(timeout=_POLL)
            except queue.Empty:
                message = False
            if message is None:
                return self._ended()
            if message:
                self._take(message)
                if self.watch.outcome is not None:
                    return self._answer()
            now = time.monotonic()
            if cancelled_at is None and self.progress.is_canceled():
                cancelled_at = now
                self._ask_to_cancel()
            if cancelled_at is not None and now - cancelled_at > CANCEL_GRACE:
                self._kill()
                raise CancelledError("The run was cancelled.")
            self._check_limits(now, started)

    def _take(self, message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == "progress":
            self.progress.set_progress(payload)
            self._answer_progress()
        elif kind in ("info", "warning", "debug"):
            getattr(self.progress, kind)(payload)
        elif kind == "warm":  # a spare's imports, made before this run
            pass
        elif kind == "ready":
            self.watch.startup_seconds = time.monotonic() - self.started
        elif kind == "call":
            self.watch.call_started = time.monotonic() if payload else None
        elif kind == "temporary":
            self.watch.temporaries.append(payload)
        elif kind in ("result", "error", "failure"):
            self.watch.outcome = (kind, payload)

    def _check_limits(self, now: float, started: float) -> None:
        limits = self.limits
        if self.budget is not None:
            used = resident_memory(self.proc.pid)
            self.watch.peak_bytes = max(self.watch.peak_bytes, used)
            if used > self.budget:
                self._kill()
                raise BackendError(
                    f"The run was stopped: it used {used / 2**30:.1f} GiB of memory, more than its limit of "
                    f"{self.budget / 2**30:.1f} GiB ({limits.memory_share:.0%} of the memory available when it "
                    "started), and would have made the computer swap. The model or its arguments need too much "
                    "memory: lower batch_size or the tile size, or raise the limit in Processing > Options > "
                    "Providers > Deep Learning Tools")
        call = self.watch.call_started
        if limits.call_seconds > 0 and call is not None and now - call > limits.call_seconds:
            self._kill()
            raise BackendError(f"The run was stopped: one call of the model took more than {limits.call_seconds:g} "
                               "s, the time limit per model call (Processing > Options > Providers > Deep Learning "
                               "Tools). A model that never finishes (an endless loop) ends this way")
        if limits.total_seconds > 0 and now - started > limits.total_seconds:
            self._kill()
            raise BackendError(f"Stopped after {limits.total_seconds:g} s: reading the model took too long (it may "
                               "loop forever); it was not described")

    def _answer_progress(self) -> None:
        """The child waits after each progress report: go on, or (the user cancelled meanwhile) stop."""
        self._write(b"c" if self.progress.is_canceled() else b".")

    def _ask_to_cancel(self) -> None:
        self._write(b"c")

    def _write(self, byte: bytes) -> None:
        try:
            self.proc.stdin.write(byte)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        remove_temporaries(self.watch.temporaries)

    def _stop(self) -> None:
        """The child is done (or failed): make sure it is gone, and nothing it started writing stays. After a
        result its outputs are in place and it only has to exit (20-40 ms to unmap a run's memory): a thread waits
        for that, so the run ends at once."""
        if self.watch.outcome is not None and self.watch.outcome[0] == "result":
            threading.Thread(target=self.launched.end, args=(5.0,), daemon=True).start()
            return
        self.launched.end(5.0)
        remove_temporaries(self.watch.temporaries)

    def _answer(self) -> Any:
        kind, payload = self.watch.outcome
        if kind == "result":
            return payload
        if kind == "error":
            raise payload
        raise DLToolsError(f"The run failed in its separate process: {payload.splitlines()[0]}")

    def _ended(self) -> Any:
        """The child's pipe closed without an answer: it died. Say how, in words."""
        code = self.proc.wait()
        self.launched.drain.join(timeout=1.0)  # its last words, read to the end
        if self.watch.outcome is not None:
            return self._answer()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"crashed ({name})"
        else:
            how = f"ended unexpectedly (exit status {code})"
        tail = _plain(b"".join(self.launched.stderr[-5:]).decode("utf-8", "replace")).strip()
        raise BackendError(
            f"The model's runtime {how} while running the model; QGIS is unaffected and no output was written. "
            "A model file that crashes its runtime may be damaged or hostile: run only models you trust"
            + (f". Last words: {tail[-300:]}" if tail else ""))


def _plain(text: str) -> str:
    """Text without ANSI escape sequences (colours, cursor moves) that a terminal would interpret."""
    import re

    return re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]", "", text)


def run_in_child(name: str, args: tuple = (), kwargs: dict | None = None, progress: Progress | None = None,
                 limits: ChildLimits | None = None, use_spare: bool = False) -> Any:
    """Run job ``name`` (:data:`.jobs.JOBS`) with ``args``/``kwargs`` in a child process and return its result.

    ``progress`` receives the child's progress and log lines, and its cancel is forwarded; where the same object
    stands among the arguments, the child puts its own progress there. Errors the engine raises in the child are
    raised here as they were; a crash, a kill by the watchdogs or a cancel the child ignores become clear errors.
    ``use_spare``: run in the process kept ready (:mod:`.spare`) and keep one ready for the next run."""
    return ChildRun(name, tuple(args), dict(kwargs or {}), progress, limits or ChildLimits(), use_spare).run()

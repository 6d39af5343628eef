# SPDX-License-Identifier: GPL-2.0-or-later
"""The algorithm's side: start a child Python, hand it one job, relay what it says, and watch it.

The child is the Python QGIS runs (found as for the Dask ``local`` workers: ``sys.executable`` when it is a
Python, else the interpreter QGIS embeds), with the parent's ``sys.path``. The parent never blocks on the
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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, CancelledError, DLToolsError
from ..installer.interpreter import RunningPython, locate_python, own_interpreter
from ..memory import BUDGET_ENV, available_memory
from ..progress import NullProgress, Progress
from ..safe_output import SCRATCH_PREFIX, remove_temporaries, tidy_scratch
from .protocol import ProgressSlot, receive, send

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
    #: seconds from starting the child until it had loaded the tool (the interpreter and imports), once it said so
    startup_seconds: float | None = None
    outcome: tuple[str, Any] | None = None
    peak_bytes: int = 0


def python_for_child() -> str:
    """The Python that runs the child: this one if it is a Python, else the interpreter QGIS embeds."""
    running = RunningPython.current()
    if own_interpreter(running):
        return sys.executable
    return str(locate_python(running))


def resident_memory(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_BOOTSTRAP = (
    "import os, sys; sys.path[:0] = [p for p in os.environ['DLTOOLS_RUNNER_PATH'].split(os.pathsep) if p]; "
    "import importlib; child = importlib.import_module(os.environ['DLTOOLS_RUNNER_PACKAGE'] + '.core.runner.child'); "
    "code = child.main(); sys.stdout.flush(); sys.stderr.flush(); os._exit(code)"
)


def _package() -> str:
    """The plugin's top-level package name as this process imported it (``dltools`` in QGIS)."""
    return __name__.rsplit(".core.runner.", 1)[0]


def _start(read_fd: int, write_fd: int, budget: int | None, scratch: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(DLTOOLS_RUNNER_PATH=os.pathsep.join(p for p in sys.path if p), DLTOOLS_RUNNER_PACKAGE=_package(),
               DLTOOLS_RUNNER_FD=str(write_fd), PYTHONUNBUFFERED="1", TMPDIR=scratch, TEMP=scratch, TMP=scratch)
    env[BUDGET_ENV] = str(budget or 0)  # what the child's own checks of declared sizes measure against
    try:
        return subprocess.Popen([python_for_child(), "-c", _BOOTSTRAP], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_fd,), env=env)
    except OSError as exc:
        raise BackendError(f"Could not start a separate Python process for the run ({exc}); run in QGIS's own "
                           "process instead (Processing > Options > Providers > Deep Learning Tools)") from exc
    finally:
        os.close(write_fd)


def _read(pipe: Any, inbox: queue.Queue) -> None:
    """The reader thread: every message into ``inbox``, then None when the child's end closes."""
    try:
        while True:
            inbox.put(receive(pipe))
    except (EOFError, OSError, ValueError):
        pass
    except Exception as exc:  # noqa: BLE001 - a message that cannot be read is the child's failure
        inbox.put(("failure", f"an unreadable message from the child process ({type(exc).__name__}: {exc})"))
    inbox.put(None)


def _drain_stderr(stream: Any, tail: list[bytes]) -> None:
    """Keep the child's last 40 lines of stderr (its last words if it dies) until the pipe closes."""
    try:
        for line in iter(stream.readline, b""):
            tail.append(line)
            del tail[:-40]
    except (OSError, ValueError):  # closed under us: nothing more to keep
        pass


class ChildRun:
    """One job in one child process, relayed to ``progress`` and watched against ``limits``."""

    def __init__(self, name: str, args: tuple, kwargs: dict, progress: Progress | None, limits: ChildLimits) -> None:
        self.progress = progress or NullProgress()
        self.limits = limits
        self.watch = _Watch()
        self.args = tuple(ProgressSlot() if a is progress and progress is not None else a for a in args)
        self.kwargs = {k: ProgressSlot() if v is progress and progress is not None else v for k, v in kwargs.items()}
        self.name = name
        self.stderr: list[bytes] = []

    def run(self) -> Any:
        if self.progress.is_canceled():  # cancelled before it began: no process to start
            raise CancelledError("The run was cancelled.")
        scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
        try:
            answer = self._run(scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        tidy_scratch(scratch)  # what stays is the answer's (Detect Objects' objects), removed with it
        return answer

    def _run(self, scratch: str) -> Any:
        read_fd, write_fd = os.pipe()
        available = available_memory()
        self.budget = int(available * self.limits.memory_share) if available and self.limits.memory_share > 0 \
            else None
        self.started = time.monotonic()
        self.proc = _start(read_fd, write_fd, self.budget, scratch)
        inbox: queue.Queue = queue.Queue()
        pipe = os.fdopen(read_fd, "rb")
        threading.Thread(target=_read, args=(pipe, inbox), daemon=True).start()
        self._drain = threading.Thread(target=_drain_stderr, args=(self.proc.stderr, self.stderr), daemon=True)
        self._drain.start()
        try:
            send(self.proc.stdin, (self.name, self.args, self.kwargs))
            return self._loop(inbox)
        finally:
            self._stop()
            pipe.close()

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
        """The child is done (or failed): make sure it is gone, and nothing it started writing stays."""
        for stream in (self.proc.stdin,):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.watch.outcome is None or self.watch.outcome[0] != "result":
            remove_temporaries(self.watch.temporaries)
        self._close_stderr()

    def _close_stderr(self) -> None:
        """Close the child's stderr pipe once its reader has seen the end (else Python warns of an unclosed file).
        A process the child started may still hold the pipe open: then the reader is left to it, never blocked on."""
        self._drain.join(timeout=1.0)
        if not self._drain.is_alive():
            self.proc.stderr.close()

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
        self._drain.join(timeout=1.0)  # its last words, read to the end
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
        tail = _plain(b"".join(self.stderr[-5:]).decode("utf-8", "replace")).strip()
        raise BackendError(
            f"The model's runtime {how} while running the model; QGIS is unaffected and no output was written. "
            "A model file that crashes its runtime may be damaged or hostile: run only models you trust"
            + (f". Last words: {tail[-300:]}" if tail else ""))


def _plain(text: str) -> str:
    """Text without ANSI escape sequences (colours, cursor moves) that a terminal would interpret."""
    import re

    return re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]", "", text)


def run_in_child(name: str, args: tuple = (), kwargs: dict | None = None, progress: Progress | None = None,
                 limits: ChildLimits | None = None) -> Any:
    """Run job ``name`` (:data:`.jobs.JOBS`) with ``args``/``kwargs`` in a child process and return its result.

    ``progress`` receives the child's progress and log lines, and its cancel is forwarded; where the same object
    stands among the arguments, the child puts its own progress there. Errors the engine raises in the child are
    raised here as they were; a crash, a kill by the watchdogs or a cancel the child ignores become clear errors."""
    return ChildRun(name, tuple(args), dict(kwargs or {}), progress, limits or ChildLimits()).run()

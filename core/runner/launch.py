# SPDX-License-Identifier: GPL-2.0-or-later
"""Starting a child Python: the interpreter, its bootstrap, the two pipes and the threads that read them.

One started process is a :class:`Launched`: its message pipe is already read into an inbox and its stderr into a
tail of last words, so it can wait idle (a spare, :mod:`.spare`) as safely as it can run a job at once
(:mod:`.parent`). What it needs of the parent's environment for its job comes with the job
(:func:`job_environment`), so a process started early still runs with the environment of the moment it is used.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError
from ..installer.interpreter import RunningPython, locate_python, own_interpreter
from ..memory import BUDGET_ENV
from ..safe_output import SCRATCH_PREFIX
from .protocol import WARM_ENV, receive

_BOOTSTRAP = (
    "import os, sys; sys.path[:0] = [p for p in os.environ['DLTOOLS_RUNNER_PATH'].split(os.pathsep) if p]; "
    "import importlib; child = importlib.import_module(os.environ['DLTOOLS_RUNNER_PACKAGE'] + '.core.runner.child'); "
    "code = child.main(); sys.stdout.flush(); sys.stderr.flush(); os._exit(code)"
)


def python_for_child() -> str:
    """The Python that runs the child: this one if it is a Python, else the interpreter QGIS embeds."""
    running = RunningPython.current()
    if own_interpreter(running):
        return sys.executable
    return str(locate_python(running))


def package() -> str:
    """The plugin's top-level package name as this process imported it (``dltools`` in QGIS)."""
    return __name__.rsplit(".core.runner.", 1)[0]


def launch_key() -> tuple:
    """What a started child depends on and cannot change later: the interpreter, the plugin package and the
    import path (a spare started under another key is not used)."""
    return python_for_child(), package(), tuple(p for p in sys.path if p)


def job_environment(scratch: str, budget: int | None, write_fd: int) -> dict[str, str]:
    """The child's environment for its job: this process's, with the runner's own variables (the import path, the
    package, the message pipe, a scratch folder as temporary folder, the memory budget)."""
    env = dict(os.environ)
    env.update(DLTOOLS_RUNNER_PATH=os.pathsep.join(p for p in sys.path if p), DLTOOLS_RUNNER_PACKAGE=package(),
               DLTOOLS_RUNNER_FD=str(write_fd), PYTHONUNBUFFERED="1", TMPDIR=scratch, TEMP=scratch, TMP=scratch)
    env[BUDGET_ENV] = str(budget or 0)  # what the child's own checks of declared sizes measure against
    env.pop(WARM_ENV, None)
    return env


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


@dataclass
class Launched:
    """A started child: the process, its messages (read into ``inbox`` by a thread), the tail of its stderr, the
    scratch folder it uses as temporary folder and the number of its end of the message pipe."""

    proc: subprocess.Popen
    inbox: queue.Queue
    pipe: Any
    drain: threading.Thread
    scratch: str
    write_fd: int
    key: tuple
    stderr: list[bytes] = field(default_factory=list)

    def end(self, grace: float) -> None:
        """Close its stdin (a child still at work takes that as cancel; a spare, as the end), wait ``grace``
        seconds for it to exit (0: kill it at once), kill it if it has not, and close the message pipe and stderr,
        this one once its reader has seen the end (else Python warns of an unclosed file; a process the child
        started may still hold it open: then the reader is left to it, never blocked on)."""
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.pipe.close()
        self.drain.join(timeout=1.0)
        if not self.drain.is_alive():
            self.proc.stderr.close()


def launch(warm: bool = False) -> Launched:
    """Start a child Python with its own scratch folder; ``warm``: it imports the engine's usual modules while it
    waits for its job (a spare). The job itself is sent by the caller."""
    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    read_fd, write_fd = os.pipe()
    env = job_environment(scratch, None, write_fd)
    if warm:
        env[WARM_ENV] = "1"
    try:
        proc = subprocess.Popen([python_for_child(), "-c", _BOOTSTRAP], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_fd,), env=env)
    except OSError as exc:
        os.close(read_fd)
        os.rmdir(scratch)
        raise BackendError(f"Could not start a separate Python process for the run ({exc}); run in QGIS's own "
                           "process instead (Processing > Options > Providers > Deep Learning Tools)") from exc
    finally:
        os.close(write_fd)
    inbox: queue.Queue = queue.Queue()
    pipe = os.fdopen(read_fd, "rb")
    threading.Thread(target=_read, args=(pipe, inbox), daemon=True).start()
    tail: list[bytes] = []
    drain = threading.Thread(target=_drain_stderr, args=(proc.stderr, tail), daemon=True)
    drain.start()
    return Launched(proc=proc, inbox=inbox, pipe=pipe, drain=drain, scratch=scratch, write_fd=write_fd,
                    key=launch_key(), stderr=tail)

# SPDX-License-Identifier: GPL-2.0-or-later
"""One child Python kept ready for the next run, so a run does not wait for an interpreter to start.

Starting a child and importing numpy, GDAL, ONNX Runtime and the tools takes 0.2-0.5 s, paid by every run in a
child process (``make bench`` io-4096: a fifth of the whole run). After a run the parent starts the next run's
process at once; it imports those modules while the user looks at the result, then waits, reading nothing, for a
job. A run takes it as it is (one job per process, as before: nothing of one run's model is left for the next).

Given up, not used: a spare started under another interpreter, plugin package or import path, or one that has
ended. A spare that ends before any job (a runtime that crashes on import) is not replaced for the rest of the
session. The held spare is ended when the plugin unloads and when Python exits; it ends by itself when its parent
dies (its stdin closes).
"""

from __future__ import annotations

import atexit
import queue
import shutil
import threading
import time

from ..errors import BackendError
from .launch import Launched, launch, launch_key

_lock = threading.Lock()
_held: Launched | None = None
_given_up = False  # a spare died before its job: do not keep starting processes that die


def take() -> Launched | None:
    """The held spare for a run (None when none is held or it cannot serve this run); the caller owns it."""
    global _held, _given_up
    with _lock:
        spare, _held = _held, None
    if spare is None:
        return None
    if spare.proc.poll() is not None:
        _given_up = True
        _end(spare)
        return None
    if spare.key != launch_key():
        _end(spare)
        return None
    return spare


def keep() -> None:
    """Start a spare unless one is held (or spares were given up this session)."""
    global _held
    with _lock:
        if _held is not None or _given_up:
            return
        try:
            _held = launch(warm=True)
        except BackendError:  # no process can be started: each run says so itself
            return


def wait_warm(timeout: float = 30.0) -> bool:
    """Wait until the held spare has imported its modules (``make bench`` times a run only once nothing else is
    starting); False when none is held or it did not say so in time."""
    with _lock:
        spare = _held
        if spare is None:
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = spare.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if message is None:  # it ended: given up at the next take
                spare.inbox.put(None)
                return False
            if message[0] == "warm":
                return True


def held_pid() -> int | None:
    """The process id of the held spare (None when none is held)."""
    with _lock:
        return _held.proc.pid if _held is not None else None


def discard() -> None:
    """End the held spare (the plugin unloads, Python exits, or a test wants none)."""
    global _held, _given_up
    with _lock:
        spare, _held = _held, None
        _given_up = False
    if spare is not None:
        _end(spare)


def _end(spare: Launched) -> None:
    """Kill it (it holds no job and has written nothing) and remove its scratch folder."""
    spare.end(grace=0.0)
    shutil.rmtree(spare.scratch, ignore_errors=True)


atexit.register(discard)

# SPDX-License-Identifier: GPL-2.0-or-later
"""What crosses between the algorithm and its child process: length-prefixed pickles on two pipes.

Both ends are this plugin (the parent writes the job, its own child answers), so pickle is the plain choice:
nothing from a model file is unpickled here, only the job's arguments and the tool's result. The job is
``(name, args, kwargs, environment)``. Messages from the child are ``(kind, payload)`` tuples: ``warm`` (a spare
has imported what it imports while it waits), ``ready`` (the job's tool is loaded), ``progress``, ``info``,
``warning``, ``debug``, ``call`` (a model call starts or ends), ``temporary`` (a temporary output it created),
``result``, ``error`` and ``failure``.
"""

from __future__ import annotations

import pickle
import struct
import threading
from typing import Any, BinaryIO

_HEADER = struct.Struct("!Q")
#: set in a spare's environment (:mod:`.spare`): import the engine's usual modules while waiting for a job
WARM_ENV = "DLTOOLS_RUNNER_WARM"


def send(stream: BinaryIO, message: Any, lock: threading.Lock | None = None) -> None:
    """Write one message (a pickle with its length in front) and flush it."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if lock is None:
        stream.write(_HEADER.pack(len(data)) + data)
        stream.flush()
        return
    with lock:
        stream.write(_HEADER.pack(len(data)) + data)
        stream.flush()


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(stream: BinaryIO) -> Any:
    """The next message, or raise EOFError when the other end closed (or died)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        raise EOFError
    data = _read_exactly(stream, _HEADER.unpack(header)[0])
    if data is None:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - written by this plugin's own child or parent, never a model file


class ProgressSlot:
    """Stands in, in a job's arguments, for the algorithm's progress object: the child puts its own there."""

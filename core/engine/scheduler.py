# SPDX-License-Identifier: GPL-2.0-or-later
"""``SCHEDULER`` as typed by a user: checked before anything connects, shown without a password, and the
connection bounded in time.

A Dask address is ``tcp://host:port`` or ``tls://host:port`` (``host:port`` means tcp). Anything else is refused
with what was expected; a user name or password in it is never repeated in a message. ``local:N`` never starts
more workers than the cores this process may use. ``distributed.Client`` waits for ever on a server that accepts
the connection and never answers (or answers garbage), whatever its timeout: the connection is made in a thread
that the run waits for with its own deadline, watching cancel.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from ..errors import ArgumentError, CancelledError, DLToolsError
from ..progress import Progress

_ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?:(?P<user>[^@/]*)@)?"
                      r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/@\s\[\]]+)(?::(?P<port>[^/]*))?/?$")


class SchedulerError(DLToolsError):
    """The Dask scheduler cannot be reached, or does not answer as one."""


def shown(text: str) -> str:
    """The address as it may appear in a message: any user name or password replaced by ``***``."""
    return re.sub(r"(^|://)[^@/]*@", r"\1***@", text.strip())


def parse_address(text: str) -> str:
    """``tcp://host:port`` for what the user typed (tcp or tls; a plain ``host:port`` is tcp); a clear error
    naming what is wrong otherwise, the address shown without its password."""
    match = _ADDRESS.match(text.strip())
    hint = "a Dask scheduler address such as tcp://host:8786 (or empty, local, local:N)"
    if match is None:
        raise ArgumentError(f"SCHEDULER '{shown(text)}' is not {hint}")
    scheme = (match["scheme"] or "tcp").lower()
    if scheme not in ("tcp", "tls"):
        raise ArgumentError(f"SCHEDULER '{shown(text)}': the protocol '{scheme}' is not tcp or tls; expected {hint}")
    if match["user"] is not None:
        raise ArgumentError(f"SCHEDULER '{shown(text)}' holds a user name or password: a Dask address carries none "
                            "(TLS certificates authenticate); leave it out")
    port = match["port"]
    if not port or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ArgumentError(f"SCHEDULER '{shown(text)}' needs a port from 1 to 65535 (Dask's is 8786), as in "
                            f"{scheme}://{match['host']}:8786")
    return f"{scheme}://{match['host']}:{int(port)}"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def local_workers(asked: int | None, progress: Progress) -> int:
    """How many local workers to start: what ``local:N`` asked, at most the usable cores (said in the log)."""
    cores = usable_cores()
    if asked is None:
        return cores
    if asked > cores:
        progress.warning(f"SCHEDULER local:{asked} asks for more workers than the {cores} cores this process may use: "
                         f"{cores} are started")
        return cores
    return asked


def connect_within(distributed: Any, address: str, seconds: float, progress: Progress) -> Any:
    """``distributed.Client(address)``, or a clear error after ``seconds`` (cancel is watched meanwhile)."""
    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            outcome["client"] = distributed.Client(address, timeout=seconds, set_as_default=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=connect, name="dltools-dask-connect", daemon=True)
    worker.start()
    deadline = time.monotonic() + seconds
    while worker.is_alive():
        worker.join(0.2)
        if progress.is_canceled():
            raise CancelledError("The run was cancelled.")
        if time.monotonic() > deadline and worker.is_alive():
            raise SchedulerError(
                f"The Dask scheduler at {shown(address)} did not answer within {seconds:g} s (something accepts "
                "connections there but does not answer as a Dask scheduler, or it is overloaded). Check the address "
                "and that  dask scheduler  runs there with the same Dask version (or leave SCHEDULER empty)")
    if "error" in outcome:
        exc = outcome["error"]
        raise SchedulerError(f"Cannot use the Dask scheduler at {shown(address)}: {type(exc).__name__}: "
                             f"{shown(str(exc))[:300]}. Start one with  dask scheduler  and workers with  dask worker "
                             f"{shown(address)}  (or leave SCHEDULER empty)") from exc
    return outcome["client"]

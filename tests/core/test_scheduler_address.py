# SPDX-License-Identifier: GPL-2.0-or-later
"""SCHEDULER is checked before anything connects, a password is never repeated, local:N is capped at the usable
cores, and a server on 127.0.0.1 that accepts and never answers (or answers garbage) gives a clear error in time,
in a Python that then exits at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from builders import RecordingProgress
from dltools.core.engine.cluster import parse_scheduler
from dltools.core.engine.scheduler import local_workers, parse_address, usable_cores
from dltools.core.errors import ArgumentError

PLUGINS = Path(__file__).resolve().parents[2] / "build" / "plugins"


def test_addresses_are_checked_before_connecting():
    assert parse_address("tcp://h:8786") == "tcp://h:8786"
    assert parse_address(" h:8786 ") == "tcp://h:8786"
    assert parse_address("tls://[::1]:8786/") == "tls://[::1]:8786"
    assert parse_scheduler("10.0.0.2:8786") == ("tcp://10.0.0.2:8786", None)
    for bad, why in (("http://h:8786", "the protocol 'http' is not tcp or tls"),
                     ("tcp://h", "needs a port from 1 to 65535"), ("tcp://h:99999", "needs a port from 1 to 65535"),
                     ("tcp://h:port", "needs a port"), ("tcp://a b:1", "is not a Dask scheduler address")):
        with pytest.raises(ArgumentError, match=why):
            parse_scheduler(bad)


def test_a_password_is_never_repeated():
    with pytest.raises(ArgumentError) as info:
        parse_scheduler("tcp://alice:s3cret@host:8786")
    assert str(info.value).startswith("SCHEDULER 'tcp://***@host:8786' holds a user name or password")
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)


def test_local_workers_are_capped_at_the_usable_cores():
    progress = RecordingProgress()
    assert local_workers(100_000, progress) == usable_cores()
    assert progress.warnings == [f"SCHEDULER local:100000 asks for more workers than the {usable_cores()} cores this "
                                 f"process may use: {usable_cores()} are started"]
    assert local_workers(1, RecordingProgress()) == 1


SCRIPT = textwrap.dedent("""
    import socket, sys, threading, time
    sys.path.insert(0, {plugins!r})
    from dltools.core.engine.scheduler import SchedulerError, connect_within
    from dltools.core.errors import CancelledError
    import distributed

    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
    held = []

    def serve():
        while True:
            conn, _ = srv.accept()
            held.append(conn)
            if {garbage!r}:
                conn.sendall(b"HTTP/1.1 200 OK\\r\\n\\r\\nthis is not dask" * 50)

    threading.Thread(target=serve, daemon=True).start()

    class Progress:
        at = time.monotonic() + {cancel_after}
        def is_canceled(self):
            return time.monotonic() > self.at
        def info(self, m): pass
        def warning(self, m): pass

    started = time.monotonic()
    try:
        connect_within(distributed, "tcp://127.0.0.1:%d" % srv.getsockname()[1], 3.0, Progress())
        print("CONNECTED")
    except (SchedulerError, CancelledError) as exc:
        print("ERROR", type(exc).__name__, round(time.monotonic() - started, 1), exc)
""")


@pytest.mark.parametrize("garbage,cancel_after,expected", [
    (False, 100, ("SchedulerError", "did not answer within 3 s")),
    (True, 100, ("SchedulerError", "")),
    (False, 1.0, ("CancelledError", "The run was cancelled.")),
])
def test_a_server_that_never_answers_is_a_clear_error_in_time(garbage, cancel_after, expected):
    script = SCRIPT.format(plugins=str(PLUGINS), garbage=garbage, cancel_after=cancel_after)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    total = time.monotonic() - started
    line = [x for x in proc.stdout.splitlines() if x.startswith(("ERROR", "CONNECTED"))]
    assert line and line[0].startswith(f"ERROR {expected[0]} "), proc.stdout + proc.stderr[-2000:]
    seconds = float(line[0].split()[2])
    assert seconds <= 4.5 and expected[1] in line[0]
    assert total < seconds + 20  # the Python exits without waiting on the hung connection

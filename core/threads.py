# SPDX-License-Identifier: GPL-2.0-or-later
"""Thread settings: how many CPU threads a model (or a worker) may use.

A leaf: the backends, the engine and the argument parser all ask it, and it asks nobody.
``DLTOOLS_THREADS`` caps the default (the test suite sets it so that several runs share few cores).
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_count(requested: int | None) -> int:
    """0/None = every core this process may use; never more than that (100000 threads crash ONNX Runtime)."""
    cores = available_cores()
    if requested:
        return max(1, min(int(requested), cores))
    env = os.environ.get("DLTOOLS_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return min(int(env), cores)
    return cores

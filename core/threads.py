# SPDX-License-Identifier: GPL-2.0-or-later
"""Thread settings: how many CPU threads a model (or a worker) may use.

A leaf: the backends, the engine and the argument parser all ask it, and it asks nobody.
``DLTOOLS_THREADS`` caps the default (the test suite sets it so that several runs share few cores).
"""

from __future__ import annotations

import os


def thread_count(requested: int | None) -> int:
    """0/None = every core this process may use."""
    if requested:
        return int(requested)
    env = os.environ.get("DLTOOLS_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

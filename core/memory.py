# SPDX-License-Identifier: GPL-2.0-or-later
"""How much memory a run may take: what the machine has available now, and the run's bound.

The bound is the one the memory watchdog of a run's child process enforces (a share of the memory available when
the run starts, a provider setting): the parent hands it to its child as ``DLTOOLS_MEMORY_BUDGET`` (bytes; 0 = no
limit), so checks that can know a size before anything is allocated (an ONNX file's constant shapes) refuse what
the watchdog would stop later. Elsewhere (in-process runs, scripts) it is :data:`DEFAULT_SHARE` of what is
available.
"""

from __future__ import annotations

import os

#: The share of the available memory a run may use where no parent said otherwise (the setting's default).
DEFAULT_SHARE = 0.8
BUDGET_ENV = "DLTOOLS_MEMORY_BUDGET"


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_bound() -> int | None:
    """The bytes a run may allocate: the parent's budget for its child, else a share of what is available; None
    for no limit (a budget of 0, or nothing known)."""
    given = os.environ.get(BUDGET_ENV, "").strip()
    if given:
        try:
            value = int(float(given))
        except ValueError:
            value = -1
        if value >= 0:
            return value or None
    available = available_memory()
    return int(available * DEFAULT_SHARE) if available else None

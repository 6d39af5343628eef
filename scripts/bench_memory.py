# SPDX-License-Identifier: GPL-2.0-or-later
"""Peak resident memory of the processes a bench case starts (the child Python, Dask's workers), each its own.

Why not ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: it is the largest peak of every child ever waited for, and Linux
counts a child's memory before its ``exec`` too, when it still shares the parent's pages (Python starts children
with vfork/fork + exec). So a bench process holding 300 MB reports at least 300 MB for a child that used 60. Here
each descendant's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``, which exec resets) is read while it
runs; as the kernel keeps that mark, a sample taken any time before the process ends sees its peak up to then.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses, so split after the last ")"
    return int(text.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every living process below ``root`` (children, grandchildren: a Dask nanny's worker)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def high_water_kb(pid: int) -> int:
    """The process's own peak resident memory in kB (0 once it has exited or where it cannot be read)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


class ChildPeaks:
    """While in a ``with`` block: every ``interval`` seconds, the high-water mark of each descendant of this process
    (looked for anew every ``rescan`` seconds). :attr:`largest_mb`: the largest child's own peak.

    Each process keeps its *last* reading, not the largest: the mark only grows within one program, and the one
    reading that can be larger than the rest is from a child caught between fork and exec, still the parent's copy.
    """

    def __init__(self, interval: float = 0.02, rescan: float = 0.2, enabled: bool = True) -> None:
        self.interval, self.rescan, self.enabled = interval, rescan, enabled
        self.peaks_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildPeaks:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    @property
    def largest_mb(self) -> float:
        return max(self.peaks_kb.values(), default=0) / 1024

    def _sample(self) -> None:
        me, pids, scanned = os.getpid(), set(), 0.0
        while True:
            now = time.monotonic()
            if now - scanned >= self.rescan:
                pids, scanned = pids | descendants(me), now
            for pid in list(pids):
                kb = high_water_kb(pid)
                if kb:
                    self.peaks_kb[pid] = kb
                else:
                    pids.discard(pid)
            if self._stop.wait(self.interval):
                return

# SPDX-License-Identifier: GPL-2.0-or-later
"""The checkpoint files of a training: ``last.pth`` (what a resumed training starts from) and ``best.pth`` (the
epoch kept), each a complete checkpoint that loads with ``torch.load(weights_only=True)``.

An R-CNN's checkpoint is about 520 MB (the weights and AdamW's two moments), written every epoch.  Written as a new
file each time, the system had to find 520 MB of fresh file cache for it and free the file it replaced: 1.1 to 1.8 s
an epoch on the test machine.  Written over an existing file's bytes, it reuses that file's cache: 0.2 s.  So the
bytes live in up to three *slot* files (``slot-0.pth`` ..), and ``last.pth`` and ``best.pth`` are second names (hard
links) for two of them.  Each epoch's checkpoint is written over a slot that neither name points to, then
``last.pth`` (and, for a new best epoch, ``best.pth``) is pointed at it, atomically: a training interrupted in the
middle of a write leaves both names on complete checkpoints.  With the best epoch also the last (a score still
rising), two slots take turns.  A slot that also has a name outside these (a folder copied with hard links) is
replaced by a new file, never written over.  Where the file system has no hard links (FAT, some network shares), each
checkpoint is a new file renamed to ``last.pth`` and ``best.pth`` a copy of its weights, as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LAST, BEST = "last.pth", "best.pth"
SLOTS = ("slot-0.pth", "slot-1.pth", "slot-2.pth")


def save_atomic(torch, payload: dict[str, Any], path: Path) -> None:  # noqa: ANN001
    """``payload`` as a new file, renamed to ``path`` once complete."""
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(payload, str(tmp))
    os.replace(tmp, path)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _point(name: Path, slot: Path) -> None:
    """``name`` becomes a second name for ``slot``, replacing what it named in one step."""
    tmp = name.with_name(f".{name.name}.link")
    tmp.unlink(missing_ok=True)
    os.link(slot, tmp)
    os.replace(tmp, name)


class CheckpointFiles:
    """``last.pth`` / ``best.pth`` in ``folder``, written as the module docstring says."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _named(self) -> set[tuple[int, int]]:
        """The files ``last.pth`` and ``best.pth`` are; never None (a slot not yet written is free)."""
        return {i for i in (_identity(self.folder / LAST), _identity(self.folder / BEST)) if i is not None}

    def free_slot(self) -> Path:
        """A slot that neither ``last.pth`` nor ``best.pth`` names (three slots, two names: one is always free)."""
        named = self._named()
        return next(self.folder / s for s in SLOTS if _identity(self.folder / s) not in named)

    def write(self, torch, payload: dict[str, Any], best: bool) -> None:  # noqa: ANN001
        """The checkpoint ``payload`` as ``last.pth``; with ``best``, also as ``best.pth``."""
        slot = self.free_slot()
        if slot.exists() and os.stat(slot).st_nlink > 1:  # a name elsewhere too (a hard-linked copy of the
            slot.unlink()  # folder): its bytes are not ours to write over; a new file here, theirs left as they are
        with open(slot, "r+b" if slot.exists() else "wb") as f:  # over the slot's bytes: its file cache reused
            torch.save(payload, f)
            f.truncate()
        try:
            _point(self.folder / LAST, slot)
        except OSError:  # no hard links here: the slot itself becomes last.pth, the best a copy of its weights
            os.replace(slot, self.folder / LAST)
            if best:
                save_atomic(torch, {"model": payload["model"], "epoch": payload["epoch"]}, self.folder / BEST)
            return
        if best:
            _point(self.folder / BEST, slot)

    def prune(self) -> None:
        """Remove the slot neither name points to (an older epoch, kept only to be written over next)."""
        named = self._named()
        for name in SLOTS:
            path = self.folder / name
            if path.exists() and _identity(path) not in named:
                path.unlink()

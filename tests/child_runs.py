# SPDX-License-Identifier: GPL-2.0-or-later
"""What the tests of runs in a child process share: a two-class model definition beside its model file, a
progress that cancels after a while, and the temporary outputs a run may have left."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from builders import RecordingProgress, write_emd, write_raster

CLASSES = [(0, "zero", (255, 0, 0)), (1, "one", (0, 255, 0))]


class CancelAfter(RecordingProgress):
    """Cancels ``seconds`` after it was made."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.at = time.monotonic() + seconds

    def is_canceled(self) -> bool:
        return time.monotonic() >= self.at


def small_raster(path: Path) -> Path:
    """A 2-band 40 x 40 byte raster of values 0-49."""
    rng = np.random.default_rng(5)
    return write_raster(path, rng.integers(0, 50, size=(2, 40, 40)).astype(np.uint8))


def emd_for(folder: Path, model: Path, tile: int = 16) -> Path:
    return write_emd(folder / f"{model.stem}.emd", model.name, tile=tile, bands=(0, 1), classes=CLASSES)


def leftovers(folder: Path) -> list[str]:
    """Temporary outputs (``.dltools-`` / ``_dltools-`` names) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if ".dltools-" in p.name or "_dltools-" in p.name)


def bound_gib(message: str) -> float | None:
    """The bound a size refusal names ("more than the 1.0 GiB a run may use"), in GiB. A budget a little under
    1 GiB, a share of the memory available when the run starts, reads in MiB ("1023.9 MiB")."""
    import re

    found = re.search(r"more than the (\d+(?:\.\d+)?) (GiB|MiB) a run may use", message)
    if not found:
        return None
    return float(found.group(1)) / (1 if found.group(2) == "GiB" else 1024)


def process_ended(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` ends within ``seconds`` (a zombie counts: its parent has not reaped it yet)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False

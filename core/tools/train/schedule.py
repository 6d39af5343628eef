# SPDX-License-Identifier: GPL-2.0-or-later
"""The one-cycle learning rate arcgis.learn trains with (fastai's ``fit_one_cycle``), as a pure function of the step.

The rate rises from ``max_lr / 25`` to ``max_lr`` over the first 30 % of the steps and falls to ``max_lr / 25e4``
along half cosines.  Being a function of the step alone, it needs no state in a checkpoint: a resumed training sets
exactly the rates an uninterrupted one would have set.
"""

from __future__ import annotations

import math

PCT_START = 0.3
DIV = 25.0
FINAL_DIV = 1e4


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


def one_cycle_lr(step: int, total: int, max_lr: float) -> float:
    """Learning rate of ``step`` (0-based) out of ``total``."""
    total = max(int(total), 1)
    warm = max(int(total * PCT_START), 1)
    low = max_lr / DIV
    if step < warm:
        return _cos(low, max_lr, step / warm)
    rest = max(total - warm, 1)
    return _cos(max_lr, low / FINAL_DIV, min((step - warm) / rest, 1.0))

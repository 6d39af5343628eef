# SPDX-License-Identifier: GPL-2.0-or-later
"""LEARNING_RATE left empty: find one, as arcgis.learn's ``lr_find`` does, then forget the trial.

The rate grows geometrically from 1e-6 to 1 over a few dozen training batches while the (smoothed) loss is
recorded; the sweep stops early once the loss has blown up (4 x its best).  The suggestion is the rate where the
smoothed loss falls fastest, bounded to 1e-5 .. 1e-2.  The network's and the optimiser's states are restored
afterwards, so the training starts from the same weights as with a rate given by hand.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

START, END = 1e-6, 1.0
LOWEST, HIGHEST = 1e-5, 1e-2


def suggest(rates: list[float], losses: list[float]) -> float:
    """The rate at the steepest fall of the smoothed loss (the first when there are too few points)."""
    if len(losses) < 3:
        return min(max(rates[0] if rates else 1e-3, LOWEST), HIGHEST)
    slopes = [(losses[i + 1] - losses[i]) / (math.log(rates[i + 1]) - math.log(rates[i]))
              for i in range(len(losses) - 1)]
    best = min(range(len(slopes)), key=slopes.__getitem__)
    return min(max(rates[best], LOWEST), HIGHEST)


def find_learning_rate(module, optimizer, step: Callable, batches: Callable[[], Iterator], steps: int,  # noqa: ANN001
                       is_canceled: Callable[[], bool]) -> tuple[float, list[float], list[float]]:
    """(suggested rate, rates tried, smoothed losses); ``step(images, targets)`` does one optimiser step and returns
    the loss; ``batches()`` starts a pass over the training batches."""
    saved_module = copy.deepcopy(module.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    rates: list[float] = []
    losses: list[float] = []
    smooth, best = 0.0, math.inf
    it = batches()
    try:
        for i in range(steps):
            if is_canceled():
                break
            batch = next(it, None)
            if batch is None:
                it = batches()
                batch = next(it)
            lr = START * (END / START) ** (i / max(steps - 1, 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = float(step(*batch))
            if not math.isfinite(loss):
                break
            smooth = 0.7 * smooth + 0.3 * loss
            value = smooth / (1 - 0.7 ** (i + 1))
            rates.append(lr)
            losses.append(value)
            best = min(best, value)
            if value > 4 * best:
                break
    finally:
        module.load_state_dict(saved_module)
        optimizer.load_state_dict(saved_optimizer)
    return suggest(rates, losses), rates, losses

# SPDX-License-Identifier: GPL-2.0-or-later
"""Raw model scores -> probabilities, one rule for pixels and objects alike.

A model returns either probabilities (its last layer is a softmax or a sigmoid) or raw scores
(logits).  Which it is belongs to the model, not to a tile or a chip, so a run decides it once
(:meth:`ScoreActivation.calibrate`, on the model's outputs for probe inputs) and applies that
decision to every batch: a tile's content or the batch size must never turn logits into
"probabilities" or the other way round.

* Classes that compete (several channels, one label per pixel or object): scores whose finite
  values all lie in [0, 1] and sum to 1 over the classes (within :data:`PROBABILITY_TOLERANCE`)
  are probabilities; otherwise a softmax over the class axis is applied.
* Independent scores (one channel: the probability of one class; multi-label models): values
  in [0, 1] are probabilities; otherwise a sigmoid is applied.

Without a calibration every output is judged on its own; the pipelines always calibrate.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

#: Probabilities: every value in [0, 1] and, for competing classes, every sum within this of 1.
PROBABILITY_TOLERANCE = 1e-3

_DESCRIPTIONS = (("probabilities", "taken as probabilities"), ("softmax", "softmax applied"),
                 ("sigmoid", "sigmoid applied"))


def looks_like_probabilities(scores: np.ndarray, exclusive: bool) -> bool:
    """Whether the finite scores ``[batch, classes, ...]`` lie in [0, 1] (and sum to 1 over classes if ``exclusive``).

    A pixel or object with a non-finite score is no evidence either way; with no evidence at all the
    answer is True (nothing would change).
    """
    if scores.ndim == 1:
        scores = scores[:, None]
    finite = np.isfinite(scores).all(axis=1)
    if not finite.any():
        return True
    values = np.moveaxis(scores, 1, -1)[finite]  # [n, classes]
    if float(values.min()) < 0.0 or float(values.max()) > 1.0:
        return False
    if not exclusive or values.shape[1] == 1:
        return True
    return bool(np.all(np.abs(values.sum(axis=1, dtype=np.float64) - 1.0) <= PROBABILITY_TOLERANCE))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, in the scores' float type (a new array)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def sigmoid(scores: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-scores))


class ScoreActivation:
    """Probabilities as they are, softmax or sigmoid: decided once per run, counted per model call.

    ``exclusive``: the classes compete (softmax); otherwise each score is its own probability (sigmoid).
    """

    def __init__(self, exclusive: bool) -> None:
        self.exclusive = exclusive
        #: whether raw scores are already probabilities; None until :meth:`calibrate` (then judged per output)
        self.as_probabilities: bool | None = None
        #: model calls decoded with each activation ("probabilities", "softmax", "sigmoid")
        self.calls: Counter = Counter()

    def calibrate(self, samples: list[np.ndarray]) -> None:
        """Decide once, from the model's raw outputs on probe inputs, whether its scores are probabilities."""
        self.as_probabilities = all(looks_like_probabilities(np.asarray(s), self.exclusive) for s in samples)

    def decide(self, scores: np.ndarray) -> str:
        """The activation for one model output (the run's decision once calibrated); counts the call."""
        as_probs = self.as_probabilities
        if as_probs is None:
            as_probs = looks_like_probabilities(scores, self.exclusive)
        kind = "probabilities" if as_probs else ("softmax" if self.exclusive else "sigmoid")
        self.calls[kind] += 1
        return kind

    @staticmethod
    def transform(scores: np.ndarray, kind: str) -> np.ndarray:
        if kind == "probabilities":
            return scores
        return softmax(scores) if kind == "softmax" else sigmoid(scores)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Raw scores ``[batch, classes, ...]`` -> probabilities (the same array when they already are)."""
        return self.transform(scores, self.decide(scores))

    def describe(self) -> str:
        """What was applied, e.g. ``softmax applied (12 model call(s))``, for the end-of-run log."""
        return "; ".join(f"{text} ({self.calls[key]} model call(s))" for key, text in _DESCRIPTIONS if self.calls[key])

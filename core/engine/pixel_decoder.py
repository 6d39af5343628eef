# SPDX-License-Identifier: GPL-2.0-or-later
"""From a segmentation model's output to class values and probabilities.

Rules, decided once from the output's channel count C and the N Classes:

* integer output ``[B, H, W]``: already class values, written as they are;
* ``C == N``: channel i is ``Classes[i]``; the class is the arg-max;
* ``C == N + 1``: channel 0 is background (written as 0), channel i+1 is ``Classes[i]``;
  ``predict_background False`` keeps channel 0 from winning; ``ignore_mapped_class``
  channels never win either;
* ``C == 1`` (or a float ``[B, H, W]``): a sigmoid probability; at or above ``threshold``
  the pixel is the last class (``Classes[1]`` with two classes, ``Classes[0]`` with one,
  which then has 0 as background);
* ``ModelType Regression`` (Deepness regressors): the raw values, one band per channel.

Probabilities or logits follows the one rule for every score decoder (:mod:`.scores`): an
output whose values all lie in [0, 1] and, with several channels, sum to 1 is taken as
probabilities; otherwise softmax (or sigmoid for one channel) is applied.  The arg-max is the
same either way.  This is a property of the model, so the engine decides it once per run
(:meth:`PixelDecoder.calibrate`, from the model's outputs on probe tiles), never per batch: a
tile's content or the batch size must not turn one-channel logits into thresholded "probabilities".
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError
from ..model.definition import ModelDefinition
from .scores import ScoreActivation, looks_like_probabilities


class PixelDecoder:
    def __init__(self, md: ModelDefinition, args: dict, channels: int, integer_output: bool) -> None:
        self.md = md
        self.threshold = float(args.get("threshold", 0.5))
        n = len(md.classes)
        values = [c.value for c in md.classes]
        if md.model_type == "Regression":
            self.mode = "regression"
            self.prob_names = [f"band {i + 1}" for i in range(channels)]
        elif integer_output:
            self.mode = "values"
        elif channels == 1:
            self.mode = "sigmoid"
        elif n == 0:
            self.mode = "softmax"
            values = list(range(channels))
        elif channels == n:
            self.mode = "softmax"
        elif channels == n + 1:
            self.mode = "background"
        else:
            raise InputDataError(
                f"The model returns {channels} channels per pixel, but the model definition has {n} classes: "
                f"expected {n} (one per class), {n + 1} (background first) or 1 (a probability); fix Classes in the .emd")
        if self.mode == "sigmoid":
            if n >= 2:
                self.lut = np.asarray([values[0], values[-1]], np.int64)
            elif n == 1:
                self.lut = np.asarray([0, values[0]], np.int64)
            else:
                self.lut = np.asarray([0, 1], np.int64)
            self.prob_names = [md.classes[-1].name if md.classes else "class 1"]
        elif self.mode == "background":
            self.lut = np.asarray([0] + values, np.int64)
            self.prob_names = [c.name for c in md.classes]
        elif self.mode == "softmax":
            self.lut = np.asarray(values, np.int64)
            self.prob_names = [c.name for c in md.classes] or [f"class {v}" for v in values]
        elif self.mode == "values":
            self.lut = np.asarray(values, np.int64)
            self.prob_names = []
        #: probabilities as they are, softmax (several channels) or sigmoid (one): decided once by :meth:`calibrate`
        self.activation = ScoreActivation(exclusive=channels > 1)
        self.suppressed = [i for i in md.ignore_mapped_class if 0 <= i < channels]
        if self.mode == "background" and not args.get("predict_background", True):
            self.suppressed.append(0)

    @property
    def output_values(self) -> list[int]:
        """Every value the class map can hold."""
        if self.mode == "regression":
            return []
        return sorted(set(int(v) for v in self.lut))

    @property
    def writes_probabilities(self) -> bool:
        return self.mode != "values"

    @property
    def scores_are_probabilities(self) -> bool | None:
        """Whether raw scores are already probabilities; None until :meth:`calibrate` (then judged per output)."""
        return self.activation.as_probabilities

    @staticmethod
    def looks_like_probabilities(out: np.ndarray) -> bool:
        """Whether the finite values of one raw output [B, C, h, w] all lie in [0, 1] (and sum to 1 over C > 1)."""
        if out.ndim == 3:
            out = out[:, None]
        return looks_like_probabilities(out, exclusive=True)

    def calibrate(self, samples: list[np.ndarray]) -> None:
        """Decide once, from the model's raw outputs on probe tiles, whether its scores are probabilities."""
        if self.mode in ("regression", "values"):
            return
        self.activation.calibrate([s[:, None] if s.ndim == 3 else s for s in samples])

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """Raw output [B, C, h, w] (or [B, h, w]) -> probabilities [B, C, h, w] float32."""
        if out.ndim == 3:
            out = out[:, None]
        out = out.astype(np.float32, copy=False)
        if self.mode == "regression":
            return out
        return self.activation.apply(out)

    def indices_from_raw(self, out: np.ndarray) -> np.ndarray:
        """Raw output -> [B, h, w] indices into :attr:`lut` (class values themselves in "values" mode).

        No probabilities are needed for the arg-max, which keeps the common path cheap.
        """
        if self.mode == "values":
            return (out[:, 0] if out.ndim == 4 else out).astype(np.int64)
        if self.mode == "sigmoid":
            return self.indices_from_probabilities(self.probabilities(out))
        return self._argmax(out)

    def indices_from_probabilities(self, probs: np.ndarray) -> np.ndarray:
        if self.mode == "sigmoid":
            return (probs[:, 0] >= self.threshold).astype(np.int64)
        return self._argmax(probs)

    def class_values(self, indices: np.ndarray) -> np.ndarray:
        return indices if self.mode == "values" else self.lut[indices]

    def _argmax(self, scores: np.ndarray) -> np.ndarray:
        if self.suppressed:
            scores = scores.copy()
            scores[:, self.suppressed] = -np.inf
        return np.argmax(scores, axis=1)

    def probability_bands(self, probs: np.ndarray) -> np.ndarray:
        """The probabilities written to the probability raster: one band per class (background dropped)."""
        if self.mode == "background":
            return probs[:, 1:]
        return probs

    def collapse_to_binary(self) -> None:
        """arcgis.learn change detection: 0 stays "no change", every other class becomes the first non-zero Value."""
        if self.mode in ("regression", "values"):
            raise InputDataError("A binary change map needs a model that returns class scores")
        nonzero = [c.value for c in self.md.classes if c.value != 0]
        self.lut = np.where(self.lut != 0, nonzero[0] if nonzero else 1, 0).astype(np.int64)

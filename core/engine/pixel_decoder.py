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

from collections.abc import Sequence

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
        return argmax_channels(scores, self.suppressed)

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


#: Pixels per slice of a class plane that :func:`argmax_channels` works on: the running maximum, the mask and the
#: indices of one slice stay in the CPU's cache while the class planes stream past.
ARGMAX_SLICE = 32768


def argmax_channels(scores: np.ndarray, suppressed: Sequence[int] = ()) -> np.ndarray:
    """``np.argmax(scores, axis=1)`` of [B, C, h, w] scores, with the ``suppressed`` channels never winning
    (as if they were -inf), computed as a running maximum over the few class planes.

    Why: numpy's arg-max over the class axis reads C values C*h*w apart for every pixel, which costs more than
    reading the input, running a small model and writing the output together; comparing whole planes in place
    (in the scores' own type: no float64, no copy of the scores) is several times faster.  The result is
    identical: ties go to the lowest class index (a later plane must be strictly greater), and a pixel with a
    NaN gets the first NaN's channel, as numpy's arg-max gives it (those pixels are rare and recomputed with it).
    Indices are uint8 up to 256 channels (intp beyond, where numpy's arg-max is used as it is).
    """
    if scores.ndim != 4:
        raise ValueError(f"class scores must be [batch, channels, height, width], not {list(scores.shape)}")
    batch, channels, h, w = scores.shape
    drop = sorted({int(c) for c in suppressed if 0 <= int(c) < channels})
    if channels > 256 or scores.dtype.kind != "f":
        if drop:
            scores = scores.astype(np.result_type(scores.dtype, np.float32), copy=True)
            scores[:, drop] = -np.inf
        return np.argmax(scores, axis=1)
    idx = np.zeros((batch, h, w), np.uint8)
    rows = max(1, ARGMAX_SLICE // max(w, 1))
    best = np.empty((rows, w), scores.dtype)
    mask = np.empty((rows, w), bool)
    live = [c for c in range(1, channels) if c not in drop]
    for b in range(batch):
        for y0 in range(0, h, rows):
            y1 = min(h, y0 + rows)
            run, hit, out = best[:y1 - y0], mask[:y1 - y0], idx[b, y0:y1]
            if 0 in drop:
                run.fill(-np.inf)
            else:
                np.copyto(run, scores[b, 0, y0:y1])
            for c in live:
                plane = scores[b, c, y0:y1]
                np.greater(plane, run, out=hit)
                np.putmask(out, hit, c)
                np.maximum(run, plane, out=run)  # NaN propagates: a NaN anywhere leaves NaN here
            np.isnan(run, out=hit)
            if hit.any():
                _first_nan_wins(scores[b, :, y0:y1], hit, out, drop)
    return idx


def _first_nan_wins(scores: np.ndarray, nan: np.ndarray, out: np.ndarray, drop: list[int]) -> None:
    """numpy's arg-max on the pixels ``nan`` of [C, h, w] ``scores`` (the first NaN's channel wins there)."""
    picked = scores[:, nan].astype(scores.dtype, copy=True)  # [C, n]
    if drop:
        picked[drop] = -np.inf
    out[nan] = np.argmax(picked, axis=0)

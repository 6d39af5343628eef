# SPDX-License-Identifier: GPL-2.0-or-later
"""From an object classifier's ``[batch, classes]`` scores to labels, class values and confidences.

* **Probabilities or logits** follows the one rule of every score decoder (:mod:`core.engine.scores`),
  decided once per run by :meth:`ObjectDecoder.calibrate`: competing classes get a softmax unless
  the scores already are probabilities; multi-label models (``MetaDataMode``
  ``MultiLabeled_Tiles``) and one-score models get a sigmoid unless all values lie in [0, 1].
  A single score per chip (``[batch, 1]``) is the probability of the second of exactly two classes.
* **Label.** Score index ``i`` is ``Classes[i]`` (in the order of the model definition): the
  label is its ``Name``, the class value its ``Value`` and the confidence the probability x 100
  (0-100, as arcgis.learn's detectors write it; arcgis.learn FeatureClassifier models write the
  probability itself, 0-1, as ArcGIS does for them).  Multi-label models report every class whose probability
  reaches ``score_threshold``, joined with ``;`` in class order, and their confidences the same
  way (text, 2 decimals).  A chip whose scores are not all finite gets no label and a note.
"""

from __future__ import annotations

import numpy as np

from ...engine.scores import ScoreActivation
from ...errors import InputDataError, ModelDefinitionError
from ...model.definition import ModelDefinition
from ...progress import Progress


class ObjectDecoder:
    """From the model's ``[batch, classes]`` output to labels (see the module text)."""

    def __init__(self, md: ModelDefinition, channels: int, score_threshold: float = 0.5,
                 progress: Progress | None = None) -> None:
        self.classes = list(md.classes)
        self.multilabel = md.is_multilabel
        self.threshold = float(score_threshold)
        n = len(self.classes)
        if n == 0:
            raise ModelDefinitionError("The model definition lists no Classes, so the model's scores cannot be named: "
                                       "add \"Classes\": [{\"Value\": 1, \"Name\": \"...\"}, ...] in score order")
        self.binary = channels == 1
        if self.binary:
            if n != 2 or self.multilabel:
                raise InputDataError(
                    f"The model returns one score per chip, which is read as the probability of the second of two "
                    f"classes, but the model definition lists {n} Classes: list exactly two")
        elif channels > n:
            raise InputDataError(
                f"The model returns {channels} class scores per chip but the model definition lists only {n} Classes: "
                f"class index {n} (0-based) has no Classes entry. Add the missing classes, in score order, to the .emd")
        elif channels < n and progress is not None:
            progress.warning(f"The model returns {channels} class scores but the model definition lists {n} Classes: "
                             f"{', '.join(c.name for c in self.classes[channels:])} can never be predicted")
        self.channels = channels
        self.activation = ScoreActivation(exclusive=not (self.binary or self.multilabel))
        #: confidences are probabilities x 100, except for arcgis.learn's FeatureClassifier, whose ArcGIS
        #: inference writes the probability itself (0-1): the rebuilt model writes what ArcGIS writes
        family = getattr(md, "arcgis_family", None)
        self.confidence_scale = 1.0 if family is not None and family.model_name == "FeatureClassifier" else 100.0

    @property
    def decisions(self):  # noqa: ANN201 - a Counter
        """Model calls decoded with each activation."""
        return self.activation.calls

    def calibrate(self, samples: list[np.ndarray]) -> None:
        """Decide once for the run, from the model's scores on probe chips, whether they are probabilities."""
        self.activation.calibrate([np.asarray(s, np.float64) for s in samples])

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Scores [B, C] -> probabilities [B, C'] (float64; C' = 2 for a one-score model); NaN rows stay NaN."""
        x = raw.astype(np.float64, copy=False)
        finite = np.isfinite(x).all(axis=1)
        safe = np.where(np.isfinite(x), x, 0.0)
        probs = self.activation.transform(safe, self.activation.decide(x))
        if self.binary:
            probs = np.concatenate([1.0 - probs, probs], axis=1)
        probs = probs.copy()
        probs[~finite] = np.nan
        return probs

    def decide(self, probs: np.ndarray) -> tuple[str | None, int | str | None, float | str | None, str | None]:
        """One row of probabilities -> (label, class value, confidence, note)."""
        if not np.isfinite(probs).all():
            return None, None, None, "the model returned scores that are not numbers (NaN or infinite)"
        if self.multilabel:
            picked = [i for i in range(len(probs)) if probs[i] >= self.threshold]
            if not picked:
                return None, None, None, f"no class reached score_threshold {self.threshold:g}"
            return (";".join(self.classes[i].name for i in picked),
                    ";".join(str(self.classes[i].value) for i in picked),
                    ";".join(self._confidence_text(probs[i]) for i in picked), None)
        i = int(np.argmax(probs))
        cls = self.classes[i]
        return cls.name, cls.value, float(self.confidence_scale * probs[i]), None

    def _confidence_text(self, p: float) -> str:
        return f"{100.0 * p:.2f}" if self.confidence_scale == 100.0 else f"{p:.4f}"

    def describe(self) -> str:
        return self.activation.describe()


def scores_2d(out: np.ndarray, n: int) -> np.ndarray:
    """The model output as [batch, classes], or a clear error."""
    arr = np.asarray(out)
    if arr.ndim > 2 and all(d == 1 for d in arr.shape[2:]):
        arr = arr.reshape(arr.shape[0], arr.shape[1])
    if arr.ndim != 2 or arr.shape[0] != n:
        hint = ""
        if arr.ndim == 4:
            hint = " It returns an image per chip: this is a pixel classifier (use Classify Pixels Using Deep Learning)."
        elif arr.ndim == 1:
            hint = " It returns one number per chip (a class index?): export the model with its class scores."
        raise InputDataError(
            f"The model returns an output of shape {list(arr.shape)} for {n} chip(s); an object classifier must "
            f"return [batch, classes]: one score per class for each chip.{hint}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr

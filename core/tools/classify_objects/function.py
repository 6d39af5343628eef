# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects with the model's own Python raster function (the chip stack of Esri's contract).

The tool cuts the chips (CropSizeFixed / BlackenAroundFeature from ``getConfiguration``,
else the model definition), batches them and writes the results, as for any model; the
function gets each batch as ``vectorize(rasters_pixels=[chip, ...], rasters_mask=[mask, ...])``
with chips of shape ``(bands, ImageHeight, ImageWidth)`` in raw pixel values (float32; only a
``dataRange`` from the function rescales them; NoData pixels are 0, and 0 in the mask) and returns
one feature per chip whose attributes carry the label (``Label``, ``Classname`` or ``Class``, or a
``Classvalue``/``Value``) and ``Confidence`` (0-100, or 0-1).  Labels are looked up in ``Classes``
by name, then by value, the way Esri's functions name classes.

``rasters_mask`` is each chip's validity (uint8, the chip's shape): 0 at NoData, past the raster's edge and,
with BlackenAroundFeature, outside the feature; 1 elsewhere (a resized chip: where at least half of what a
pixel was resized from is valid).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ...arguments.specs import resolve_arguments
from ...backends.base import Backend, DeviceRequest, TensorInfo
from ...errors import ModelDefinitionError
from ...model.definition import ModelDefinition
from ...prf.host import CustomFunctionError, PythonRasterFunction, without_normalisation
from ...progress import NullProgress, Progress
from .classifier import ObjectClassifier

_LABEL_KEYS = ("Label", "Classname", "ClassName", "Class", "label", "class")
_VALUE_KEYS = ("Classvalue", "ClassValue", "Value", "value")


class FunctionChipBackend(Backend):
    """A :class:`Backend` whose "model" is the function's ``vectorize`` on a chip stack.

    It returns per-chip probabilities that put the function's confidence on its class, so the
    classifier's decoder reports exactly the function's label and confidence.
    """

    kind = "python function"

    def __init__(self, prf: PythonRasterFunction, md: ModelDefinition) -> None:
        super().__init__()
        self.prf = prf
        self.md = md
        if len(md.classes) < 2:
            raise ModelDefinitionError("A custom object classifier's model definition must list its Classes (at "
                                       "least two) so that the labels it returns can be named and valued")
        self.inputs = [TensorInfo("rasters", (None, None, md.image_height, md.image_width), "float32")]
        self.outputs = [TensorInfo("scores", (None, len(md.classes)), "float64")]
        self.device = "cpu" if prf.device_id < 0 else f"gpu {prf.device_id}"
        self.provider = prf.shown
        self.by_name = {c.name.lower(): i for i, c in enumerate(md.classes)}
        self.by_value = {c.value: i for i, c in enumerate(md.classes)}
        self.batches = 0
        self._masks: list[np.ndarray | None] | None = None

    def _index(self, attrs: dict[str, Any], n: int) -> int:
        for key in _LABEL_KEYS:
            if attrs.get(key) not in (None, "") and str(attrs[key]).lower() in self.by_name:
                return self.by_name[str(attrs[key]).lower()]
        for key in _VALUE_KEYS + _LABEL_KEYS:
            try:
                value = int(attrs[key])
            except (KeyError, TypeError, ValueError):
                continue
            if value in self.by_value:
                return self.by_value[value]
        raise CustomFunctionError(
            f"vectorize() of '{self.prf.shown}' returned a feature for chip {n + 1} of the batch whose label "
            f"{ {k: attrs[k] for k in _LABEL_KEYS + _VALUE_KEYS if k in attrs} } is none of the model's Classes "
            f"({', '.join(c.name for c in self.md.classes)})")

    def run_with_masks(self, batch: np.ndarray, masks: list[np.ndarray | None]) -> list[np.ndarray]:
        """:meth:`run` with each chip's validity ([H, W] bool) for ``rasters_mask``."""
        self._masks = masks
        try:
            return self.run(batch)
        finally:
            self._masks = None

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        chips = arrays[0]
        given = self._masks or [None] * len(chips)
        # rasters_mask as Esri hands it: uint8 of the chip's shape, 0 at NoData, past the raster and blackened
        masks = [np.ones(c.shape, np.uint8) if m is None else np.repeat(m[None].astype(np.uint8), c.shape[0], axis=0)
                 for c, m in zip(chips, given)]
        self.batches += 1
        self.prf.where = f"chip batch {self.batches} ({len(chips)} chip(s))"
        data = self.prf.vectorize({"rasters_pixels": list(chips), "rasters_mask": masks})
        features = data.get("features", [])
        if len(features) != len(chips):
            raise CustomFunctionError(f"vectorize() of '{self.prf.shown}' returned {len(features)} feature(s) for "
                                      f"{len(chips)} chip(s) on {self.prf.where}: it must return one per chip")
        n = len(self.md.classes)
        out = np.zeros((len(chips), n), np.float64)
        for i, feature in enumerate(features):
            attrs = feature.get("attributes", {}) if isinstance(feature, dict) else {}
            k = self._index(attrs, i)
            try:
                conf = float(attrs.get("Confidence", attrs.get("Score", 100.0)))
            except (TypeError, ValueError):
                raise CustomFunctionError(f"vectorize() of '{self.prf.shown}' returned Confidence "
                                          f"{attrs.get('Confidence')!r} for chip {i + 1} on {self.prf.where}: "
                                          "expected a number") from None
            p = conf / 100.0 if conf > 1.0 else conf
            p = min(max(p, 0.0), 1.0)
            out[i, :] = (1.0 - p) / (n - 1)
            out[i, k] = p
        return [out]

    def describe(self) -> str:
        return f"the model's Python function '{self.prf.shown}' ({self.device})"


def custom_object_classifier(md: ModelDefinition, arguments: str | dict | None, device: DeviceRequest | None,
                             progress: Progress | None, allowed: bool) -> ObjectClassifier:
    """An :class:`ObjectClassifier` whose model is the function; refuses unless ``allowed``."""
    progress = progress or NullProgress()
    prf = PythonRasterFunction(md, allowed, device or DeviceRequest(), progress)
    args = prf.resolve_arguments(arguments)
    if args:
        progress.info("Function arguments: " + ";".join(f"{k} {v}" for k, v in args.items()))
    conf = prf.configuration(args)
    raw = conf.raw
    chip_md = without_normalisation(md, conf.data_range)
    if conf.bands is not None:
        chip_md = replace(chip_md, extract_bands=list(conf.bands), extract_band_names=None)
    for key, attr in (("CropSizeFixed", "crop_size_fixed"), ("BlackenAroundFeature", "blacken_around_feature")):
        if raw.get(key) is not None:
            chip_md = replace(chip_md, **{attr: int(raw[key])})
    tool_args = resolve_arguments(chip_md, "classify_objects", None, progress)
    tool_args.update(batch_size=int(conf.batch_size or md.batch_size or 4), test_time_augmentation=False)
    return ObjectClassifier(chip_md, tool_args, device, progress, backend=FunctionChipBackend(prf, chip_md))


def open_object_classifier(md: ModelDefinition, arguments: str | dict | None = None,
                           device: DeviceRequest | None = None, progress: Progress | None = None,
                           allow_custom_code: bool = False) -> ObjectClassifier:
    """The classifier for ``md``: its own Python function when it has one, else the model file."""
    if md.custom_function:
        return custom_object_classifier(md, arguments, device, progress, allow_custom_code)
    return ObjectClassifier(md, arguments, device, progress)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects with the model's own Python raster function (the chip stack of Esri's contract).

The function is one more kind of chip model (:class:`.chip_models.ChipModel`) behind the same block task as a
model file: the tool cuts the chips (CropSizeFixed / BlackenAroundFeature from ``getConfiguration``, else the
model definition), batches them and writes the results, in-process or on a Dask cluster; the function gets each
batch as ``vectorize(rasters_pixels=[chip, ...], rasters_mask=[mask, ...])`` with chips of shape
``(bands, ImageHeight, ImageWidth)`` in raw pixel values (float32; only a ``dataRange`` from the function
rescales them; NoData pixels are 0, and 0 in the mask) and returns one feature per chip whose attributes name the
class and its ``Confidence`` (read as Detect Objects reads them: :mod:`core.prf.features`).  The label, class
value and confidence written are the ones the function returned.

``rasters_mask`` is each chip's validity (uint8, the chip's shape): 0 at NoData, past the raster's edge and,
with BlackenAroundFeature, outside the feature; 1 elsewhere (a resized chip: where at least half of what a
pixel was resized from is valid).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...arguments.specs import decide_batch, resolve_arguments
from ...backends.base import DeviceRequest
from ...errors import ModelDefinitionError
from ...model.definition import ClassInfo, ModelDefinition
from ...prf.choice import model_to_run
from ...prf.features import feature_attributes, feature_class, feature_confidence, given_label
from ...prf.function_model import FunctionModel, function_model_ref
from ...prf.host import CustomFunctionError, PythonRasterFunction, without_normalisation
from ...progress import NullProgress, Progress
from .chip_models import ChipModel
from .classifier import ObjectClassifier


@dataclass
class FunctionChips:
    """The function's labels for a batch of chips: ``vectorize`` on the chip stack, one feature per chip."""

    classes: list[ClassInfo]

    def classify(self, model: FunctionModel, chips: np.ndarray, masks: list[np.ndarray | None]) -> list[tuple]:
        prf = model.prf
        # rasters_mask as Esri hands it: uint8 of the chip's shape, 0 at NoData, past the raster and blackened
        stack = [np.ones(c.shape, np.uint8) if m is None else np.repeat(m[None].astype(np.uint8), c.shape[0], axis=0)
                 for c, m in zip(chips, masks)]
        prf.where = f"chip batch {model.calls + 1} ({len(chips)} chip(s))"
        name = prf.rasters()[0]["name"]  # Esri's object classifiers call it "rasters"
        data = model.call(prf.vectorize, {f"{name}_pixels": list(chips), f"{name}_mask": stack})
        features = data.get("features", [])
        if len(features) != len(chips):
            raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned {len(features)} feature(s) for "
                                      f"{len(chips)} chip(s) on {prf.where}: it must return one per chip")
        return [self._decision(prf, feature_attributes(feature), n) for n, feature in enumerate(features)]

    def _decision(self, prf: PythonRasterFunction, attrs: dict[str, Any], n: int) -> tuple:
        info = feature_class(attrs, self.classes)
        if info is None:
            raise CustomFunctionError(
                f"vectorize() of '{prf.shown}' returned a feature for chip {n + 1} of the batch whose label "
                f"{given_label(attrs)} is none of the model's Classes ({', '.join(c.name for c in self.classes)})")
        try:
            confidence = feature_confidence(attrs)
        except ValueError as exc:
            raise CustomFunctionError(f"vectorize() of '{prf.shown}' returned {exc} for chip {n + 1} on {prf.where}: "
                                      "expected a number") from None
        return info.name, info.value, confidence, None, None


def custom_object_classifier(md: ModelDefinition, arguments: str | dict | None, device: DeviceRequest | None,
                             progress: Progress | None, allowed: bool, scheduler: str = "",
                             retries: int = 2) -> ObjectClassifier:
    """An :class:`ObjectClassifier` whose model is the function; refuses unless ``allowed``."""
    progress = progress or NullProgress()
    device = device or DeviceRequest()
    prf = PythonRasterFunction(md, allowed, device, progress)
    if len(md.classes) < 2:
        raise ModelDefinitionError("A custom object classifier's model definition must list its Classes (at "
                                   "least two) so that the labels it returns can be named and valued")
    args = prf.resolve_arguments(arguments)
    if any(v is not None for v in args.values()):
        progress.info("Function arguments: " + ";".join(f"{k} {v}" for k, v in args.items() if v is not None))
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
    where = "cpu" if prf.device_id < 0 else f"gpu {prf.device_id}"
    model = ChipModel(model=FunctionModel(prf), decider=FunctionChips(list(md.classes)),
                      batch=decide_batch(tool_args["batch_size"]), model_channels=None,
                      description=f"the model's Python function '{prf.shown}' ({where})",
                      model_ref=lambda sched: function_model_ref(prf, md, args, device, progress, sched))
    return ObjectClassifier(chip_md, tool_args, device, progress, chip_model=model, scheduler=scheduler,
                            retries=retries)


def open_object_classifier(md: ModelDefinition, arguments: str | dict | None = None,
                           device: DeviceRequest | None = None, progress: Progress | None = None,
                           allow_custom_code: bool = False, scheduler: str = "", retries: int = 2) -> ObjectClassifier:
    """The classifier for ``md``: its own Python function when it has one, else the model file; its jobs run
    in-process or on the Dask cluster ``scheduler`` (each failed job retried ``retries`` times)."""
    md = model_to_run(md, allow_custom_code, progress or NullProgress())
    if md.custom_function:
        return custom_object_classifier(md, arguments, device, progress, allow_custom_code, scheduler, retries)
    return ObjectClassifier(md, arguments, device, progress, scheduler=scheduler, retries=retries)

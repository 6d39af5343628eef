# SPDX-License-Identifier: GPL-2.0-or-later
"""The model behind Classify Objects, whichever kind it is: a model file (ONNX, TorchScript, arcgis.learn weights)
or a model's own Python function (:mod:`.function`).  Both are a :class:`ChipModel`: what the block task calls
(``model``), how it turns a batch of chips into labels (``decider``), the batch size, and how a Dask worker opens
the same model (``model_ref``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...arguments.specs import square_batch_size
from ...backends import DeviceRequest, open_backend
from ...engine import augment
from ...errors import InputDataError
from ...model.definition import ModelDefinition
from ...progress import Progress
from .chip_task import ModelChips
from .decode import ObjectDecoder


@dataclass
class ChipModel:
    """A chip classifier of any kind, opened once per run on the client."""

    model: Any  # what the task's decider calls: a Backend, or the function (prf.function_model.FunctionModel)
    decider: Any  # picklable: classify(model, chips, masks) -> [(label, value, confidence, note, probabilities)]
    batch_size: int
    batch_note: str
    model_channels: int | None  # bands the model takes (None: the definition decides)
    description: str
    model_ref: Callable[[str], Any]  # scheduler -> core.engine.cluster.ModelRef
    decoder: ObjectDecoder | None = None  # a model file's score decoder (None for a function: it names labels)

    @property
    def model_seconds(self) -> float:
        return float(getattr(self.model, "model_seconds", 0.0))

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


def batch_rule(requested: int, fixed: int | None) -> tuple[int, str]:
    """ArcGIS's square batch rule, or the model's fixed batch: (batch size, what the log says about it)."""
    batch = square_batch_size(requested)
    note = "" if batch == requested else f" ({requested} requested; not a perfect square, lowered as ArcGIS does)"
    if fixed is not None and fixed != batch:
        return fixed, f" (the model's batch dimension is fixed at {fixed}; {requested} requested)"
    return batch, note


def _input_channels(md: ModelDefinition, backend: Any, nhwc: bool) -> int | None:
    """The bands the model's input declares, after checking it is one image batch of the definition's size."""
    if len(backend.inputs) != 1:
        raise InputDataError(f"The model has {len(backend.inputs)} inputs; an object classifier takes one image batch")
    declared = backend.inputs[0].shape
    if len(declared) == 4:
        want_h, want_w = (declared[1], declared[2]) if nhwc else (declared[2], declared[3])
        if want_h is not None and want_w is not None and (want_h, want_w) != (md.image_height, md.image_width):
            raise InputDataError(f"The model takes {want_w}x{want_h} chips but ImageWidth/ImageHeight say "
                                 f"{md.image_width}x{md.image_height}: fix the model definition")
        return declared[3] if nhwc else declared[1]
    if declared and any(d is not None for d in declared):
        raise InputDataError(f"The model takes an input of shape {backend.inputs[0].shape_text()}, not an image "
                             "batch [batch, bands, height, width]")
    return None


def open_model_chips(md: ModelDefinition, args: dict[str, Any], device: DeviceRequest,
                     progress: Progress) -> ChipModel:
    """The model file as a :class:`ChipModel`: opened, its input checked, logits or probabilities decided once
    (on zeros and on seeded noise of magnitudes 0.1..100, as Classify Pixels does, never per batch)."""
    model_file = md.require_model_file()
    backend = open_backend(model_file, md.model_format_kind or "onnx", device, progress, definition=md.raw)
    try:
        nhwc = md.model_format == "NHWC"
        channels = _input_channels(md, backend, nhwc)
        probe_channels = channels or (len(md.extract_bands) if md.extract_bands else None) or \
            (len(md.extract_band_names) if md.extract_band_names else None) or 3
        batch, note = batch_rule(int(args.get("batch_size") or 1), backend.fixed_batch)
        transforms = [0]
        if args.get("test_time_augmentation"):
            transforms = augment.transform_ids(md.image_width == md.image_height,
                                               md.image_space_used.upper() == "MAP_SPACE")
        n = backend.fixed_batch or 1
        shape = (n, probe_channels, md.image_height, md.image_width)
        plain = ModelChips(None, transforms, nhwc)  # type: ignore[arg-type]  # only its model call, for the probes
        scores = plain.scores(backend, np.zeros(shape, np.float32))
        decoder = ObjectDecoder(md, scores.shape[1], float(args.get("score_threshold", 0.5)), progress)
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-1.0, 2.0, shape)).astype(np.float32)
        decoder.calibrate([scores, plain.scores(backend, noise)])
    except BaseException:
        backend.close()
        raise

    def model_ref(scheduler: str) -> Any:
        from ...engine.cluster import ModelRef

        return ModelRef.for_file(model_file, md.model_format_kind or "onnx", device, definition=md.raw)

    return ChipModel(model=backend, decider=ModelChips(decoder, transforms, nhwc), batch_size=batch, batch_note=note,
                     model_channels=channels, description=backend.describe(), model_ref=model_ref, decoder=decoder)

# SPDX-License-Identifier: GPL-2.0-or-later
"""The model behind Classify Objects, whichever kind it is: a model file (ONNX, TorchScript, arcgis.learn weights)
or a model's own Python function (:mod:`.function`).  Both are a :class:`ChipModel`: what the block task calls
(``model``), how it turns a batch of chips into labels (``decider``), the batch size, and how a Dask worker opens
the same model (``model_ref``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...arguments.specs import BatchDecision
from ...backends import DeviceRequest, open_backend
from ...engine.contract import decide_contract
from ...model.definition import ModelDefinition
from ...progress import Progress
from .chip_task import ModelChips
from .decode import ObjectDecoder


@dataclass
class ChipModel:
    """A chip classifier of any kind, opened once per run on the client."""

    model: Any  # what the task's decider calls: a Backend, or the function (prf.function_model.FunctionModel)
    decider: Any  # picklable: classify(model, chips, masks) -> [(label, value, confidence, note, probabilities)]
    batch: BatchDecision  # the batch size and why it is not the one asked for
    model_channels: int | None  # bands the model takes (None: the definition decides)
    description: str
    model_ref: Callable[[str], Any]  # scheduler -> core.engine.cluster.ModelRef
    decoder: ObjectDecoder | None = None  # a model file's score decoder (None for a function: it names labels)

    @property
    def batch_size(self) -> int:
        return self.batch.used

    @property
    def model_seconds(self) -> float:
        return float(getattr(self.model, "model_seconds", 0.0))

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


def open_model_chips(md: ModelDefinition, args: dict[str, Any], device: DeviceRequest,
                     progress: Progress) -> ChipModel:
    """The model file as a :class:`ChipModel`: opened, its contract decided (:mod:`core.engine.contract`: the
    input checked, the batch, TTA), logits or probabilities decided once on the contract's probe inputs."""
    model_file = md.require_model_file()
    backend = open_backend(model_file, md.model_format_kind or "onnx", device, progress, definition=md.raw,
                           trust=md.code_trust)
    try:
        contract = decide_contract(md, args, "classify_objects", inputs=backend.inputs, outputs=backend.outputs)
        plain = ModelChips(None, contract)  # type: ignore[arg-type]  # only its model call, for the probes
        zeros, noise = contract.probe_inputs()
        scores = plain.scores(backend, zeros)
        decoder = ObjectDecoder(md, scores.shape[1], float(contract.threshold or 0.5), progress)
        decoder.calibrate([scores, plain.scores(backend, noise)])
    except BaseException:
        backend.close()
        raise

    def model_ref(scheduler: str) -> Any:
        from ...engine.cluster import ModelRef

        return ModelRef.for_file(model_file, md.model_format_kind or "onnx", device, definition=md.raw,
                                 trust=md.code_trust)

    return ChipModel(model=backend, decider=ModelChips(decoder, contract), batch=contract.batch,
                     model_channels=contract.declared_bands, description=backend.describe(), model_ref=model_ref,
                     decoder=decoder)

# SPDX-License-Identifier: GPL-2.0-or-later
"""The model contract: what a run feeds the model and how, decided once per run and used by every tool.

A :class:`ModelContract` is built by :func:`decide_contract` from the model definition, the run's resolved
arguments and the shapes the opened model declares.  It fixes, before the first tile is read:

* the input layout (NCHW or NHWC: the definition's ``ModelFormat``, itself read by :mod:`core.model.layout`),
  the bands per image and the number of model inputs (one, or two for a change model given one image per date);
* the tile (or chip) size: ``tile_size`` where the model takes any size, else ImageHeight x ImageWidth, checked
  against what the model declares;
* the batch size (:func:`core.arguments.specs.decide_batch`: ArcGIS's square rule, then a fixed batch dimension,
  which the dialog's table shows the same way);
* test-time augmentation (which dihedral transforms, the merge policy) and, for detectors and classifiers, the
  score threshold and the NMS overlap;
* the probe inputs on which the run decides once whether the model returns logits or probabilities
  (:class:`core.engine.scores.ScoreActivation`): zeros and seeded noise, never a tile of the user's raster.

The contract is frozen and picklable, so a block job can carry it to a Dask worker.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments.specs import BatchDecision, decide_batch
from ..backends import open_backend
from ..backends.base import DeviceRequest, TensorInfo
from ..errors import DLToolsError, InputDataError
from ..model.definition import ModelDefinition
from ..model.layout import band_axis, image_size
from . import augment

#: Tools whose model may take one image per date (two inputs).
_TWO_INPUT_TOOLS = ("classify_pixels", "detect_change")


@dataclass(frozen=True)
class ModelContract:
    """How one run feeds its model, decided once (see the module's docstring).  Built by keyword."""

    tool: str
    layout: str  # "NCHW" or "NHWC"
    tile_height: int
    tile_width: int
    bands: int  # bands per model input
    inputs: int  # 1 (bands stacked) or 2 (one image per date)
    batch: BatchDecision = BatchDecision(requested=1, used=1)
    transforms: tuple[int, ...] = (0,)  # test-time augmentation's dihedral transforms (0 alone: none)
    merge_policy: str = "mean"
    threshold: float | None = None
    nms_overlap: float | None = None
    #: the batch the probe inputs have (a fixed batch dimension, else 1)
    probe_batch: int = 1
    declared_bands: int | None = None  # the bands the model's input declares (None where dynamic)

    @property
    def batch_size(self) -> int:
        return self.batch.used

    @property
    def nhwc(self) -> bool:
        return self.layout == "NHWC"

    @property
    def test_time_augmentation(self) -> bool:
        return len(self.transforms) > 1

    @property
    def channels(self) -> int:
        """Bands the tile reader stacks for one model call (every input's)."""
        return self.bands * self.inputs

    def feeds(self, arr: np.ndarray) -> list[np.ndarray]:
        """The model's inputs for chips ``[B, C, H, W]``: transposed for NHWC, split per date for two inputs."""
        feed = np.ascontiguousarray(arr.transpose(0, 2, 3, 1)) if self.nhwc else arr
        if self.inputs == 1:
            return [feed]
        k = self.bands
        return [feed[..., :k], feed[..., k:]] if self.nhwc else [feed[:, :k], feed[:, k:]]

    def output_nchw(self, out: np.ndarray) -> np.ndarray:
        """A pixel model's image output back to ``[B, C, h, w]`` (NHWC models return channels last)."""
        return out.transpose(0, 3, 1, 2) if self.nhwc and out.ndim == 4 else out

    def probe_inputs(self) -> list[np.ndarray]:
        """Zeros and seeded noise of magnitudes 0.1..100, ``[probe_batch, C, H, W]``: what the run's one
        logits-or-probabilities decision is made on (never a tile of the raster: the batch or the raster's content
        must not change a pixel's class)."""
        shape = (self.probe_batch, self.channels, self.tile_height, self.tile_width)
        rng = np.random.default_rng(0)
        noise = rng.standard_normal(shape) * 10.0 ** rng.uniform(-1.0, 2.0, shape)
        return [np.zeros(shape, np.float32), noise.astype(np.float32)]

    def augmentation_text(self) -> str:
        """``", test-time augmentation x8"`` for the run's set-up line ('' without it)."""
        return f", test-time augmentation x{len(self.transforms)}" if self.test_time_augmentation else ""


def fixed_batch(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo] = ()) -> int | None:
    """The batch size the model insists on: its first input's fixed batch dimension; else 1 where its first
    output's batch is baked in at 1 (a reshape in the graph takes any batch in but returns one); else None."""
    if inputs and inputs[0].shape:
        first = inputs[0].shape[0]
        if isinstance(first, int) and first > 0:
            return first
    if outputs and outputs[0].shape and outputs[0].shape[0] == 1:
        return 1
    return None


def tile_size(md: ModelDefinition, args: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of the model's tiles: ``tile_size`` where given (models of any size), else the definition's."""
    if args.get("tile_size"):
        return int(args["tile_size"]), int(args["tile_size"])
    return md.image_height, md.image_width


def _input_count(tool: str, declared: Sequence[TensorInfo], channels: int | None) -> int:
    n = max(1, len(declared))
    if tool not in _TWO_INPUT_TOOLS:
        if n != 1:
            raise InputDataError(f"The model has {n} inputs; this tool feeds it one image batch")
        return 1
    if n > 2:
        raise InputDataError(f"The model has {n} inputs; only one (bands stacked) or two (one per date) are supported")
    if n == 2 and channels is not None and channels % 2:
        raise InputDataError(f"The model takes two images but {channels} bands were read, which do not split in two")
    return n


def _check_declared(md: ModelDefinition, declared: TensorInfo | None, bands: int | None, size: tuple[int, int],
                    unit: str, tile_given: bool) -> int | None:
    """The model's declared band count (None where dynamic), after checking its shape against the run's."""
    if declared is None or not declared.shape:
        return None
    shape = declared.shape
    if len(shape) != 4:
        if any(d is not None for d in shape):
            raise InputDataError(f"The model takes an input of shape {declared.shape_text()}, not an image batch "
                                 "[batch, bands, height, width]")
        return None
    want_c = shape[band_axis(md.model_format)]
    if want_c is not None and bands is not None and want_c != bands:
        raise InputDataError(f"The model takes {want_c} bands per image but {bands} are read (ExtractBands "
                             f"{md.extract_bands}): fix ExtractBands in the model definition or choose a raster "
                             "with the right bands")
    want_h, want_w = image_size(shape, md.model_format)
    if want_h is not None and want_w is not None and (want_h, want_w) != size:
        if md.supports_variable_tile_size or tile_given:
            raise InputDataError(f"The model takes {want_w}x{want_h} {unit}s only; tile_size {size[1]} is not "
                                 "possible")
        raise InputDataError(f"The model takes {want_w}x{want_h} {unit}s but ImageWidth/ImageHeight say "
                             f"{size[1]}x{size[0]}: fix the model definition")
    return want_c


def decide_contract(md: ModelDefinition, args: dict[str, Any], tool: str, *, inputs: Sequence[TensorInfo],
                    outputs: Sequence[TensorInfo] = (), channels: int | None = None,
                    per_image_outputs: bool = False) -> ModelContract:
    """The run's contract for ``tool`` (classify_pixels, detect_change, detect_objects, classify_objects).

    ``inputs``/``outputs``: what the opened model declares; ``channels``: the bands the run reads (all dates
    stacked), None where the model's declared bands decide (Classify Objects reads as many as the model takes);
    ``per_image_outputs``: the model returns one array per image (a detector's ``[N, 4]`` boxes), so one tile
    per call.
    """
    size = tile_size(md, args)
    n_inputs = _input_count(tool, inputs, channels)
    per_input = channels // n_inputs if channels is not None else None
    unit = "chip" if tool == "classify_objects" else "tile"
    declared_bands = _check_declared(md, inputs[0] if inputs else None, per_input, size, unit,
                                     bool(args.get("tile_size")))
    if per_input is None:
        per_input = declared_bands or len(md.extract_bands or md.extract_band_names or ()) or 3
    fixed = 1 if per_image_outputs else fixed_batch(inputs, outputs)
    transforms: tuple[int, ...] = (0,)
    if args.get("test_time_augmentation"):
        transforms = tuple(augment.transform_ids(size[0] == size[1], md.image_space_used.upper() == "MAP_SPACE"))
    threshold = args.get("score_threshold" if tool == "classify_objects" else "threshold")
    return ModelContract(
        tool=tool, layout=md.model_format, tile_height=size[0], tile_width=size[1], bands=per_input,
        inputs=n_inputs, batch=decide_batch(int(args.get("batch_size") or 1), fixed), transforms=transforms,
        merge_policy=str(args.get("merge_policy") or "mean"),
        threshold=float(threshold) if threshold is not None else None,
        nms_overlap=float(args["nms_overlap"]) if args.get("nms_overlap") is not None else None,
        probe_batch=fixed or 1, declared_bands=declared_bands)


def declared_fixed_batch(md: ModelDefinition) -> int | None:
    """The fixed batch of ``md``'s ONNX model file, for the dialog before a run: its inputs and outputs read by
    ONNX Runtime, nothing run.  None where it takes any batch, and for every other kind of model file (TorchScript
    and torch.export archives are code: they are not opened before the user runs them)."""
    if md.custom_function or md.model_format_kind != "onnx" or md.model_file is None or not md.model_file.is_file():
        return None
    stat = md.model_file.stat()
    return _onnx_fixed_batch(str(md.model_file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _onnx_fixed_batch(path: str, mtime_ns: int, size: int) -> int | None:
    """Cached by file, date and size: the dialog asks on every edit."""
    try:
        backend = open_backend(Path(path), "onnx", DeviceRequest("cpu", threads=1))
    except DLToolsError:
        return None  # the run will say what is wrong with the file
    try:
        return fixed_batch(backend.inputs, backend.outputs)
    finally:
        backend.close()

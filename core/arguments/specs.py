# SPDX-License-Identifier: GPL-2.0-or-later
"""Model arguments: the ArcGIS "Arguments" value table, typed and defaulted.

ArcGIS passes them as ``"padding 64;batch_size 4"`` (scripts) or as a value
table (the dialog); Python callers may pass a dict.  Defaults come from the
model definition (``Padding``, ``BatchSize``, ``Threshold``, ...) and the
tool, following esri-compat.md section 9.  Unknown names are reported with a
warning that lists the known ones, since a typo must not pass unnoticed; a
wrong type is an error naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ArgumentError
from ..flags import parse_bool
from ..model.definition import ModelDefinition
from ..progress import NullProgress, Progress
from ..threads import available_cores

TOOLS = ("classify_pixels", "classify_objects", "detect_change", "detect_objects")


@dataclass
class ArgSpec:
    """One model argument: its type, default and what it does."""

    name: str
    kind: str  # "int", "float", "bool", "str", "choice"
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    fixed: bool = False  # set by the model (e.g. padding with ModelPadding): a given value is ignored


def default_padding(md: ModelDefinition, tile: int) -> int:
    """Padding when the user gives none: the model's, else arcgis.learn's tile//4, else Deepness overlap, else tile//8."""
    if md.model_padding:
        return md.model_padding
    if md.padding is not None:
        return md.padding
    if md.is_arcgis_learn:
        return tile // 4
    if md.tile_overlap_percent is not None:
        return int(round(tile * md.tile_overlap_percent / 100.0 / 2.0))
    return tile // 8


def argument_specs(md: ModelDefinition, tool: str) -> list[ArgSpec]:
    """The arguments a tool accepts for this model, with their defaults."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}")
    tile = min(md.image_height, md.image_width)
    specs: list[ArgSpec] = []
    if tool in ("classify_pixels", "detect_change"):
        if md.supports_variable_tile_size:
            specs.append(ArgSpec("tile_size", "int", md.image_height,
                                 "Tile size in pixels fed to the model (the model accepts any size).", minimum=8))
        if md.model_padding:
            specs.append(ArgSpec("padding", "int", md.model_padding,
                                 "Fixed by the model (ModelPadding): it returns the centre of each tile.", fixed=True))
        else:
            specs.append(ArgSpec("padding", "int", default_padding(md, tile),
                                 "Pixels of context on each side of a tile whose predictions are discarded; "
                                 "at most half the tile size minus one.", minimum=0))
        specs.append(ArgSpec("batch_size", "int", md.batch_size or 4,
                             "Tiles per model call; a number that is not a perfect square is lowered to the "
                             "largest square below it (6 -> 4), as in ArcGIS.", minimum=1))
        specs.append(ArgSpec("edge_fill", "choice", "mirror",
                             "What a tile holds past the raster's edge: mirror (reflect the raster; the last tile "
                             "of a row or column moves inward) or zero (ArcGIS's zero-filled edge tiles).",
                             choices=("mirror", "zero")))
        specs.append(ArgSpec("block_size", "int", 0,
                             "Output pixels on a side of one block of work (0 = automatic, about 2048).",
                             minimum=0))
    if tool == "classify_pixels":
        specs += [
            ArgSpec("threshold", "float", md.threshold if md.threshold is not None else 0.5,
                    "For one-channel (sigmoid) models: probability at or above which a pixel is the class.",
                    minimum=0.0, maximum=1.0),
            ArgSpec("predict_background", "bool", True,
                    "When the model has a background channel, whether a pixel may be classified as background."),
            ArgSpec("test_time_augmentation", "bool", bool(md.test_time_augmentation),
                    "Average the predictions over flips and rotations of each tile (8 in map space, 2 otherwise)."),
            ArgSpec("merge_policy", "choice", "mean", "How test-time augmented predictions are merged.",
                    choices=("mean", "max", "min")),
            ArgSpec("blend", "bool", False,
                    "Blend overlapping tiles with a smooth (Hann) window instead of cutting their centres; "
                    "removes seams when padding is small."),
        ]
    if tool == "classify_objects":
        specs += [
            ArgSpec("batch_size", "int", md.batch_size or 4,
                    "Chips per model call; not a perfect square -> the largest square below it.", minimum=1),
            ArgSpec("padding", "int", 0,
                    "With CropSizeFixed 0: pixels added around the feature's bounding box before resizing.", minimum=0),
            ArgSpec("test_time_augmentation", "bool", bool(md.test_time_augmentation),
                    "Average class probabilities over flips and rotations of each chip."),
            ArgSpec("score_threshold", "float", 0.5,
                    "Multi-label models: every class whose probability reaches this is reported.",
                    minimum=0.0, maximum=1.0),
            ArgSpec("save_chips", "str", "",
                    "A folder: write every chip as a PNG there, named by feature id, to check what the model sees."),
        ]
    if tool == "detect_objects":
        specs += detection_argument_specs(md, tile)
    specs.append(ArgSpec("threads", "int", 0, "CPU threads for the model (0 = all cores).", minimum=0))
    specs.append(ArgSpec("half_precision", "bool", False,
                         "Run the model in float16 on the GPU (PyTorch autocast; an ONNX model only if it is float16 "
                         "already). Refused on the CPU."))
    return specs


def _family_default(md: ModelDefinition, name: str, default: Any) -> Any:
    """An arcgis.learn family's own default (MaskRCNN keeps torchvision's NMS 0.5), else the tool's."""
    family = getattr(md, "arcgis_family", None)
    return family.defaults.get(name, default) if family is not None else default


def detection_argument_specs(md: ModelDefinition, tile: int) -> list[ArgSpec]:
    """Detect Objects' arguments (esri-compat.md 9.1/9.2: arcgis.learn detector defaults)."""
    specs: list[ArgSpec] = []
    if md.supports_variable_tile_size:
        specs.append(ArgSpec("tile_size", "int", md.image_height,
                             "Tile size in pixels fed to the model (the model accepts any size).", minimum=8))
    specs += [
        ArgSpec("padding", "int", default_padding(md, tile),
                "Pixels of context on each side of a tile; objects are kept by the tile whose centre holds them, "
                "so padding should be at least half the size of the largest object.", minimum=0),
        ArgSpec("threshold", "float", md.threshold if md.threshold is not None else 0.5,
                "Detections with a lower confidence (0-1) are dropped.", minimum=0.0, maximum=1.0),
        ArgSpec("nms_overlap", "float", _family_default(md, "nms_overlap", 0.1),
                "Maximum intersection over union of two objects of one class within a tile (and across tile "
                "seams) before the less confident one is dropped.", minimum=0.0, maximum=1.0),
        ArgSpec("batch_size", "int", md.batch_size or 4,
                "Tiles per model call; a number that is not a perfect square is lowered to the largest square "
                "below it, as in ArcGIS.", minimum=1),
        ArgSpec("exclude_pad_detections", "bool", True,
                "Keep only objects whose centre lies in the tile's centre (not in its padding); objects cut by "
                "a tile edge are always kept for the seam merge, which unites their pieces."),
        ArgSpec("test_time_augmentation", "bool", bool(md.test_time_augmentation),
                "Also run flipped (and, in map space, rotated) tiles; boxes are merged and their confidences "
                "averaged."),
        ArgSpec("edge_fill", "choice", "mirror",
                "What a tile holds past the raster's edge: mirror (the last tile of a row or column moves inward) "
                "or zero (ArcGIS's zero-filled edge tiles). Objects are clipped to the raster either way.",
                choices=("mirror", "zero")),
        ArgSpec("block_size", "int", 0, "Output pixels on a side of one block of work (0 = automatic, about 2048).",
                minimum=0),
    ]
    return specs


def parse_arguments_text(text: str | dict[str, Any] | None) -> dict[str, str]:
    """``"padding 64;batch_size 4"`` (or ``name=value``, or a dict) -> ``{name: value}``."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return {str(k).strip(): "" if v is None else str(v) for k, v in text.items()}
    result: dict[str, str] = {}
    for chunk in str(text).replace("\n", ";").split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if "=" in chunk and (" " not in chunk or chunk.index("=") < chunk.index(" ")):
            name, _, value = chunk.partition("=")
        else:
            name, _, value = chunk.partition(" ")
            value = value.strip()
            if value.startswith("="):  # "name = value"
                value = value[1:]
        name = name.strip()
        if not name:
            raise ArgumentError(f"Model argument '{chunk}' has no name: write 'name value', separated by ';'")
        result[name] = value.strip().strip('"').strip("'")
    return result


def _convert(spec: ArgSpec, raw: str) -> Any:
    text = raw.strip()
    if spec.kind == "int":
        try:
            value = float(text)
        except ValueError:
            raise ArgumentError(f"Argument '{spec.name}' must be a whole number, not '{raw}'") from None
        if not value.is_integer():
            raise ArgumentError(f"Argument '{spec.name}' must be a whole number, not '{raw}'")
        out: Any = int(value)
    elif spec.kind == "float":
        try:
            out = float(text)
        except ValueError:
            raise ArgumentError(f"Argument '{spec.name}' must be a number, not '{raw}'") from None
        if not math.isfinite(out):
            raise ArgumentError(f"Argument '{spec.name}' must be a finite number, not '{raw}'")
    elif spec.kind == "bool":
        out = parse_bool(text)
        if out is None:
            raise ArgumentError(f"Argument '{spec.name}' must be True or False, not '{raw}'")
    elif spec.kind == "choice":
        if text.lower() not in spec.choices:
            raise ArgumentError(f"Argument '{spec.name}' must be one of {', '.join(spec.choices)}, not '{raw}'")
        out = text.lower()
    else:
        out = text
    if spec.minimum is not None and out < spec.minimum:
        raise ArgumentError(f"Argument '{spec.name}' must be at least {spec.minimum:g}, not {out}")
    if spec.maximum is not None and out > spec.maximum:
        raise ArgumentError(f"Argument '{spec.name}' must be at most {spec.maximum:g}, not {out}")
    return out


def resolve_arguments(md: ModelDefinition, tool: str, given: str | dict[str, Any] | None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """Merge the user's arguments with the defaults, with typed values."""
    progress = progress or NullProgress()
    specs = {s.name: s for s in argument_specs(md, tool)}
    values = {name: spec.default for name, spec in specs.items()}
    lowered = {name.lower(): name for name in specs}
    for name, raw in parse_arguments_text(given).items():
        key = lowered.get(name.lower())
        if key is None:
            progress.warning(f"Model argument '{name}' is not used by this tool and was ignored; "
                             f"known arguments: {', '.join(sorted(specs))}")
            continue
        spec = specs[key]
        value = _convert(spec, raw)
        if spec.fixed and value != spec.default:
            progress.warning(f"Argument '{key}' is fixed by the model to {spec.default}; {value} was ignored")
            continue
        values[key] = value
    if isinstance(values.get("threads"), int) and values["threads"] > available_cores():
        cores = available_cores()
        progress.warning(f"Argument 'threads' {values['threads']} is more than the {cores} CPU cores this process may "
                         f"use: using {cores}")
        values["threads"] = cores
    return values


def square_batch_size(requested: int) -> int:
    """ArcGIS's rule: a batch size that is not a perfect square becomes the largest square below it."""
    side = max(1, math.isqrt(max(1, requested)))
    return side * side


@dataclass(frozen=True)
class BatchDecision:
    """The batch size a run uses, and why it is not the one asked for ('' when it is)."""

    requested: int
    used: int
    why: str = ""
    fixed: bool = False  # the model's batch dimension decided it

    def log_line(self) -> str:
        """The run's log line for a changed batch size ('' when unchanged)."""
        if self.fixed:
            return f"The model's batch dimension is fixed at {self.used}: using batch size {self.used}"
        return f"batch_size {self.requested} is not a perfect square: using {self.used}" if self.why else ""


def decide_batch(requested: int, fixed: int | None = None) -> BatchDecision:
    """The one batch rule of every tool and of the dialog: ArcGIS's square rule, then the model's fixed batch
    dimension (``fixed``: None when it takes any) over it."""
    used = square_batch_size(requested)
    if fixed is not None and fixed != used:
        return BatchDecision(requested=requested, used=fixed, why=f"the model's batch dimension is fixed at {fixed}",
                             fixed=True)
    why = f"{requested} is not a perfect square: lowered as ArcGIS does" if used != requested else ""
    return BatchDecision(requested=requested, used=used, why=why)

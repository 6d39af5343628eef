# SPDX-License-Identifier: GPL-2.0-or-later
"""Model definitions for plain model files that come without an .emd.

* ONNX: the Deepness plugin's metadata keys (``model_type``, ``class_names``,
  ``resolution``, ``tile_size``/``tiles_size``, ``tiles_overlap``,
  ``standardization_mean``/``_std``, ``seg_thresh``, ``det_conf``,
  ``det_iou_thresh``), else the tile size and class count from the graph.
* TorchScript / torch.export: a JSON model definition stored in the archive as
  the extra file ``dltools.json`` (``torch.jit.save(m, f, _extra_files=...)``),
  else a probe run with a few common band counts.
"""

from __future__ import annotations

import ast
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import DeviceRequest
from ..backends.onnx_backend import OnnxBackend
from ..backends.torch_backend import TorchBackend
from ..errors import BackendError, ModelDefinitionError
from ..trust import CodeTrust, require_trust
from .definition import ClassInfo, ModelDefinition, palette
from .emd import definition_from_emd_data
from .layout import band_axis, image_size, input_layout
from .torch_archive import archive_summary, check_torchscript_archive, embedded_definition
from .validators import float_list

DEFAULT_TILE = 512
_PROBE_BANDS = (3, 4, 1, 6, 8, 12, 13, 2)
_PROBE_TILE = 256

_DEEPNESS_TYPES = {
    "segmentor": "ImageClassification",
    "segmentation": "ImageClassification",
    "detector": "ObjectDetection",
    "detection": "ObjectDetection",
    "regressor": "Regression",
    "regression": "Regression",
    "recognition": "ObjectClassification",
    "classifier": "ObjectClassification",
    "superresolution": "SuperResolution",
}


def meta_value(text: str) -> Any:
    """One ONNX metadata value as data: JSON, else a Python literal (Ultralytics writes ``{0: 'car'}``), else the
    text itself. Never evaluated as code (:func:`ast.literal_eval` reads literals only)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text


def _class_names(value: Any) -> list[str] | None:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = value[0]  # multi-output models: the first output's classes
    if isinstance(value, dict):
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise ModelDefinitionError("ONNX metadata 'class_names' must map class numbers to names") from None
        if keys != list(range(keys[0], keys[0] + len(keys))):
            raise ModelDefinitionError(f"ONNX metadata 'class_names' keys must be consecutive integers, not {keys}")
        lookup = {int(k): str(v) for k, v in value.items()}
        return [lookup[k] for k in keys]
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def _number(meta: dict[str, Any], *keys: str, minimum: float | None = None, maximum: float | None = None,
            below: float | None = None, integer: bool = False) -> float | None:
    """The first of ``keys`` present, as a finite number within its range; a clear error naming the key otherwise."""
    for key in keys:
        if key in meta and meta[key] not in (None, ""):
            raw = meta[key]
            try:
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
            except (TypeError, ValueError):
                raise ModelDefinitionError(f"ONNX metadata '{key}' must be a number, not {raw!r}") from None
            if not math.isfinite(value) or (integer and not value.is_integer()):
                kind = "a whole number" if integer else "a finite number"
                raise ModelDefinitionError(f"ONNX metadata '{key}' must be {kind}, not {raw!r}")
            if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) or \
                    (below is not None and value >= below):
                bounds = []
                if minimum is not None:
                    bounds.append(f"at least {minimum:g}")
                if maximum is not None:
                    bounds.append(f"at most {maximum:g}")
                if below is not None:
                    bounds.append(f"less than {below:g}")
                raise ModelDefinitionError(f"ONNX metadata '{key}' must be {' and '.join(bounds)}, not {raw!r}")
            return value
    return None


def _number_list(meta: dict[str, Any], key: str, positive: bool = False) -> list[float] | None:
    """``standardization_mean``/``_std``: a list of finite numbers (std above 0), or a clear error naming the key."""
    if meta.get(key) is None:
        return None
    values = float_list(meta[key], f"ONNX metadata '{key}'")
    if any(not math.isfinite(v) or (positive and v <= 0) for v in values):
        rule = "finite numbers above 0" if positive else "finite numbers"
        raise ModelDefinitionError(f"ONNX metadata '{key}' must be a list of {rule}, not {meta[key]!r}")
    return values


def _classes_for(channels: int | None, names: list[str] | None, model_type: str) -> list[ClassInfo]:
    if names is None:
        if channels is None:
            return []
        if model_type == "ImageClassification" and channels == 1:
            names = ["background", "class 1"]
        else:
            names = [f"class {i}" for i in range(channels)]
    elif model_type == "ImageClassification" and channels == 1 and len(names) == 1:
        # Deepness: a one-channel (sigmoid) model names only its foreground class; 0 is the background
        names = ["background", names[0]]
    colours = palette(len(names))
    return [ClassInfo(i, n, colours[i]) for i, n in enumerate(names)]


def definition_from_onnx(path: Path) -> ModelDefinition:
    """A definition for a plain .onnx file (Deepness metadata, else the graph's shapes)."""
    backend = OnnxBackend(path, DeviceRequest("cpu", threads=1))
    try:
        meta = {k: meta_value(v) for k, v in backend.metadata.items()}
        inputs, outputs = backend.inputs, backend.outputs
    finally:
        backend.close()
    if not inputs:
        raise ModelDefinitionError(f"ONNX model '{path.name}' has no inputs")
    shape = inputs[0].shape
    if len(shape) != 4:
        raise ModelDefinitionError(
            f"ONNX model '{path.name}' takes an input of shape {inputs[0].shape_text()}, not an image batch "
            "[batch, bands, height, width]: write an .emd that describes it")
    model_format = input_layout(shape) or "NCHW"
    bands = shape[band_axis(model_format)]
    h, w = image_size(shape, model_format)
    warnings: list[str] = []

    declared_tile = _number(meta, "tile_size", "tiles_size", minimum=1, maximum=65536, integer=True)
    imgsz = meta.get("imgsz")  # Ultralytics exports: [height, width]
    if declared_tile is None and isinstance(imgsz, list) and imgsz and \
            all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65536 for v in imgsz):
        declared_tile = float(imgsz[0])
    tile = declared_tile
    if h is not None and h == w:
        if declared_tile is not None and int(declared_tile) != h:
            warnings.append(f"The metadata says tiles of {int(declared_tile)} pixels but the model only takes {h}: "
                            f"using {h}")
        tile = h
    if tile is None:
        tile = DEFAULT_TILE
        warnings.append(f"The model takes any tile size and says none: using {DEFAULT_TILE} pixels")

    raw_type = str(meta.get("model_type", "")).strip().lower()
    if raw_type:
        if raw_type not in _DEEPNESS_TYPES:
            raise ModelDefinitionError(f"ONNX metadata model_type '{meta['model_type']}' is unknown; expected one of "
                                       "Segmentor, Detector, Regressor, Recognition, Superresolution")
        model_type = _DEEPNESS_TYPES[raw_type]
    elif str(meta.get("task", "")).strip().lower() in ("detect", "obb", "segment"):
        model_type = "ObjectDetection"  # an Ultralytics YOLO export (task, names, imgsz, stride metadata)
    else:
        out_rank = len(outputs[0].shape) if outputs else 0
        model_type = "ObjectClassification" if out_rank == 2 else "ImageClassification"
    out_shape = outputs[0].shape if outputs else ()
    channels = out_shape[1] if len(out_shape) == 4 else (out_shape[1] if len(out_shape) == 2 else None)
    if len(out_shape) == 3 and model_type == "ImageClassification":
        channels = 1  # [B, H, W]: one probability (or class) per pixel
    names = _class_names(meta.get("class_names", meta.get("names")))
    classes = _classes_for(channels, names, model_type) if model_type != "Regression" else []

    deepness = bool(meta)
    mean = _number_list(meta, "standardization_mean")
    std = _number_list(meta, "standardization_std", positive=True)
    if mean is not None and std is not None and len(mean) != len(std):
        raise ModelDefinitionError(f"ONNX metadata 'standardization_mean' ({len(mean)} values) and "
                                   f"'standardization_std' ({len(std)} values) differ in length")
    if not deepness:
        warnings.append("The model carries no normalisation metadata: pixel values are passed unchanged. "
                        "Write an .emd with DataRange or NormalizationStats if the model expects scaled input")
    md = ModelDefinition(
        source=str(path), origin="onnx", raw={}, model_type=model_type,
        image_height=int(tile), image_width=int(tile),
        framework="ONNX", model_file=Path(os.path.abspath(path)), model_file_text=path.name, model_format_kind="onnx",
        base_dir=Path(os.path.abspath(path.parent)),
        extract_bands=list(range(bands)) if bands else None,
        standardization_mean=mean,
        standardization_std=std,
        divide_by_255=deepness,
        batch_size=shape[0] if isinstance(shape[0], int) else None,
        threshold=_number(meta, "seg_thresh", "det_conf", minimum=0.0, maximum=1.0),
        classes=classes,
        model_format=model_format,
        tile_overlap_percent=_number(meta, "tiles_overlap", minimum=0.0, below=100.0),
        resolution_cm=_number(meta, "resolution", minimum=0.0),
        deepness_metadata=meta,
        warnings=warnings,
        supports_variable_tile_size=h is None,
    )
    return md


def definition_from_torch(path: Path, trust: CodeTrust | None = None) -> ModelDefinition:
    """A definition for a plain TorchScript/torch.export file: the ``dltools.json`` it stores (read as data from the
    zip, the program is not opened), else a probe run, which needs the user's ``trust``: the file is a program."""
    exported = path.suffix.lower() == ".pt2"
    if not exported:
        check_torchscript_archive(path)
    elif not zipfile.is_zipfile(path):
        raise ModelDefinitionError(f"'{path.name}' is not a torch.export program (torch.export.save writes a zip)")
    kind = "torch_export" if exported else "torchscript"
    declared = embedded_definition(path)
    if declared is not None:
        data = dict(declared)
        data.setdefault("Framework", "PyTorch")
        data["ModelFile"] = os.path.abspath(path)
        md = definition_from_emd_data(data, source=str(path), origin="torchscript", base_dir=Path(os.path.abspath(path.parent)))
        md.model_format_kind = kind
        return md
    require_trust(path, kind, trust, f"It holds {archive_summary(path)} but no model definition (dltools.json), "
                                     "and finding its input and classes would mean running it, so it was not opened")
    return _probe_torch(path, kind, trust)


def _probe_torch(path: Path, kind: str, trust: CodeTrust | None) -> ModelDefinition:
    backend = TorchBackend(path, DeviceRequest("cpu", threads=1), exported=(kind == "torch_export"), trust=trust)
    try:
        for bands in _PROBE_BANDS:
            try:
                out = backend.run(np.zeros((1, bands, _PROBE_TILE, _PROBE_TILE), np.float32))[0]
            except BackendError:
                continue
            break
        else:
            raise ModelDefinitionError(
                f"'{path.name}' declares no input shape and did not run on a {_PROBE_TILE}x{_PROBE_TILE} tile with "
                f"{', '.join(map(str, _PROBE_BANDS))} bands: write an .emd for it (ImageHeight, ImageWidth, "
                "ExtractBands, Classes), or store one in the archive as the extra file dltools.json")
    finally:
        backend.close()
    if out.ndim == 4 and out.shape[2] > 1:
        model_type, channels = "ImageClassification", out.shape[1]
    elif out.ndim == 3:
        model_type, channels = "ImageClassification", 1
    elif out.ndim == 2:
        model_type, channels = "ObjectClassification", out.shape[1]
    else:
        raise ModelDefinitionError(f"'{path.name}' returned an output of shape {list(out.shape)} that matches no "
                                   "supported model type: write an .emd for it")
    return ModelDefinition(
        source=str(path), origin="torchscript", raw={}, model_type=model_type,
        image_height=_PROBE_TILE, image_width=_PROBE_TILE, framework="PyTorch",
        model_file=Path(os.path.abspath(path)), model_file_text=path.name, model_format_kind=kind,
        base_dir=Path(os.path.abspath(path.parent)),
        extract_bands=list(range(bands)), classes=_classes_for(channels, None, model_type),
        supports_variable_tile_size=True,
        warnings=[f"No input shape declared: a probe found {bands} bands; tiles of {_PROBE_TILE} pixels are used. "
                  "Pixel values are passed unchanged"],
    )

# SPDX-License-Identifier: GPL-2.0-or-later
"""Esri model definition (``.emd``) keys -> a validated :class:`~.definition.ModelDefinition`.

Every reader ends here: an .emd file or its JSON text, a package's .emd, an .ecd mapped onto .emd keys
(:mod:`.ecd`), the ``dltools.json`` a TorchScript archive carries (:mod:`.probe`).  So every
check and message is the same whatever the model came in.  Keys are read case-sensitively, as Esri's
Python raster functions do; keys we do not use are kept in :attr:`ModelDefinition.extra`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.arcgis_learn.families import names_a_family, resolve_family
from ..errors import ModelDefinitionError
from .definition import (
    ONNX_SUFFIXES,
    TORCH_EXPORT_SUFFIXES,
    TORCHSCRIPT_SUFFIXES,
    ModelDefinition,
    NormalizationStats,
)
from .torch_archive import check_torchscript_archive
from .validators import (
    as_bool,
    as_flag,
    as_float,
    as_int,
    check_model_padding,
    float_list,
    parse_classes,
    require_known_model_type,
)
from .validators import data_range as valid_data_range

#: The largest tile side an .emd may declare (a bigger one is a typo or an attack on memory).
MAX_TILE = 65536

#: Frameworks the plugin cannot run, with what the user can do instead.
_UNSUPPORTED_FRAMEWORKS = {
    "tensorflow": "convert the model to ONNX (tf2onnx) and set Framework to ONNX",
    "keras": "convert the model to ONNX (tf2onnx, which reads Keras .h5) and set Framework to ONNX",
    "cntk": "export the model to ONNX (CNTK's Function.save with format=C.ModelFormat.ONNX) "
    "and set Framework to ONNX",
    "tflite": "convert the model to ONNX (tf2onnx --tflite) and set Framework to ONNX",
}

#: Keys this module interprets; everything else goes to ``extra``.
_KNOWN_KEYS = {
    "Framework", "ModelConfiguration", "ModelType", "ModelFile", "InferenceFunction",
    "ImageHeight", "ImageWidth", "ExtractBands", "DataRange", "NormalizationStats",
    "ModelPadding", "BatchSize", "Padding", "Threshold", "Classes", "CropSizeFixed",
    "BlackenAroundFeature", "ImageSpaceUsed", "SupportsVariableTileSize",
    "ArcGISLearnVersion", "IsMultispectral", "ModelFormat", "MinCellSize", "MaxCellSize",
    "ModelName", "Version", "test_time_augmentation", "MetaDataMode", "ignore_mapped_class",
    "TorchScript", "QGISPlugin",
}

_STATS_KEYS = (
    "band_min_values", "band_max_values", "band_mean_values", "band_std_values",
    "scaled_min_values", "scaled_max_values", "scaled_mean_values", "scaled_std_values",
)


def _normalization_stats(value: Any) -> NormalizationStats | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ModelDefinitionError("Key 'NormalizationStats' must be an object of per-band lists")
    lists: dict[str, list[float] | None] = {}
    for key in _STATS_KEYS:
        lists[key] = float_list(value[key], f"NormalizationStats.{key}") if value.get(key) is not None else None
    if lists["band_min_values"] is None or lists["band_max_values"] is None:
        raise ModelDefinitionError("NormalizationStats needs band_min_values and band_max_values")
    return NormalizationStats(**lists)  # type: ignore[arg-type]


def _framework_kind(framework: str | None, model_file: str | None, data: dict[str, Any]) -> str | None:
    """Which backend runs this definition, or a clear error if none can."""
    fw = (framework or "").strip()
    low = fw.lower()
    suffix = Path(model_file.replace("\\", "/")).suffix.lower() if model_file else ""
    if low in _UNSUPPORTED_FRAMEWORKS:
        raise ModelDefinitionError(f"Framework '{fw}' is not supported: {_UNSUPPORTED_FRAMEWORKS[low]}")
    if low in ("onnx", "onnxruntime"):
        return "onnx"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in TORCH_EXPORT_SUFFIXES:
        return "torch_export"
    if low in ("pytorch", "torchscript", "torch") or low.startswith("arcgis.learn") or not fw:
        if suffix in TORCHSCRIPT_SUFFIXES or suffix == "":
            return "torchscript"
    if suffix in (".h5", ".keras"):
        raise ModelDefinitionError(
            f"ModelFile '{model_file}' is a Keras/HDF5 file, which is not supported: "
            "convert the model to ONNX (tf2onnx) and set Framework to ONNX")
    if suffix in (".pb",):
        raise ModelDefinitionError(
            f"ModelFile '{model_file}' is a TensorFlow graph, which is not supported: "
            "convert the model to ONNX (tf2onnx) and set Framework to ONNX")
    if suffix in (".model", ".dnn"):
        raise ModelDefinitionError(
            f"ModelFile '{model_file}' is a CNTK model, which is not supported: export it to ONNX and set Framework to ONNX")
    if fw:
        raise ModelDefinitionError(
            f"Framework '{fw}' with ModelFile '{model_file}' is not supported: the plugin runs ONNX (.onnx) and "
            "PyTorch TorchScript (.pt/.pth/.torchscript) or torch.export (.pt2) models")
    return None


def local_function_file(inference_function: str | None, base_dir: Path | None) -> Path | None:
    """The ``.py`` file ``InferenceFunction`` names next to the definition, or None.

    None too for Pro's bundled ``[Functions]System\\...`` form, which only exists inside ArcGIS.
    """
    candidate = _function_candidate(inference_function, base_dir)
    return candidate if candidate is not None and candidate.is_file() else None


def _function_candidate(inference_function: str | None, base_dir: Path | None) -> Path | None:
    """Where ``InferenceFunction`` points (whatever is there), or None for no local ``.py`` name."""
    name = (inference_function or "").strip()
    if not name or name.lower().startswith("[functions]") or not name.lower().endswith(".py"):
        return None
    candidate = Path(name.replace("\\", "/")).expanduser()
    if not candidate.is_absolute():
        if base_dir is None:
            return None
        candidate = base_dir / candidate
    return candidate


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a folder", "a pipe, socket or device"), else None.
    Only its status is read: opening a pipe or a device could wait for ever or never end."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if not stat.S_ISREG(mode):
        return "a pipe, socket or device (reading it could wait for ever or never end)"
    return None


def _is_arcgis_learn_weights(framework: str | None, model_file: str, data: dict[str, Any]) -> bool:
    """A ``.pth`` of an arcgis.learn definition: a state_dict to load into a rebuilt network, not TorchScript."""
    fw = (framework or "").lower()
    if not model_file.lower().endswith(".pth"):
        return False
    if fw.startswith("arcgis.learn") or (not fw and data.get("ArcGISLearnVersion") is not None):
        return True
    return fw in ("pytorch", "") and names_a_family(data)


def _resolve_model_file(model_file: str, base_dir: Path | None) -> Path | None:
    normalised = model_file.replace("\\", "/")
    candidate = Path(normalised).expanduser()
    if candidate.is_absolute():
        return candidate
    if base_dir is None:
        return None
    # absolute, not resolved: a path through a symbolic link stays the one the user gave
    return Path(os.path.normpath(os.path.abspath(base_dir / normalised)))


def _arcgis_torchscript_file(data: dict[str, Any]) -> str | None:
    """arcgis.learn saves ``"TorchScript": {"CPU": ..., "GPU": ...}`` next to its .pth: prefer it."""
    ts = data.get("TorchScript")
    if isinstance(ts, dict):
        for key in ("CPU", "GPU"):
            if isinstance(ts.get(key), str) and ts[key]:
                return ts[key]
    return None


def _model_type(data: dict[str, Any]) -> str:
    model_type = data.get("ModelType")
    if model_type is None:
        raise ModelDefinitionError("Key 'ModelType' is missing from the model definition (e.g. \"ImageClassification\")")
    if not isinstance(model_type, str):
        raise ModelDefinitionError(f"Key 'ModelType' must be text, not {json.dumps(model_type)}")
    if model_type == "ObjectionDetection":  # misspelt in Esri's own documentation sample
        model_type = "ObjectDetection"
    require_known_model_type(model_type, f"ModelType '{model_type}'")
    return model_type


def _tile_size(data: dict[str, Any]) -> tuple[int, int]:
    height = as_int(data, "ImageHeight", minimum=1, required=True)
    width = as_int(data, "ImageWidth", minimum=1, required=True)
    assert height is not None and width is not None
    for key, size in (("ImageHeight", height), ("ImageWidth", width)):
        if size > MAX_TILE:
            raise ModelDefinitionError(f"Key '{key}' must be at most {MAX_TILE} pixels, not {size}")
    return height, width


def _configuration_name(data: dict[str, Any]) -> str | None:
    config = data.get("ModelConfiguration")
    if isinstance(config, dict):
        name = config.get("Name")
        return str(name) if name is not None else None
    if config is None or isinstance(config, str):
        return config
    raise ModelDefinitionError("Key 'ModelConfiguration' must be text or an object with a 'Name'")


def _text_key(data: dict[str, Any], key: str, what: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ModelDefinitionError(f"Key '{key}' must be {what}, not {json.dumps(value)}")
    return value


@dataclass
class _Runner:
    """What runs the model: a model file of a kind the plugin runs, or the model's own Python function."""

    kind: str | None
    model_path: Path | None
    custom_function: bool


def _native_problem(model_file_text: str | None, model_path: Path | None, kind: str | None, origin: str,
                    inference_function: str | None) -> ModelDefinitionError | None:
    """Why the plugin cannot run the model file itself (None when it can)."""
    if not model_file_text:
        what = (f", and its Python raster function '{inference_function}' is not beside it" if inference_function
                else "")
        return ModelDefinitionError(
            f"The model definition has no ModelFile{what}: add \"ModelFile\" (an ONNX or TorchScript model file) and "
            "\"Framework\", or put the model's own Python raster function (InferenceFunction) next to the .emd")
    if model_path is None:
        return ModelDefinitionError(
            f"ModelFile '{model_file_text}' is relative, and a model definition given as JSON text has no folder to "
            "resolve it against: give an absolute path in ModelFile, or pass the .emd file")
    if not model_path.is_file():
        special = not_regular(model_path)
        if special:
            return ModelDefinitionError(f"ModelFile '{model_file_text}' ({model_path}) is {special}, not a model "
                                        "file: give the model file itself")
        where = "next to the .emd" if origin in ("emd", "dlpk") else "at that path"
        return ModelDefinitionError(f"ModelFile '{model_file_text}' not found {where} ({model_path})")
    if kind == "torchscript":
        try:
            check_torchscript_archive(model_path, model_file_text)
        except ModelDefinitionError as exc:
            return exc
    return None


def _runner(data: dict[str, Any], framework: str | None, model_file_text: str | None, family: Any,
            inference_function: str | None, base_dir: Path | None, origin: str, check_file: bool) -> _Runner:
    """The model file's kind and path; where the plugin cannot run that file but the model brings its own Python
    function beside the definition, the function runs it (when the user allows)."""
    kind, problem = None, None
    if model_file_text and family is not None:
        kind = "arcgis_learn"
    elif model_file_text:
        try:
            kind = _framework_kind(framework, model_file_text, data)
        except ModelDefinitionError as exc:  # a framework the plugin does not run: perhaps the function does
            problem = exc
    model_path = _resolve_model_file(model_file_text, base_dir) if model_file_text else None
    if problem is None and check_file:
        problem = _native_problem(model_file_text, model_path, kind, origin, inference_function)
    local_function = local_function_file(inference_function, base_dir)
    if problem is not None:
        if local_function is None:
            named = _function_candidate(inference_function, base_dir)
            special = not_regular(named) if named is not None else None
            if special:
                raise ModelDefinitionError(f"InferenceFunction '{inference_function}' ({named}) is {special}, not a "
                                           "Python file: give the .py file itself")
            raise problem
        return _Runner(kind=None, model_path=model_path, custom_function=True)
    return _Runner(kind=kind, model_path=model_path, custom_function=kind is None and local_function is not None)


def definition_from_emd_data(data: dict[str, Any], *, source: str, origin: str, base_dir: Path | None,
                             check_file: bool = True) -> ModelDefinition:
    """Validate the .emd keys and build a :class:`ModelDefinition`."""
    model_type = _model_type(data)
    height, width = _tile_size(data)
    framework = _text_key(data, "Framework", "text")
    model_file_text = _text_key(data, "ModelFile", "a file name")
    ts_file = _arcgis_torchscript_file(data)
    warnings: list[str] = []
    if ts_file and (model_file_text or "").lower().endswith(".pth"):
        warnings.append(f"Using the TorchScript file '{ts_file}' the definition lists instead of '{model_file_text}'")
        model_file_text = ts_file
    inference_function = data.get("InferenceFunction")
    if inference_function is not None and not isinstance(inference_function, str):
        raise ModelDefinitionError("Key 'InferenceFunction' must be a file name")
    # arcgis.learn weights (.pth): the network is rebuilt from ModelName, never from the package's Python (its
    # ArcGIS*.py needs arcpy and arcgis.learn, its ModelConfiguration.py is code): a family that cannot be
    # rebuilt is refused here, before any fallback to the model's own function
    family = None
    if model_file_text and _is_arcgis_learn_weights(framework, model_file_text, data):
        family = resolve_family(data)
    runner = _runner(data, framework, model_file_text, family, inference_function, base_dir, origin, check_file)
    extract_bands, extract_band_names = _extract_bands(data)
    md = ModelDefinition(
        source=source,
        origin=origin,
        raw=data,
        model_type=model_type,
        image_height=height,
        image_width=width,
        framework=framework,
        model_configuration=_configuration_name(data),
        model_name=str(data["ModelName"]) if data.get("ModelName") is not None else None,
        model_file=runner.model_path,
        model_file_text=model_file_text,
        model_format_kind=runner.kind,
        inference_function=inference_function,
        custom_function=runner.custom_function,
        base_dir=base_dir,
        extract_bands=extract_bands,
        extract_band_names=extract_band_names,
        data_range=valid_data_range(data["DataRange"], "Key 'DataRange'") if data.get("DataRange") is not None
        else None,
        normalization_stats=_normalization_stats(data.get("NormalizationStats")),
        **_plugin_keys(data),
        model_padding=as_int(data, "ModelPadding", minimum=0, default=0) or 0,
        batch_size=as_int(data, "BatchSize", minimum=1),
        padding=as_int(data, "Padding", minimum=0),
        threshold=as_float(data, "Threshold", minimum=0.0, maximum=1.0),
        classes=parse_classes(data.get("Classes")),
        crop_size_fixed=as_flag(data, "CropSizeFixed"),
        blacken_around_feature=as_flag(data, "BlackenAroundFeature"),
        image_space_used=str(data.get("ImageSpaceUsed") or "MAP_SPACE"),
        arcgis_family=family,
        supports_variable_tile_size=as_bool(data.get("SupportsVariableTileSize", False), "Key 'SupportsVariableTileSize'"),
        arcgis_learn_version=str(data["ArcGISLearnVersion"]) if data.get("ArcGISLearnVersion") is not None else None,
        is_multispectral=as_bool(data.get("IsMultispectral", False), "Key 'IsMultispectral'"),
        model_format=_model_format(data),
        min_cell_size=data.get("MinCellSize") if isinstance(data.get("MinCellSize"), dict) else None,
        max_cell_size=data.get("MaxCellSize") if isinstance(data.get("MaxCellSize"), dict) else None,
        test_time_augmentation=(as_bool(data["test_time_augmentation"], "Key 'test_time_augmentation'")
                                if data.get("test_time_augmentation") is not None else None),
        meta_data_mode=str(data["MetaDataMode"]) if data.get("MetaDataMode") is not None else None,
        ignore_mapped_class=_ignore_mapped_class(data, family),
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        warnings=warnings,
    )
    if family is not None and family.task == "detection" and md.threshold is None:
        md.threshold = float(family.defaults["threshold"])
    _check_sizes(md)
    return md


def _extract_bands(data: dict[str, Any]) -> tuple[list[int] | None, list[str] | None]:
    """ExtractBands as 0-based indexes, or as band names: (indexes, names), one of them None."""
    eb = data.get("ExtractBands")
    if eb is None:
        return None, None
    if not isinstance(eb, list) or not eb:
        raise ModelDefinitionError("Key 'ExtractBands' must be a non-empty list of 0-based band indexes or band names")
    if all(isinstance(b, str) and not b.strip().lstrip("-").isdigit() for b in eb):
        return None, [b.strip() for b in eb]
    extract_bands = []
    for b in eb:
        idx = int(b) if not isinstance(b, bool) and isinstance(b, (int, float, str)) and _whole(b) else None
        if idx is None:
            raise ModelDefinitionError(f"ExtractBands entry {json.dumps(b)} is not a band index")
        if idx < 0:
            raise ModelDefinitionError(f"ExtractBands entry {idx} is negative: indexes are 0-based")
        extract_bands.append(idx)
    return extract_bands, None


def _whole(value: Any) -> bool:
    """Whether ``value`` (a number or its text) is a whole number."""
    try:
        return float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        return False


def _model_format(data: dict[str, Any]) -> str:
    model_format = str(data.get("ModelFormat") or "NCHW").upper()
    if model_format not in ("NCHW", "NHWC"):
        raise ModelDefinitionError(f"Key 'ModelFormat' must be NCHW or NHWC, not '{data.get('ModelFormat')}'")
    return model_format


def _ignore_mapped_class(data: dict[str, Any], family: Any) -> list[int]:
    ignore = data.get("ignore_mapped_class") or []
    params = data.get("ModelParameters")
    if not ignore and family is not None and isinstance(params, dict):
        ignore = params.get("ignore_mapped_class") or []
    if not isinstance(ignore, list):
        raise ModelDefinitionError("Key 'ignore_mapped_class' must be a list of channel indexes")
    for item in ignore:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not float(item).is_integer() or item < 0:
            raise ModelDefinitionError(f"Key 'ignore_mapped_class' must be a list of channel indexes (whole numbers, "
                                       f"0 or more); found {json.dumps(item)}")
    return [int(i) for i in ignore]


def _plugin_keys(data: dict[str, Any]) -> dict[str, Any]:
    """The plugin's own QGISPlugin keys: standardization_mean/std, divide_by_255."""
    plugin_keys = data.get("QGISPlugin") if isinstance(data.get("QGISPlugin"), dict) else {}
    mean = plugin_keys.get("standardization_mean")
    std = plugin_keys.get("standardization_std")
    return {"standardization_mean": float_list(mean, "QGISPlugin.standardization_mean") if mean is not None else None,
            "standardization_std": float_list(std, "QGISPlugin.standardization_std") if std is not None else None,
            "divide_by_255": bool(plugin_keys.get("divide_by_255", False))}


def _check_sizes(md: ModelDefinition) -> None:
    check_model_padding(md.model_padding, md.image_height, md.image_width, "ModelPadding")
    if md.padding is not None:
        check_model_padding(md.padding, md.image_height, md.image_width, "Key 'Padding'")
    if md.standardization_std is not None and any(v <= 0 for v in md.standardization_std):
        raise ModelDefinitionError(f"QGISPlugin.standardization_std values must be above 0, not "
                                   f"{md.standardization_std}")
    if md.standardization_mean is not None and md.standardization_std is not None and \
            len(md.standardization_mean) != len(md.standardization_std):
        raise ModelDefinitionError("QGISPlugin.standardization_mean and standardization_std differ in length")

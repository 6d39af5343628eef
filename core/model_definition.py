# SPDX-License-Identifier: GPL-2.0-or-later
"""Read any supported model description into one validated :class:`ModelDefinition`.

Accepted (see ``../shared/reference/esri-compat.md`` sections 5 and 6):

1. an Esri model definition file (``.emd``, UTF-8 JSON, a BOM tolerated);
2. the same JSON pasted as text (the MODEL parameter takes either, like ArcGIS);
3. a deep learning package (``.dlpk``), extracted safely by :mod:`.packages`;
4. an ``.ecd`` written by *Deep Learning Model To Ecd* (:mod:`.ecd`);
5. a plain ONNX file: the Deepness metadata keys, else shapes from the graph;
6. a plain TorchScript / ``torch.export`` file: a ``dltools.json`` extra file
   declaring the input, else a probe with a few common band counts.

Keys are read case-sensitively, as Esri's Python raster functions do.  Keys we
do not use are kept in :attr:`ModelDefinition.extra`, never rejected.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelDefinitionError

#: Model types the plugin knows; ``Regression`` comes from Deepness metadata.
KNOWN_MODEL_TYPES = (
    "ImageClassification",
    "ObjectDetection",
    "InstanceDetection",
    "ObjectClassification",
    "ImageCaptioner",
    "PanopticSegmenter",
    "CycleGAN",
    "Pix2Pix",
    "SuperResolution",
    "Regression",
)

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts", ".jit")
TORCH_EXPORT_SUFFIXES = (".pt2",)

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


@dataclass
class ClassInfo:
    """One entry of ``Classes``: the pixel/label value, its name and colour."""

    value: int
    name: str
    color: tuple[int, int, int] | None = None


@dataclass
class NormalizationStats:
    """arcgis.learn ``NormalizationStats``: one value per raster band in each list."""

    band_min_values: list[float]
    band_max_values: list[float]
    scaled_mean_values: list[float] | None = None
    scaled_std_values: list[float] | None = None
    band_mean_values: list[float] | None = None
    band_std_values: list[float] | None = None
    scaled_min_values: list[float] | None = None
    scaled_max_values: list[float] | None = None


@dataclass
class ModelDefinition:
    """Everything the tools need to know about a model, validated and typed."""

    source: str
    origin: str  # "emd", "json", "dlpk", "ecd", "onnx", "torchscript"
    raw: dict[str, Any]
    model_type: str
    image_height: int
    image_width: int
    framework: str | None = None
    model_configuration: str | None = None
    model_name: str | None = None
    model_file: Path | None = None
    model_file_text: str | None = None
    model_format_kind: str | None = None  # "onnx", "torchscript" or "torch_export"
    inference_function: str | None = None
    base_dir: Path | None = None
    package_path: Path | None = None
    extract_bands: list[int] | None = None
    extract_band_names: list[str] | None = None
    data_range: tuple[float, float] | None = None
    normalization_stats: NormalizationStats | None = None
    standardization_mean: list[float] | None = None
    standardization_std: list[float] | None = None
    divide_by_255: bool = False
    model_padding: int = 0
    batch_size: int | None = None
    padding: int | None = None
    threshold: float | None = None
    classes: list[ClassInfo] = field(default_factory=list)
    crop_size_fixed: int | None = None
    blacken_around_feature: int | None = None
    image_space_used: str = "MAP_SPACE"
    supports_variable_tile_size: bool = False
    arcgis_learn_version: str | None = None
    is_multispectral: bool = False
    model_format: str = "NCHW"
    min_cell_size: dict[str, Any] | None = None
    max_cell_size: dict[str, Any] | None = None
    test_time_augmentation: bool | None = None
    meta_data_mode: str | None = None
    ignore_mapped_class: list[int] = field(default_factory=list)
    tile_overlap_percent: float | None = None
    resolution_cm: float | None = None
    deepness_metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_arcgis_learn(self) -> bool:
        """arcgis.learn models follow the floor-square batch rule and ImageNet defaults."""
        fw = (self.framework or "").lower()
        return fw.startswith("arcgis.learn") or self.arcgis_learn_version is not None

    @property
    def class_by_value(self) -> dict[int, ClassInfo]:
        return {c.value: c for c in self.classes}

    @property
    def is_multilabel(self) -> bool:
        return (self.meta_data_mode or "") == "MultiLabeled_Tiles"

    def require_model_file(self) -> Path:
        """The resolved model file, or a clear error saying why there is none."""
        if self.model_file is None:
            if self.model_file_text and self.base_dir is None:
                raise ModelDefinitionError(
                    f"ModelFile '{self.model_file_text}' is relative, and a model definition given as JSON text "
                    "has no folder to resolve it against: give an absolute path in ModelFile, or pass the .emd file"
                )
            raise ModelDefinitionError("The model definition has no ModelFile: there is no model to run")
        return self.model_file


# ----------------------------------------------------------------------------------------------
# entry point


def load_model_definition(model: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                          check_file: bool = True) -> ModelDefinition:
    """Turn what the user gave as MODEL (a path or JSON text) into a :class:`ModelDefinition`.

    ``cache_dir`` is where packages are extracted (a per-package folder below it);
    ``check_file`` makes a missing or unsupported model file an error (Describe Model
    turns it off for JSON text so that a definition can be inspected before its file exists).
    """
    text = str(model).strip()
    if not text:
        raise ModelDefinitionError("No model was given: pass an .emd, .dlpk, .onnx or TorchScript file, or the .emd JSON text")
    if text.startswith("{"):
        data = _parse_json(text, "the model definition JSON text")
        if "EsriClassifierDefinitionFile" in data:
            from .ecd import definition_from_ecd_data

            return definition_from_ecd_data(data, source="JSON text", base_dir=None, check_file=check_file)
        return definition_from_emd_data(data, source="JSON text", origin="json", base_dir=None, check_file=check_file)

    path = Path(text).expanduser()
    if not path.exists():
        raise ModelDefinitionError(f"Model file '{path}' does not exist")
    if path.is_dir():
        raise ModelDefinitionError(f"Model '{path}' is a folder: pass the .emd or .dlpk file inside it")
    suffix = path.suffix.lower()
    if suffix == ".emd" or suffix == ".json":
        data = _parse_json(_read_text(path), f"model definition '{path.name}'")
        return definition_from_emd_data(data, source=str(path), origin="emd", base_dir=path.parent.resolve(),
                                        check_file=check_file)
    if suffix == ".dlpk":
        from .packages import extract_package

        emd_path = extract_package(path, cache_dir=cache_dir)
        data = _parse_json(_read_text(emd_path), f"model definition '{emd_path.name}' in package '{path.name}'")
        md = definition_from_emd_data(data, source=str(path), origin="dlpk", base_dir=emd_path.parent,
                                      check_file=check_file)
        md.package_path = path.resolve()
        return md
    if suffix == ".ecd":
        from .ecd import definition_from_ecd_data

        data = _parse_json(_read_text(path), f"classifier definition '{path.name}'")
        return definition_from_ecd_data(data, source=str(path), base_dir=path.parent.resolve(), check_file=check_file)
    if suffix in ONNX_SUFFIXES:
        from .model_probe import definition_from_onnx

        return definition_from_onnx(path)
    if suffix in TORCHSCRIPT_SUFFIXES + TORCH_EXPORT_SUFFIXES:
        from .model_probe import definition_from_torch

        return definition_from_torch(path)
    raise ModelDefinitionError(
        f"Model '{path.name}' has an unknown extension '{suffix}': expected .emd, .dlpk, .ecd, .onnx, "
        ".pt/.pth/.torchscript (TorchScript) or .pt2 (torch.export)"
    )


# ----------------------------------------------------------------------------------------------
# parsing helpers


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelDefinitionError(f"Cannot read '{path}': {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelDefinitionError(f"'{path.name}' is not UTF-8 text (byte {exc.start}): an .emd is a UTF-8 JSON file") from exc


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelDefinitionError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise ModelDefinitionError(f"{what} must be a JSON object ({{...}}), not {type(data).__name__}")
    return data


def _as_int(data: dict[str, Any], key: str, *, minimum: int | None = None, required: bool = False,
            default: int | None = None) -> int | None:
    if key not in data or data[key] is None:
        if required:
            raise ModelDefinitionError(f"Key '{key}' is missing from the model definition")
        return default
    value = data[key]
    if isinstance(value, bool):
        raise ModelDefinitionError(f"Key '{key}' must be an integer, not {json.dumps(value)}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ModelDefinitionError(f"Key '{key}' must be an integer, not {json.dumps(value)}") from None
    if not as_float.is_integer():
        raise ModelDefinitionError(f"Key '{key}' must be an integer, not {json.dumps(value)}")
    result = int(as_float)
    if minimum is not None and result < minimum:
        raise ModelDefinitionError(f"Key '{key}' must be at least {minimum}, not {result}")
    return result


def _as_float(data: dict[str, Any], key: str) -> float | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if isinstance(value, bool):
        raise ModelDefinitionError(f"Key '{key}' must be a number, not {json.dumps(value)}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ModelDefinitionError(f"Key '{key}' must be a number, not {json.dumps(value)}") from None


def as_bool(value: Any, what: str) -> bool:
    """ArcGIS-style truthiness: true/1/t/y/yes (any case) are true, false/0/f/n/no false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "t", "y", "yes"):
            return True
        if low in ("false", "0", "f", "n", "no", ""):
            return False
    raise ModelDefinitionError(f"{what} must be true or false, not {json.dumps(value)}")


def _as_flag(data: dict[str, Any], key: str) -> int | None:
    if key not in data or data[key] is None:
        return None
    return int(as_bool(data[key], f"Key '{key}'"))


def _float_list(value: Any, what: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise ModelDefinitionError(f"{what} must be a non-empty list of numbers")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ModelDefinitionError(f"{what} must be a list of numbers; found {json.dumps(item)}")
        out.append(float(item))
    return out


def parse_classes(value: Any, key: str = "Classes") -> list[ClassInfo]:
    """``Classes``: a list of {Value, Name, Color}; a Name may be a number (real files do that)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelDefinitionError(f"Key '{key}' must be a list of {{Value, Name, Color}} objects")
    classes: list[ClassInfo] = []
    seen: dict[int, str] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ModelDefinitionError(f"{key}[{i}] must be an object with Value, Name and Color")
        if "Value" not in item:
            raise ModelDefinitionError(f"{key}[{i}] has no 'Value'")
        val = _as_int(item, "Value")
        assert val is not None
        name_raw = item.get("Name", str(val))
        if isinstance(name_raw, (dict, list)) or name_raw is None:
            raise ModelDefinitionError(f"{key}[{i}] 'Name' must be text or a number")
        name = str(name_raw).strip() or str(val)
        color = None
        if item.get("Color") is not None:
            c = item["Color"]
            if (not isinstance(c, list) or len(c) < 3
                    or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in c[:3])):
                raise ModelDefinitionError(f"{key}[{i}] ('{name}') 'Color' must be [red, green, blue]")
            rgb = tuple(int(round(x)) for x in c[:3])
            if any(x < 0 or x > 255 for x in rgb):
                raise ModelDefinitionError(f"{key}[{i}] ('{name}') 'Color' values must be 0-255, not {c}")
            color = (rgb[0], rgb[1], rgb[2])
        if val in seen:
            raise ModelDefinitionError(f"{key}: Value {val} is used twice ('{seen[val]}' and '{name}')")
        seen[val] = name
        classes.append(ClassInfo(val, name, color))
    return classes


def _normalization_stats(value: Any) -> NormalizationStats | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ModelDefinitionError("Key 'NormalizationStats' must be an object of per-band lists")
    lists: dict[str, list[float] | None] = {}
    for key in _STATS_KEYS:
        lists[key] = _float_list(value[key], f"NormalizationStats.{key}") if value.get(key) is not None else None
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


def _resolve_model_file(model_file: str, base_dir: Path | None) -> Path | None:
    normalised = model_file.replace("\\", "/")
    candidate = Path(normalised).expanduser()
    if candidate.is_absolute():
        return candidate
    if base_dir is None:
        return None
    return (base_dir / normalised).resolve()


def _arcgis_torchscript_file(data: dict[str, Any]) -> str | None:
    """arcgis.learn saves ``"TorchScript": {"CPU": ..., "GPU": ...}`` next to its .pth: prefer it."""
    ts = data.get("TorchScript")
    if isinstance(ts, dict):
        for key in ("CPU", "GPU"):
            if isinstance(ts.get(key), str) and ts[key]:
                return ts[key]
    return None


def definition_from_emd_data(data: dict[str, Any], *, source: str, origin: str, base_dir: Path | None,
                             check_file: bool = True) -> ModelDefinition:
    """Validate the .emd keys and build a :class:`ModelDefinition`."""
    model_type = data.get("ModelType")
    if model_type is None:
        raise ModelDefinitionError("Key 'ModelType' is missing from the model definition (e.g. \"ImageClassification\")")
    if not isinstance(model_type, str):
        raise ModelDefinitionError(f"Key 'ModelType' must be text, not {json.dumps(model_type)}")
    if model_type == "ObjectionDetection":  # misspelt in Esri's own documentation sample
        model_type = "ObjectDetection"
    if model_type not in KNOWN_MODEL_TYPES:
        raise ModelDefinitionError(f"ModelType '{model_type}' is unknown; known types: {', '.join(KNOWN_MODEL_TYPES)}")

    height = _as_int(data, "ImageHeight", minimum=1, required=True)
    width = _as_int(data, "ImageWidth", minimum=1, required=True)
    assert height is not None and width is not None

    framework = data.get("Framework")
    if framework is not None and not isinstance(framework, str):
        raise ModelDefinitionError(f"Key 'Framework' must be text, not {json.dumps(framework)}")
    config = data.get("ModelConfiguration")
    if isinstance(config, dict):
        config_name = config.get("Name")
        config_name = str(config_name) if config_name is not None else None
    elif config is None or isinstance(config, str):
        config_name = config
    else:
        raise ModelDefinitionError("Key 'ModelConfiguration' must be text or an object with a 'Name'")

    model_file_text = data.get("ModelFile")
    if model_file_text is not None and not isinstance(model_file_text, str):
        raise ModelDefinitionError(f"Key 'ModelFile' must be a file name, not {json.dumps(model_file_text)}")
    ts_file = _arcgis_torchscript_file(data)
    warnings: list[str] = []
    if ts_file and (model_file_text or "").lower().endswith(".pth"):
        warnings.append(f"Using the TorchScript file '{ts_file}' the definition lists instead of '{model_file_text}'")
        model_file_text = ts_file

    inference_function = data.get("InferenceFunction")
    if inference_function is not None and not isinstance(inference_function, str):
        raise ModelDefinitionError("Key 'InferenceFunction' must be a file name")

    if not model_file_text:
        if check_file:
            what = f" (it relies on the Python raster function '{inference_function}')" if inference_function else ""
            raise ModelDefinitionError(
                f"The model definition has no ModelFile{what}: the plugin runs ONNX and TorchScript model files, "
                "not custom Python raster functions. Export the model to ONNX and add \"ModelFile\" and "
                "\"Framework\": \"ONNX\"")
        kind = None
    else:
        kind = _framework_kind(framework, model_file_text, data)
        if kind == "torchscript" and (framework or "").lower().startswith("arcgis.learn") and \
                model_file_text.lower().endswith(".pth"):
            raise ModelDefinitionError(
                f"ModelFile '{model_file_text}' holds arcgis.learn PyTorch weights, which need the arcgis.learn code "
                "to rebuild the network; this plugin does not run that code. Save the model with arcgis.learn's "
                "TorchScript or ONNX export (or torch.jit.save) and point ModelFile at that file")

    model_path = _resolve_model_file(model_file_text, base_dir) if model_file_text else None
    if check_file and model_file_text:
        if model_path is None:
            raise ModelDefinitionError(
                f"ModelFile '{model_file_text}' is relative, and a model definition given as JSON text has no folder "
                "to resolve it against: give an absolute path in ModelFile, or pass the .emd file")
        if not model_path.is_file():
            where = "next to the .emd" if origin in ("emd", "dlpk") else "at that path"
            raise ModelDefinitionError(f"ModelFile '{model_file_text}' not found {where} ({model_path})")
        if kind == "torchscript":
            from .model_probe import check_torchscript_archive

            check_torchscript_archive(model_path, model_file_text)

    extract_bands = None
    extract_band_names = None
    eb = data.get("ExtractBands")
    if eb is not None:
        if not isinstance(eb, list) or not eb:
            raise ModelDefinitionError("Key 'ExtractBands' must be a non-empty list of 0-based band indexes or band names")
        if all(isinstance(b, str) and not b.strip().lstrip("-").isdigit() for b in eb):
            extract_band_names = [b.strip() for b in eb]
        else:
            extract_bands = []
            for b in eb:
                try:
                    if isinstance(b, bool):
                        raise ValueError
                    idx = int(b)
                    if float(b) != idx:
                        raise ValueError
                except (TypeError, ValueError):
                    raise ModelDefinitionError(f"ExtractBands entry {json.dumps(b)} is not a band index") from None
                if idx < 0:
                    raise ModelDefinitionError(f"ExtractBands entry {idx} is negative: indexes are 0-based")
                extract_bands.append(idx)

    data_range = None
    if data.get("DataRange") is not None:
        dr = _float_list(data["DataRange"], "Key 'DataRange'")
        if len(dr) != 2 or dr[0] >= dr[1]:
            raise ModelDefinitionError(f"Key 'DataRange' must be [min, max] with min < max, not {data['DataRange']}")
        data_range = (dr[0], dr[1])

    model_format = str(data.get("ModelFormat") or "NCHW").upper()
    if model_format not in ("NCHW", "NHWC"):
        raise ModelDefinitionError(f"Key 'ModelFormat' must be NCHW or NHWC, not '{data.get('ModelFormat')}'")

    ignore = data.get("ignore_mapped_class") or []
    if not isinstance(ignore, list):
        raise ModelDefinitionError("Key 'ignore_mapped_class' must be a list of channel indexes")

    plugin_keys = data.get("QGISPlugin") if isinstance(data.get("QGISPlugin"), dict) else {}
    mean = plugin_keys.get("standardization_mean")
    std = plugin_keys.get("standardization_std")

    md = ModelDefinition(
        source=source,
        origin=origin,
        raw=data,
        model_type=model_type,
        image_height=height,
        image_width=width,
        framework=framework,
        model_configuration=config_name,
        model_name=str(data["ModelName"]) if data.get("ModelName") is not None else None,
        model_file=model_path,
        model_file_text=model_file_text,
        model_format_kind=kind,
        inference_function=inference_function,
        base_dir=base_dir,
        extract_bands=extract_bands,
        extract_band_names=extract_band_names,
        data_range=data_range,
        normalization_stats=_normalization_stats(data.get("NormalizationStats")),
        standardization_mean=_float_list(mean, "QGISPlugin.standardization_mean") if mean is not None else None,
        standardization_std=_float_list(std, "QGISPlugin.standardization_std") if std is not None else None,
        divide_by_255=bool(plugin_keys.get("divide_by_255", False)),
        model_padding=_as_int(data, "ModelPadding", minimum=0, default=0) or 0,
        batch_size=_as_int(data, "BatchSize", minimum=1),
        padding=_as_int(data, "Padding", minimum=0),
        threshold=_as_float(data, "Threshold"),
        classes=parse_classes(data.get("Classes")),
        crop_size_fixed=_as_flag(data, "CropSizeFixed"),
        blacken_around_feature=_as_flag(data, "BlackenAroundFeature"),
        image_space_used=str(data.get("ImageSpaceUsed") or "MAP_SPACE"),
        supports_variable_tile_size=as_bool(data.get("SupportsVariableTileSize", False), "Key 'SupportsVariableTileSize'"),
        arcgis_learn_version=str(data["ArcGISLearnVersion"]) if data.get("ArcGISLearnVersion") is not None else None,
        is_multispectral=as_bool(data.get("IsMultispectral", False), "Key 'IsMultispectral'"),
        model_format=model_format,
        min_cell_size=data.get("MinCellSize") if isinstance(data.get("MinCellSize"), dict) else None,
        max_cell_size=data.get("MaxCellSize") if isinstance(data.get("MaxCellSize"), dict) else None,
        test_time_augmentation=(as_bool(data["test_time_augmentation"], "Key 'test_time_augmentation'")
                                if data.get("test_time_augmentation") is not None else None),
        meta_data_mode=str(data["MetaDataMode"]) if data.get("MetaDataMode") is not None else None,
        ignore_mapped_class=[int(i) for i in ignore],
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        warnings=warnings,
    )
    if md.model_padding * 2 >= min(height, width):
        raise ModelDefinitionError(
            f"ModelPadding {md.model_padding} leaves no centre in a {width}x{height} tile: it must be less than half the tile")
    if md.standardization_mean is not None and md.standardization_std is not None and \
            len(md.standardization_mean) != len(md.standardization_std):
        raise ModelDefinitionError("QGISPlugin.standardization_mean and standardization_std differ in length")
    return md

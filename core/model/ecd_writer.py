# SPDX-License-Identifier: GPL-2.0-or-later
"""Writing Esri classifier definitions (``.ecd``) from a model file and an Esri Extra Info class info file.

The layout written is described in :mod:`core.model.ecd` (the reader).  Deep Learning Model To Ecd writes it;
Create Deep Learning Package builds its .emd from the same class info.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import open_backend
from ..backends.base import DeviceRequest
from ..errors import BackendError, DependencyMissingError, ModelDefinitionError, OutputError
from ..safe_output import write_json_atomic
from .definition import ONNX_SUFFIXES, TORCH_EXPORT_SUFFIXES, TORCHSCRIPT_SUFFIXES, ClassInfo
from .ecd import CLASSIFIER_TYPE, ENVELOPE_KEY, EXTRA_INFO_KEY, FILE_VERSION, _integer, emd_data_from_ecd_definition
from .layout import band_axis, image_size, input_layout
from .torch_archive import embedded_definition
from .validators import check_model_padding, parse_classes, read_json_file, require_known_model_type
from .validators import data_range as valid_data_range


@dataclass
class ClassInfoFile:
    """A validated "Esri Extra Info" class info file."""

    classifier: str
    number_raster_bands: int
    classes: list[ClassInfo]
    mini_batch_size: int | None = None
    version: int | None = None
    model_type: str = "ImageClassification"
    image_height: int | None = None
    image_width: int | None = None
    data_range: list[float] | None = None
    model_padding: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def validate_class_info(data: dict[str, Any], *, source: str = "class info") -> ClassInfoFile:
    """Check an "Esri Extra Info" class info object; every error names the key and the class.

    Besides Esri's keys it takes the plugin's optional ``ModelType``, ``ImageHeight``,
    ``ImageWidth``, ``DataRange`` and ``ModelPadding`` (copied into the .ecd definition).
    """
    where = source
    if not isinstance(data, dict):
        raise ModelDefinitionError(f"{where} must be a JSON object ({{...}}), not {type(data).__name__}")
    if EXTRA_INFO_KEY not in data:
        raise ModelDefinitionError(
            f"{where} has no '{EXTRA_INFO_KEY}' key: it is not an Esri Extra Info class info file "
            f"(expected {{\"{EXTRA_INFO_KEY}\": 0, \"Classifier\": ..., \"NumberRasterBands\": ..., \"Classes\": [...]}})")
    _integer(data[EXTRA_INFO_KEY], f"{where}: key '{EXTRA_INFO_KEY}'")
    version = _integer(data["Version"], f"{where}: key 'Version'") if data.get("Version") is not None else None

    classifier = data.get("Classifier")
    if classifier is None:
        raise ModelDefinitionError(f"{where}: key 'Classifier' is missing (the model's framework, e.g. \"ONNX\" or \"PyTorch\")")
    if not isinstance(classifier, str) or not classifier.strip():
        raise ModelDefinitionError(f"{where}: key 'Classifier' must be a framework name such as \"ONNX\", "
                                   f"not {json.dumps(classifier)}")
    if "NumberRasterBands" not in data:
        raise ModelDefinitionError(f"{where}: key 'NumberRasterBands' is missing (how many raster bands the model takes)")
    bands = _integer(data["NumberRasterBands"], f"{where}: key 'NumberRasterBands'", minimum=1)
    batch = (_integer(data["MiniBatchSize"], f"{where}: key 'MiniBatchSize'", minimum=1)
             if data.get("MiniBatchSize") is not None else None)

    if "Classes" not in data:
        raise ModelDefinitionError(f"{where}: key 'Classes' is missing (a list of {{Value, Name, Color}})")
    raw_classes = data["Classes"]
    if not isinstance(raw_classes, list) or not raw_classes:
        raise ModelDefinitionError(f"{where}: key 'Classes' must be a non-empty list of {{Value, Name, Color}} objects")
    classes = parse_classes(raw_classes, where=where, strict=True)

    model_type = data.get("ModelType", "ImageClassification")
    require_known_model_type(model_type, f"{where}: key 'ModelType' {json.dumps(model_type)}")
    height = _integer(data["ImageHeight"], f"{where}: key 'ImageHeight'", minimum=1) \
        if data.get("ImageHeight") is not None else None
    width = _integer(data["ImageWidth"], f"{where}: key 'ImageWidth'", minimum=1) \
        if data.get("ImageWidth") is not None else None
    if (height is None) != (width is None):
        given, missing = ("ImageHeight", "ImageWidth") if width is None else ("ImageWidth", "ImageHeight")
        raise ModelDefinitionError(f"{where} gives '{given}' but not '{missing}': give both (the model's tile size in pixels)")

    data_range = None
    if data.get("DataRange") is not None:
        valid_data_range(data["DataRange"], f"{where}: key 'DataRange'")
        data_range = list(data["DataRange"])
    padding = None
    if data.get("ModelPadding") is not None:
        padding = _integer(data["ModelPadding"], f"{where}: key 'ModelPadding'", minimum=0)
        if height is not None and width is not None:
            check_model_padding(padding, height, width, f"{where}: key 'ModelPadding'")

    known = {EXTRA_INFO_KEY, "Version", "Classifier", "NumberRasterBands", "MiniBatchSize", "Classes", "ModelType",
             "ImageHeight", "ImageWidth", "DataRange", "ModelPadding"}
    return ClassInfoFile(
        classifier=classifier.strip(), number_raster_bands=bands, classes=classes, mini_batch_size=batch,
        version=version, model_type=model_type, image_height=height, image_width=width, data_range=data_range,
        model_padding=padding, extra={k: v for k, v in data.items() if k not in known},
    )


def read_class_info(class_info: str | os.PathLike[str] | dict[str, Any]) -> ClassInfoFile:
    """A class info given as a path to its JSON file, or as the parsed object."""
    if isinstance(class_info, dict):
        return validate_class_info(class_info)
    path = Path(class_info)
    return validate_class_info(read_json_file(path, "Class info file"), source=f"Class info '{path.name}'")


def _onnx_input(model_path: Path, bands: int) -> tuple[int | None, int | None, str]:
    """(height, width, layout) of an ONNX model's first input, None where dynamic (read through the backend)."""
    try:
        backend = open_backend(model_path, "onnx", DeviceRequest("cpu", threads=1))
    except DependencyMissingError:
        raise
    except BackendError as exc:
        raise ModelDefinitionError(f"ONNX Runtime cannot read model file '{model_path.name}': {exc}") from exc
    try:
        inputs = backend.inputs
    finally:
        backend.close()
    if not inputs:
        raise ModelDefinitionError(f"ONNX model '{model_path.name}' has no inputs")
    shape, declared = inputs[0].shape, inputs[0].declared_text()
    if len(shape) != 4:
        raise ModelDefinitionError(
            f"ONNX model '{model_path.name}' takes an input of rank {len(shape)} ({declared}), not an image batch "
            "[batch, bands, height, width]")
    layout = input_layout(shape, bands)
    if layout is not None:
        return *image_size(shape, layout), layout
    takes = shape[band_axis(input_layout(shape) or "NCHW")]  # the band axis by the same rule, without a count
    raise ModelDefinitionError(f"ONNX model '{model_path.name}' takes {takes} bands (input shape {declared}) but the "
                               f"class info says NumberRasterBands {bands}")


def _torch_declared_size(model_path: Path) -> tuple[int | None, int | None]:
    """ImageHeight/ImageWidth of the dltools.json a TorchScript archive may carry (None when unreadable)."""
    if not zipfile.is_zipfile(model_path):
        return None, None
    try:
        data = embedded_definition(model_path)
        if data is None:
            return None, None
        return (_integer(data.get("ImageHeight"), "ImageHeight", minimum=1),
                _integer(data.get("ImageWidth"), "ImageWidth", minimum=1))
    except ModelDefinitionError:
        return None, None


def probe_tile_size(model_path: Path, bands: int) -> tuple[int, int, str]:
    """(height, width, layout) read from the model file, or a clear error asking for them."""
    suffix = model_path.suffix.lower()
    height = width = None
    layout = "NCHW"
    if suffix in ONNX_SUFFIXES:
        height, width, layout = _onnx_input(model_path, bands)
    elif suffix in TORCHSCRIPT_SUFFIXES + TORCH_EXPORT_SUFFIXES:
        height, width = _torch_declared_size(model_path)
    if height is None or width is None:
        why = "it takes any tile size" if suffix in ONNX_SUFFIXES else "the plugin cannot read it from this kind of file"
        raise ModelDefinitionError(
            f"The tile size of model '{model_path.name}' is unknown ({why}): add \"ImageHeight\" and \"ImageWidth\" "
            "(the model's input tile size in pixels) to the class info JSON")
    return height, width, layout


def _relative_model_path(model_path: Path, ecd_dir: Path) -> str:
    try:
        rel = os.path.relpath(model_path, ecd_dir)
    except ValueError:  # Windows: another drive
        return model_path.as_posix()
    return Path(rel).as_posix()


def ecd_definition(model_file: str | os.PathLike[str], class_info: ClassInfoFile, ecd_dir: Path | None) -> dict[str, Any]:
    """The single .ecd definition for a model file; ``ModelFile`` relative to ``ecd_dir`` (absolute if None)."""
    model_path = Path(model_file).expanduser()
    if not model_path.is_file():
        what = "is a folder, not a model file" if model_path.is_dir() else "does not exist"
        raise ModelDefinitionError(f"Model file '{model_path}' {what}")
    if model_path.suffix.lower() in (".emd", ".dlpk", ".ecd"):
        raise ModelDefinitionError(
            f"'{model_path.name}' is a model definition, not a trained model file: give the model file it refers to "
            "(.onnx, .pt ...); an .emd or .dlpk is already usable as a model without an .ecd")
    model_path = model_path.resolve()
    if class_info.image_height is not None and class_info.image_width is not None:
        height, width = class_info.image_height, class_info.image_width
        # the layout (and the band count) is the model file's whatever the class info says of the tile size
        layout = _onnx_input(model_path, class_info.number_raster_bands)[2] \
            if model_path.suffix.lower() in ONNX_SUFFIXES else "NCHW"
    else:
        height, width, layout = probe_tile_size(model_path, class_info.number_raster_bands)
    if class_info.model_padding is not None:
        check_model_padding(class_info.model_padding, height, width, "ModelPadding", tile="the model's")

    definition: dict[str, Any] = {
        "Classifier": class_info.classifier,
        "ClassifierType": CLASSIFIER_TYPE,
        "ModelFile": _relative_model_path(model_path, ecd_dir) if ecd_dir is not None else model_path.as_posix(),
        "NumberBands": class_info.number_raster_bands,
    }
    if class_info.mini_batch_size is not None:
        definition["MiniBatchSize"] = class_info.mini_batch_size
    definition["NumberClasses"] = len(class_info.classes)
    definition["Classes"] = [
        {"ClassValue": c.value, "ClassName": c.name,
         **({"Red": c.color[0], "Green": c.color[1], "Blue": c.color[2]} if c.color is not None else {})}
        for c in class_info.classes
    ]
    definition["ModelType"] = class_info.model_type
    definition["ImageHeight"] = height
    definition["ImageWidth"] = width
    definition["ExtractBands"] = list(range(class_info.number_raster_bands))
    if layout != "NCHW":
        definition["ModelFormat"] = layout
    if class_info.data_range is not None:
        definition["DataRange"] = class_info.data_range
    if class_info.model_padding is not None:
        definition["ModelPadding"] = class_info.model_padding
    return definition


def ecd_document(definition: dict[str, Any]) -> dict[str, Any]:
    """The .ecd envelope around one definition."""
    return {ENVELOPE_KEY: 0, "FileVersion": FILE_VERSION, "NumberDefinitions": 1, "Definitions": [definition]}


def ecd_output_path(output_path: str | os.PathLike[str]) -> Path:
    """The output path with an ``.ecd`` extension (appended when missing, as QGIS does)."""
    out = Path(output_path).expanduser()
    if out.suffix.lower() != ".ecd":
        out = out.with_name(out.name + ".ecd")
    return out


def write_ecd(model_file: str | os.PathLike[str], class_info_path_or_dict: str | os.PathLike[str] | dict[str, Any],
              output_path: str | os.PathLike[str]) -> Path:
    """*Deep Learning Model To Ecd*: write the .ecd for a model file and its class info; returns its path."""
    info = read_class_info(class_info_path_or_dict)
    out = ecd_output_path(output_path)
    if out.is_dir():
        raise ModelDefinitionError(f"Output '{out}' is a folder: give an .ecd file name")
    definition = ecd_definition(model_file, info, out.parent.resolve())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder of '{out}': {exc.strerror or exc}") from exc
    return write_json_atomic(ecd_document(definition), out)


def emd_data_from_class_info(model_file: str | os.PathLike[str],
                             class_info: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """A model file and its class info as .emd data (absolute ModelFile), through the .ecd mapping."""
    definition = ecd_definition(model_file, read_class_info(class_info), None)
    return emd_data_from_ecd_definition(definition)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Esri classifier definitions (``.ecd``) for deep learning models: *Deep Learning Model To Ecd*.

ArcGIS's deprecated *Deep Learning Model To Ecd* tool turns a trained model file and an
"Esri Extra Info" class info JSON into an ``.ecd`` (esri-compat.md section 7)::

    {"ImportDeepLearningModelToEsriExtraInfo": 0, "Version": 1, "Classifier": "CNTK",
     "NumberRasterBands": 4, "MiniBatchSize": 16,
     "Classes": [{"Value": 100, "Name": "Impervious", "Color": [204, 204, 204]}, ...]}

No public source shows the deep learning ``.ecd`` Esri writes, so the layout below is
**plugin-defined**: the verified ``.ecd`` envelope with one definition that follows the
verified maximum-likelihood class layout (``ClassValue``/``ClassName``/``Red``/``Green``/``Blue``)::

    {"EsriClassifierDefinitionFile": 0, "FileVersion": 3, "NumberDefinitions": 1,
     "Definitions": [{
        "Classifier": "ONNX",                  # the class info's Classifier (the framework)
        "ClassifierType": "DeepLearning",
        "ModelFile": "model.onnx",             # relative to the .ecd (absolute on another drive)
        "NumberBands": 4,                      # NumberRasterBands
        "MiniBatchSize": 16,                   # only when the class info gives it
        "NumberClasses": 2,
        "Classes": [{"ClassValue": 100, "ClassName": "Impervious", "Red": 204, "Green": 204, "Blue": 204}, ...],
        # what a model definition needs on top, with .emd key names (plugin-defined):
        "ModelType": "ImageClassification",    # class info "ModelType", else ImageClassification
        "ImageHeight": 256, "ImageWidth": 256, # class info, else read from the model file
        "ExtractBands": [0, 1, 2, 3],          # range(NumberRasterBands)
        "ModelFormat": "NHWC",                 # only for a channels-last ONNX model
        "DataRange": [0, 1], "ModelPadding": 8 # only when the class info gives them
     }]}

Such an ``.ecd`` is a MODEL for the inference tools: :func:`definition_from_ecd_data` maps
it to ``.emd`` keys (``Classifier`` -> ``Framework``, ``MiniBatchSize`` -> ``BatchSize``, ...)
and runs the ``.emd`` validation, so every check and message is the same.  The reader
also accepts ``.emd``-style ``Classes`` entries (``Value``/``Name``/``Color``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError
from .definition import (
    ModelDefinition,
)
from .emd import definition_from_emd_data
from .validators import integer, read_json_file

EXTRA_INFO_KEY = "ImportDeepLearningModelToEsriExtraInfo"
ENVELOPE_KEY = "EsriClassifierDefinitionFile"
FILE_VERSION = 3
CLASSIFIER_TYPE = "DeepLearning"

#: Keys of an .ecd definition that have no .emd counterpart (or are renamed on reading).
_ECD_ONLY_KEYS = ("Classifier", "ClassifierType", "NumberBands", "MiniBatchSize", "NumberClasses", "Classes")




# ----------------------------------------------------------------------------------------------
# class info (Esri Extra Info)






# ----------------------------------------------------------------------------------------------
# tile size from the model file








# ----------------------------------------------------------------------------------------------
# writing














# ----------------------------------------------------------------------------------------------
# reading


def _ecd_classes(value: Any, where: str) -> list[dict[str, Any]]:
    """.ecd classes (ClassValue/ClassName/Red/Green/Blue) or .emd classes (Value/Name/Color) as .emd classes."""
    if not isinstance(value, list):
        raise ModelDefinitionError(f"{where}: 'Classes' must be a list of classes")
    out = []
    for j, item in enumerate(value):
        if not isinstance(item, dict):
            raise ModelDefinitionError(f"{where}: Classes[{j}] must be an object")
        if "ClassValue" in item:
            entry: dict[str, Any] = {"Value": item["ClassValue"], "Name": item.get("ClassName", item["ClassValue"])}
            present = [k for k in ("Red", "Green", "Blue") if k in item]
            if present and len(present) != 3:
                name = item.get("ClassName", item["ClassValue"])
                raise ModelDefinitionError(f"{where}: Classes[{j}] ('{name}') needs all of Red, Green and Blue, "
                                           f"not only {', '.join(present)}")
            if present:
                entry["Color"] = [item["Red"], item["Green"], item["Blue"]]
            out.append(entry)
        elif "Value" in item:
            out.append(item)
        else:
            raise ModelDefinitionError(
                f"{where}: Classes[{j}] has neither 'ClassValue' (.ecd classes) nor 'Value' (.emd classes)")
    return out


def emd_data_from_ecd_definition(definition: dict[str, Any], where: str = "the .ecd definition") -> dict[str, Any]:
    """Map one DeepLearning .ecd definition onto .emd keys (ModelFile is left as written)."""
    emd = {k: v for k, v in definition.items() if k not in _ECD_ONLY_KEYS}
    classifier = definition.get("Classifier")
    if classifier is not None and not isinstance(classifier, str):
        raise ModelDefinitionError(f"{where}: 'Classifier' must be a framework name, not {json.dumps(classifier)}")
    if classifier and "Framework" not in emd:
        emd["Framework"] = classifier
    emd.setdefault("ModelType", "ImageClassification")
    if definition.get("NumberBands") is not None:
        bands = _integer(definition["NumberBands"], f"{where}: 'NumberBands'", minimum=1)
        if emd.get("ExtractBands") is None:
            emd["ExtractBands"] = list(range(bands))
        elif isinstance(emd["ExtractBands"], list) and len(emd["ExtractBands"]) != bands:
            raise ModelDefinitionError(f"{where}: 'ExtractBands' lists {len(emd['ExtractBands'])} bands but "
                                       f"'NumberBands' is {bands}")
    if definition.get("MiniBatchSize") is not None and emd.get("BatchSize") is None:
        emd["BatchSize"] = _integer(definition["MiniBatchSize"], f"{where}: 'MiniBatchSize'", minimum=1)
    classes = _ecd_classes(definition.get("Classes", []), where)
    if definition.get("NumberClasses") is not None:
        number = _integer(definition["NumberClasses"], f"{where}: 'NumberClasses'", minimum=0)
        if number != len(classes):
            raise ModelDefinitionError(f"{where}: 'NumberClasses' is {number} but 'Classes' lists {len(classes)}")
    emd["Classes"] = classes
    missing = [k for k in ("ImageHeight", "ImageWidth") if emd.get(k) is None]
    if missing:
        raise ModelDefinitionError(
            f"{where} has no {' or '.join(repr(k) for k in missing)}: the model's tile size is unknown. Recreate the .ecd "
            "with Deep Learning Model To Ecd from this plugin (add \"ImageHeight\" and \"ImageWidth\" to the class info "
            "if the model file does not fix them), or add them to the definition")
    return emd


def _deep_learning_definition(data: dict[str, Any], source: str) -> tuple[int, dict[str, Any], list[str]]:
    if ENVELOPE_KEY not in data:
        raise ModelDefinitionError(f"'{source}' has no '{ENVELOPE_KEY}' key: it is not an Esri classifier definition (.ecd)")
    definitions = data.get("Definitions")
    if not isinstance(definitions, list) or not definitions:
        raise ModelDefinitionError(f"'{source}': key 'Definitions' must be a non-empty list of classifier definitions")
    for i, d in enumerate(definitions):
        if not isinstance(d, dict):
            raise ModelDefinitionError(f"'{source}': Definitions[{i}] must be an object, not {json.dumps(d)}")
    if data.get("NumberDefinitions") is not None:
        number = _integer(data["NumberDefinitions"], f"'{source}': key 'NumberDefinitions'", minimum=1)
        if number != len(definitions):
            raise ModelDefinitionError(f"'{source}': 'NumberDefinitions' is {number} but 'Definitions' holds "
                                       f"{len(definitions)}")
    deep = [(i, d) for i, d in enumerate(definitions) if str(d.get("ClassifierType", "")).lower() == "deeplearning"]
    if not deep:
        kinds = ", ".join(sorted({str(d.get("Classifier", "?")) for d in definitions}))
        raise ModelDefinitionError(
            f"'{source}' holds no deep learning definition (ClassifierType \"{CLASSIFIER_TYPE}\"), only {kinds}: it is a "
            "classifier for Classify Raster, not a deep learning model")
    warnings = []
    if len(deep) > 1:
        warnings.append(f"'{source}' holds {len(deep)} deep learning definitions: using the first (Definitions[{deep[0][0]}])")
    return deep[0][0], deep[0][1], warnings


def definition_from_ecd_data(data: dict[str, Any], *, source: str, base_dir: Path | None,
                             check_file: bool = True) -> ModelDefinition:
    """An .ecd (JSON object) as a :class:`ModelDefinition`, validated exactly like an .emd."""
    index, definition, warnings = _deep_learning_definition(data, source)
    emd = emd_data_from_ecd_definition(definition, f"'{source}' Definitions[{index}]")
    try:
        md = definition_from_emd_data(emd, source=source, origin="ecd", base_dir=base_dir, check_file=check_file)
    except ModelDefinitionError as exc:
        message = str(exc)
        if message.startswith("Framework '"):
            message += " (in an .ecd the framework is the definition's 'Classifier')"
            raise ModelDefinitionError(message) from exc
        raise
    md.warnings = warnings + md.warnings
    return md


def emd_data_from_ecd_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An .ecd file as .emd data whose ModelFile is absolute (to package or save it elsewhere)."""
    ecd = Path(path)
    data = read_json_file(ecd, "Classifier definition")
    index, definition, _ = _deep_learning_definition(data, ecd.name)
    emd = emd_data_from_ecd_definition(definition, f"'{ecd.name}' Definitions[{index}]")
    model_file = emd.get("ModelFile")
    if isinstance(model_file, str) and model_file:
        candidate = Path(model_file.replace("\\", "/")).expanduser()
        emd["ModelFile"] = (candidate if candidate.is_absolute() else (ecd.parent / candidate).resolve()).as_posix()
    return emd


def _integer(value: Any, what: str, *, minimum: int | None = None) -> int:
    """Class info and .ecd numbers are JSON numbers: the shared validator's strict rule."""
    return integer(value, what, minimum=minimum, strict=True)

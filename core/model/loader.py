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

This module is the loader on top of the readers: the data types live in :mod:`.definition`, the
shared validators in :mod:`.validators`, the .emd keys in :mod:`.emd`; the .ecd, package and
plain-model readers sit between them and this loader, which re-exports the types for its callers.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelDefinitionError
from ..trust import CodeTrust
from .definition import (
    KNOWN_MODEL_TYPES,
    ONNX_SUFFIXES,
    TORCH_EXPORT_SUFFIXES,
    TORCHSCRIPT_SUFFIXES,
    ClassInfo,
    ModelDefinition,
    NormalizationStats,
    palette,
)
from .ecd import definition_from_ecd_data
from .emd import definition_from_emd_data
from .packages import check_package_references, extract_package
from .probe import definition_from_onnx, definition_from_torch
from .validators import as_bool, parse_classes, parse_json, read_text

#: The loader is the model definitions' front door; the types and the .emd reader it re-exports live
#: below it (definition, emd, validators), so that the readers it dispatches to never import it back.
__all__ = [
    "KNOWN_MODEL_TYPES", "ONNX_SUFFIXES", "TORCHSCRIPT_SUFFIXES", "TORCH_EXPORT_SUFFIXES", "ClassInfo",
    "ModelDefinition", "NormalizationStats", "as_bool", "definition_from_emd_data", "load_model_definition",
    "palette", "parse_classes",
]


# ----------------------------------------------------------------------------------------------
# entry point


def load_model_definition(model: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                          check_file: bool = True, trust: CodeTrust | None = None) -> ModelDefinition:
    """Turn what the user gave as MODEL (a path or JSON text) into a :class:`ModelDefinition`.

    ``cache_dir`` is where packages are extracted (a per-package folder below it);
    ``check_file`` makes a missing or unsupported model file an error (Describe Model
    turns it off for JSON text so that a definition can be inspected before its file exists).
    ``trust`` (kept on the definition as ``code_trust``) is the user's permission to run code-bearing model
    files: a plain TorchScript/.pt2 file without a stored definition is probed only when trusted, and a run opens
    such a file only when trusted (None: nothing is trusted).
    """
    notes: list[str] = []  # what reading the JSON noticed (a key given twice), shown with the definition's warnings
    md = _load(model, cache_dir, check_file, notes, trust)
    md.warnings[:0] = notes
    md.code_trust = trust
    return md


def _load(model: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None, check_file: bool,
          notes: list[str], trust: CodeTrust | None) -> ModelDefinition:
    text = str(model).strip()
    if not text:
        raise ModelDefinitionError("No model was given: pass an .emd, .dlpk, .onnx or TorchScript file, or the .emd JSON text")
    if text.startswith("{"):
        data = parse_json(text, "the model definition JSON text", notes)
        if "EsriClassifierDefinitionFile" in data:
            return definition_from_ecd_data(data, source="JSON text", base_dir=None, check_file=check_file)
        return definition_from_emd_data(data, source="JSON text", origin="json", base_dir=None, check_file=check_file)

    path = Path(text).expanduser()
    if not path.exists():
        raise ModelDefinitionError(f"Model file '{path}' does not exist")
    if path.is_dir():
        raise ModelDefinitionError(f"Model '{path}' is a folder: pass the .emd or .dlpk file inside it")
    if not path.is_file():  # a FIFO, socket or device: reading it could block forever
        raise ModelDefinitionError(f"Model '{path}' is not a regular file (it is a pipe, socket or device): pass the "
                                   ".emd, .dlpk or model file itself")
    suffix = path.suffix.lower()
    if suffix == ".emd" or suffix == ".json":
        data = parse_json(read_text(path), f"model definition '{path.name}'", notes)
        return definition_from_emd_data(data, source=str(path), origin="emd", base_dir=Path(os.path.abspath(path.parent)),
                                        check_file=check_file)
    if suffix == ".dlpk":
        emd_path = extract_package(path, cache_dir=cache_dir)
        data = parse_json(read_text(emd_path), f"model definition '{emd_path.name}' in package '{path.name}'", notes)
        check_package_references(data, emd_path, path.name)
        md = definition_from_emd_data(data, source=str(path), origin="dlpk", base_dir=emd_path.parent,
                                      check_file=check_file)
        md.package_path = Path(os.path.abspath(path))
        return md
    if suffix == ".ecd":
        data = parse_json(read_text(path), f"classifier definition '{path.name}'", notes)
        return definition_from_ecd_data(data, source=str(path), base_dir=Path(os.path.abspath(path.parent)),
                                        check_file=check_file)
    if suffix in ONNX_SUFFIXES:
        return definition_from_onnx(path)
    if suffix in TORCHSCRIPT_SUFFIXES + TORCH_EXPORT_SUFFIXES:
        return definition_from_torch(path, trust)
    raise ModelDefinitionError(
        f"Model '{path.name}' has an unknown extension '{suffix}': expected .emd, .dlpk, .ecd, .onnx, "
        ".pt/.pth/.torchscript (TorchScript) or .pt2 (torch.export)"
    )

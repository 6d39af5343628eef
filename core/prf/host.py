# SPDX-License-Identifier: GPL-2.0-or-later
"""Hosting a model's own Python raster function (the Esri PRF contract).

A model trained outside the configurations the plugin runs natively brings its own
inference code: ``InferenceFunction`` in the .emd names a ``.py`` next to it (or inside
the .dlpk).  This module loads that class and drives it the way ArcGIS does (see
``esri-compat.md`` sections 1-2): ``initialize(model=..., device=...)``,
``getParameterInfo()``, ``getConfiguration(**arguments)``, ``updateRasterInfo(**kwargs)``,
then per tile ``updatePixels(tlc, shape, props, **pixelBlocks)`` (Classify Pixels,
Detect Change) or ``vectorize(**pixelBlocks)`` on a chip stack (Classify Objects).

Our reader, tiler and writers stay in charge: the function only transforms blocks,
so streaming, georeferencing, NoData, progress and cancellation work as for any model.

A Python file that came with a model is someone else's code: it runs only when the
caller says so (``allowed``), and the log names the file and its SHA-256.  This module
never imports ``qgis``; the algorithms turn the plugin setting and the per-run
parameter into ``allowed``.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments.specs import parse_arguments_text
from ..errors import ArgumentError, DLToolsError, ModelDefinitionError
from ..model.definition import ModelDefinition
from ..model.function_source import (
    function_path,
    model_arguments,
    raster_parameters,
    sha256_of,
    shown_path,
    typed_value,
)
from ..progress import NullProgress, Progress
from .configuration import Configuration, read_configuration
from .errors import CustomCodeRefusedError, CustomFunctionError
from .features import feature_set, field_list
from .function_trust import function_allowed
from .loading import ModelModules
from .raster_info import read_output, update_kwargs

__all__ = ["PARAMETER_NAME", "SETTING_NAME", "CustomCodeRefusedError", "CustomFunctionError", "PythonRasterFunction",
           "refusal_message", "without_normalisation"]

#: The id of the plugin setting and of the per-run parameter; named in every refusal.
SETTING_NAME = "Allow every model's own code (Python or TorchScript)"
PARAMETER_NAME = "ALLOW_CUSTOM_CODE"


def refusal_message(md: ModelDefinition, path: Path) -> str:
    return (f"The model runs its own Python code: '{shown_path(md, path)}' (InferenceFunction). That file came "
            "with the model and can do anything your user account can: read or delete files, send data away, "
            "install software. It is not run unless you allow it. If you trust whoever made the model, allow "
            f"custom code for this run (the '{PARAMETER_NAME}' parameter, 'Allow the model's own code' in "
            "the dialog), trust this model's code in the tool's dialog (its .py files, by SHA-256), or allow it "
            f"for every run in Processing > Options > Providers > Deep Learning Tools > '{SETTING_NAME}'. "
            "Otherwise ask for the model as ONNX, which the plugin runs without any of its code.")




# ------------------------------------------------------------------------------------------------ without running it




# ------------------------------------------------------------------------------------------------ running it
def _frames(exc: BaseException, folder: Path) -> list[str]:
    """The traceback lines that are in the function's own files (its folder)."""
    lines = []
    root = str(folder.resolve())
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            inside = str(Path(frame.filename).resolve()).startswith(root)
        except OSError:
            inside = False
        if inside:
            code = f": {frame.line}" if frame.line else ""
            lines.append(f"  File '{Path(frame.filename).name}', line {frame.lineno}, in {frame.name}{code}")
    return lines


class PythonRasterFunction:
    """One instance of the model's PRF class, initialised, with every call guarded.

    ``allowed`` must be True (the user's decision); otherwise construction raises
    :class:`CustomCodeRefusedError` with a message that explains the risk and how to allow it.
    """

    _counter = itertools.count()

    def __init__(self, md: ModelDefinition, allowed: bool, device: Any = None,
                 progress: Progress | None = None, helpers: Path | None = None) -> None:
        """``helpers``: where the function's helper modules are when that is not the function's own folder (a Dask
        worker runs the file shipped to it, its helpers stay in the model's folder)."""
        self.md = md
        self.progress = progress or NullProgress()
        path = function_path(md)
        if path is None:
            raise ModelDefinitionError(f"InferenceFunction '{md.inference_function}' was not found next to the "
                                       "model definition")
        self.path = path
        self.shown = shown_path(md, path)
        if not function_allowed(md, allowed):
            raise CustomCodeRefusedError(refusal_message(md, path))
        self.sha256 = sha256_of(path)
        self.progress.info(f"Running the model's own Python code: '{self.shown}' (SHA-256 {self.sha256})")
        self.modules = ModelModules([path.parent] + ([helpers] if helpers is not None else []))
        self._logged = 0
        self.where = "loading the function"
        module = self._load_module()
        cls = self._find_class(module)
        self.obj = self._call(cls, "creating the function object")
        self.device_id = self._device_id(device)
        if callable(getattr(self.obj, "initialize", None)):  # optional in Esri's contract
            self._call(self.obj.initialize, "initialize", model=self._model_argument(), device=self.device_id)
        raw = self._call(getattr(self.obj, "getParameterInfo", None), "getParameterInfo") or []
        if not isinstance(raw, list) or not all(isinstance(p, dict) and "name" in p for p in raw):
            raise CustomFunctionError(f"getParameterInfo() of '{self.shown}' must return a list of dicts with a "
                                      f"'name', not {type(raw).__name__}")
        self.parameter_info: list[dict[str, Any]] = raw
        self.tool_inputs = 1
        if callable(getattr(self.obj, "selectRasters", None)):
            self.progress.warning(f"'{self.shown}' defines selectRasters, which this plugin does not call: every raster "
                                  "parameter is read for every block")

    @staticmethod
    def refuse_unless(md: ModelDefinition, allowed: bool) -> None:
        """Refuse early (before any file is read) when the model's code may not run."""
        path = function_path(md)
        if path is not None and not function_allowed(md, allowed):
            raise CustomCodeRefusedError(refusal_message(md, path))

    # -- loading ---------------------------------------------------------------------------------
    def _load_module(self) -> Any:
        name = f"dltools_custom_function_{next(self._counter)}_{self.path.stem}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            raise CustomFunctionError(f"'{self.shown}' cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        self._call(spec.loader.exec_module, "loading the module", module)  # helpers beside it import (loading.py)
        return module

    def _find_class(self, module: Any) -> type:
        by_name = getattr(module, self.path.stem, None)
        if isinstance(by_name, type):
            return by_name
        found = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__
                 and callable(getattr(v, "getParameterInfo", None))]
        if len(found) != 1:
            raise CustomFunctionError(
                f"'{self.shown}' must define a class named '{self.path.stem}' (as Esri's functions do), or exactly "
                f"one class with getParameterInfo; found {len(found)}")
        return found[0]

    def _model_argument(self) -> str:
        """``initialize(model=...)``: the .emd path when there is one, else the JSON text."""
        if self.md.origin == "emd":
            return str(self.md.source)
        if self.md.origin == "dlpk" and self.md.base_dir is not None:
            emds = sorted(self.md.base_dir.glob("*.emd"))
            if emds:
                return str(emds[0])
        return json.dumps(self.md.raw)

    @staticmethod
    def _device_id(device: Any) -> int:
        """ArcGIS's convention: a GPU id, or -1 for the CPU."""
        kind = getattr(device, "kind", "cpu")
        return int(getattr(device, "gpu_id", 0)) if kind == "gpu" else -1

    def _call(self, func: Callable | None, what: str, *args: Any, **kwargs: Any) -> Any:
        if func is None:
            raise CustomFunctionError(f"'{self.shown}' has no {what} method, which the tool needs")
        try:
            with self.modules.active():
                return func(*args, **kwargs)
        except DLToolsError:
            raise
        except Exception as exc:  # the function's own error: show where in its code
            frames = _frames(exc, self.path.parent)
            where = "\n".join(frames) if frames else "  (no line of the function itself is in the traceback)"
            raise CustomFunctionError(
                f"The model's Python function '{self.shown}' failed in {what}{self.where_text()}: "
                f"{type(exc).__name__}: {exc}\n{where}\nNo output was written.") from exc
        finally:
            self._log_helpers()

    def _log_helpers(self) -> None:
        """Name each file the function imported from the model's folder, with its SHA-256, once."""
        hashes = self.modules.hashes
        if len(hashes) > self._logged:
            for path, digest in list(hashes.items())[self._logged:]:
                self.progress.info(f"The model's function imported '{path.name}' from the model's folder "
                                   f"(SHA-256 {digest})")
            self._logged = len(hashes)

    def where_text(self) -> str:
        return f" on {self.where}" if self.where and not self.where.startswith("loading") else ""

    # -- the contract ----------------------------------------------------------------------------
    def arguments(self) -> list[dict[str, Any]]:
        """The function's arguments: its parameters but model, device and the rasters the tool fills
        (``tool_inputs``: the first one, the first two for Detect Change)."""
        return model_arguments(self.parameter_info, self.tool_inputs)

    def resolve_arguments(self, given: str | dict | None) -> dict[str, Any]:
        """The user's ``name value`` pairs over the function's defaults, typed as ArcGIS passes them: every
        argument is there, None when it has neither a value nor a default."""
        params = {str(p["name"]): p for p in self.arguments()}
        lowered = {k.lower(): k for k in params}
        values: dict[str, Any] = {name: p.get("value") for name, p in params.items()}
        for name, raw in parse_arguments_text(given).items():
            key = lowered.get(name.lower())
            if key is None:
                self.progress.warning(f"Model argument '{name}' is not one of the function's arguments and was "
                                      f"ignored; its arguments: {', '.join(params) or 'none'}")
                continue
            values[key] = typed_value(params[key], raw)
        for name, p in params.items():
            if p.get("required") and values.get(name) in (None, ""):
                if str(p.get("dataType", "")).lower() in ("raster", "rasters"):
                    raise ArgumentError(f"Raster parameter '{name}' is required by the function: give a raster's path "
                                        f"in the model arguments ('{name} /path/to/{name}.tif')")
                raise ArgumentError(f"Model argument '{name}' is required by the function: give it in the model "
                                    f"arguments ('{name} <value>')")
        return values

    def rasters(self) -> list[dict[str, Any]]:
        """The function's raster parameters (``dataType`` raster or rasters), in order; the first is the tool's
        input.  A function that declares none gets ``raster``, as Esri's template names it."""
        return raster_parameters(self.parameter_info) or [{"name": "raster", "dataType": "raster"}]

    def configuration(self, arguments: dict[str, Any]) -> Configuration:
        """``getConfiguration(**arguments)`` (optional: Esri's defaults without it), read."""
        func = getattr(self.obj, "getConfiguration", None)
        conf = self._call(func, "getConfiguration", **arguments) if callable(func) else None
        size = (self.md.image_width, self.md.image_height)
        read = read_configuration(conf, size, self.shown)
        if read.hints:
            self.progress.info(f"getConfiguration() of '{self.shown}' asks for "
                               + ", ".join(f"{k} {v}" for k, v in read.hints.items())
                               + ": hints for ArcGIS's own block cache, without effect here (ignored)")
        return read

    def raster_info(self, scalars: dict[str, Any], inputs: dict[str, Any], metadata: dict[str, Any],
                    inherit: int) -> dict[str, Any]:
        """``updateRasterInfo`` (optional) with Esri's keyword arguments (:mod:`.raster_info`): the output's band
        count, pixel type, NoData and attribute table."""
        kwargs = update_kwargs(scalars, inputs, metadata, inherit)
        inherited = kwargs["output_info"].get("noData")
        func = getattr(self.obj, "updateRasterInfo", None)
        got = self._call(func, "updateRasterInfo", **kwargs) if callable(func) else None
        return read_output(got, kwargs, self.shown, inherited)

    def key_metadata(self, band_index: int, given: dict[str, Any]) -> dict[str, Any]:
        """``updateKeyMetadata(names, bandIndex, **keyMetadata)``: the output's key metadata (-1: the dataset)."""
        got = self._call(self.obj.updateKeyMetadata, "updateKeyMetadata", (), band_index, **given)
        if got is None:  # returned nothing (Esri's FuzzyMembership): no key metadata to write
            return {}
        if not isinstance(got, dict):
            raise CustomFunctionError(f"updateKeyMetadata() of '{self.shown}' must return a dict, not "
                                      f"{type(got).__name__}")
        return got

    def update_pixels(self, tlc: tuple[float, float], shape: tuple[int, int, int], props: dict[str, Any],
                      blocks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        func = getattr(self.obj, "updatePixels", None)
        got = self._call(func, "updatePixels", tlc, shape, props, **blocks)
        return got if isinstance(got, dict) else blocks

    def vectorize(self, blocks: dict[str, Any]) -> dict[str, Any]:
        """``vectorize(**pixelBlocks)``: its ``output_vectors`` as a feature set (:func:`.features.feature_set`)."""
        return feature_set(self._call(getattr(self.obj, "vectorize", None), "vectorize", **blocks), self.shown)

    def fields(self) -> list[dict[str, Any]]:
        func = getattr(self.obj, "getFields", None)
        if func is None:
            return []
        return field_list(self._call(func, "getFields"), self.shown)

    def geometry_type(self) -> int:
        func = getattr(self.obj, "getGeometryType", None)
        return int(self._call(func, "getGeometryType")) if func is not None else 4






def without_normalisation(md: ModelDefinition, data_range: tuple[float, float] | None) -> ModelDefinition:
    """A copy of ``md`` whose normaliser only applies the function's dataRange (PRFs get raw pixels)."""
    return replace(md, normalization_stats=None, data_range=data_range, divide_by_255=False,
                   standardization_mean=None, standardization_std=None, framework=None, arcgis_learn_version=None)

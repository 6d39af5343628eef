# SPDX-License-Identifier: GPL-2.0-or-later
"""A model's own Python function as the "model" of a block task, here and on Dask workers.

Every tool calls its model through the block engine (:mod:`core.engine.blocks`): a :class:`FunctionModel` is what
a task's ``infer`` gets when the model is a Python raster function, and :func:`function_model_ref` says how a Dask
worker opens the same function from the file shipped to it (:class:`FunctionOpener`), so a function runs on a
cluster exactly as a model file does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..model.definition import ModelDefinition
from ..model.function_source import sha256_of
from ..progress import Progress
from .host import CustomCodeRefusedError, CustomFunctionError, PythonRasterFunction


class FunctionModel:
    """The "model" a custom function's block task calls: the function object, and the seconds spent in it."""

    def __init__(self, prf: PythonRasterFunction) -> None:
        self.prf = prf
        self.model_seconds = 0.0
        self.calls = 0

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        self.calls += 1
        try:
            return method(*args)
        finally:
            self.model_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Nothing to release (the function object goes with the worker's run)."""


@dataclass
class FunctionOpener:
    """How a Dask worker opens the model's function from the file shipped to it (:class:`core.engine.cluster.ModelRef`).

    It runs the code only because this run allowed it (``allowed``, the client's ALLOW_CUSTOM_CODE) and only if
    the file is the one the client hashed (SHA-256); it then replays what the client did (``initialize``,
    ``getConfiguration`` with the same arguments, ``updateRasterInfo``) so the function object is in the same
    state.  One object per worker thread."""

    md: ModelDefinition
    arguments: dict[str, Any]
    sha256: str
    allowed: bool
    raster_info: tuple | None = None  # the arguments of PythonRasterFunction.raster_info on the client
    per_thread: bool = True
    tool_inputs: int = 1

    def open(self, path: Any, device: Any) -> FunctionModel:
        path = Path(path)
        if not self.allowed:
            raise CustomCodeRefusedError(f"The model's own Python code '{path.name}' was sent to this worker without "
                                         "ALLOW_CUSTOM_CODE: it is not run")
        got = sha256_of(path)
        if got != self.sha256:
            raise CustomFunctionError(f"The function file '{path.name}' on this worker has SHA-256 {got}, not "
                                      f"{self.sha256} as on the client: it is not run")
        # The model's folder at the client's path (always with local/local:N, on this computer; a shared folder
        # for remote workers): initialize() gets the .emd path as in-process, and helper modules beside the
        # function import; otherwise the definition's JSON text, and only the shipped file.
        home = self.md.base_dir if self.md.base_dir is not None and Path(self.md.base_dir).is_dir() else None
        emd = self.md.origin == "emd" and home is not None and Path(self.md.source).is_file()
        md = replace(self.md, base_dir=path.parent, inference_function=path.name, origin="emd" if emd else "json",
                     source=self.md.source if emd else str(path))
        prf = PythonRasterFunction(md, True, device, helpers=Path(home) if home is not None else None)
        prf.tool_inputs = self.tool_inputs
        prf.configuration(self.arguments)
        if self.raster_info is not None:
            prf.raster_info(*self.raster_info)
        return FunctionModel(prf)


def function_model_ref(prf: PythonRasterFunction, md: ModelDefinition, arguments: dict[str, Any], device: Any,
                       progress: Progress, scheduler: str,
                       raster_info: tuple | None = None) -> Any:
    """The function's file as a :class:`core.engine.cluster.ModelRef`: shipped under its own name, checked by
    SHA-256 on each worker and run there because this run allowed it."""
    from ..backends import DeviceRequest
    from ..engine.cluster import ModelRef

    ref = ModelRef.for_file(prf.path, "python-function", device or DeviceRequest())
    progress.info(f"Running the model's own Python code on the Dask workers of '{scheduler.strip()}' (ALLOW_CUSTOM_CODE "
                  f"given for this run): '{prf.shown}' (SHA-256 {prf.sha256}), checked on each worker before it runs")
    return replace(ref, upload_name=prf.path.name,
                   opener=FunctionOpener(md, arguments, prf.sha256, True, raster_info, tool_inputs=prf.tool_inputs))

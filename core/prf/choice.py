# SPDX-License-Identifier: GPL-2.0-or-later
"""Which runs a model that has both a file the plugin runs natively and its own Python function.

ArcGIS always runs the function the ``.emd`` names.  The plugin runs ONNX and TorchScript files itself, and
arcgis.learn's standard functions (``ArcGISImageClassifier.py``, ``ArcGISObjectDetector.py``... and Living Atlas
variants such as ``corine_landcover_ArcGISImageClassifier.py``) are what it re-implements natively, so those stay
native.  Any other function is the model's own code, which can compute something else than the file alone: it
runs when custom code is allowed, as ArcGIS runs it; when it is not, the file runs natively and the log says that
the function was not run and that the results can differ from ArcGIS's.
"""

from __future__ import annotations

from dataclasses import replace

from ..model.definition import ModelDefinition
from ..model.function_source import function_path, shown_path
from ..progress import Progress
from .function_trust import ARCGIS_LEARN_FUNCTION, function_allowed

__all__ = ["ARCGIS_LEARN_FUNCTION", "model_to_run"]


def model_to_run(md: ModelDefinition, allowed: bool, progress: Progress) -> ModelDefinition:
    """``md`` as the tool should run it: with ``custom_function`` set when its own function runs (see the module
    text); a model without a native file is returned as it is (it runs its function, or is refused)."""
    if md.custom_function:
        return md
    path = function_path(md)
    if path is None or ARCGIS_LEARN_FUNCTION.search(path.name):
        return md
    shown = shown_path(md, path)
    if function_allowed(md, allowed):
        progress.info(f"The model has its own Python function '{shown}' (InferenceFunction) beside a file the plugin "
                      "runs natively: custom code is allowed, so the function runs, as ArcGIS runs it")
        return replace(md, custom_function=True)
    progress.warning(f"The model's own Python function '{shown}' (InferenceFunction) was not run: custom code is not "
                     "allowed, so its model file runs natively, and the results can differ from ArcGIS's, which runs "
                     "the function. Allow custom code (ALLOW_CUSTOM_CODE) to run it")
    return md

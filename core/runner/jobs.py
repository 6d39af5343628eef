# SPDX-License-Identifier: GPL-2.0-or-later
"""The engine functions a child process may run, by name: the child imports nothing a message names but these.

Each is the same function the algorithm would call in-process; the arguments and the result cross as pickles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _classify_pixels() -> Callable[..., Any]:
    from ..tools.classify_pixels.pipeline import classify_pixels

    return classify_pixels


def _detect_change() -> Callable[..., Any]:
    from ..tools.detect_change.pipeline import detect_change

    return detect_change


def _detect_objects() -> Callable[..., Any]:
    from ..tools.detect_objects.pipeline import detect_objects

    return detect_objects


def _classify_objects() -> Callable[..., Any]:
    from ..tools.classify_objects.separate import classify_objects_to_file

    return classify_objects_to_file


def _describe_load() -> Callable[..., Any]:
    from ..tools.describe.report import load_for_description

    return load_for_description


def _describe_backend() -> Callable[..., Any]:
    from ..tools.describe.report import backend_info

    return backend_info


def _load_definition() -> Callable[..., Any]:
    from ..model.loader import load_model_definition

    return load_model_definition


#: job name -> the function (imported when the child needs it, so a probe does not load every tool)
JOBS: dict[str, Callable[[], Callable[..., Any]]] = {
    "classify_pixels": _classify_pixels,
    "detect_change": _detect_change,
    "detect_objects": _detect_objects,
    "classify_objects": _classify_objects,
    "describe_load": _describe_load,
    "describe_backend": _describe_backend,
    "load_model_definition": _load_definition,
}


def job_function(name: str) -> Callable[..., Any]:
    """The function of job ``name``; a KeyError for a name that is not a job."""
    return JOBS[name]()

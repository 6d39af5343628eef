# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading the features a model's ``vectorize`` returns: which class, how confident.

Detect Objects and Classify Objects read the same Esri feature attributes, so they read them here, once:

* **the class**: by name first (``Class``, ``Classname``, ``ClassName``, ``Label``, ``class``, ``label``: Esri's
  detectors write ``Classname``/``Class``, its object classifier ``Label``), compared without case to the model
  definition's ``Classes``; then by value (``Classvalue``, ``ClassValue``, ``Value``, ``value``, or a name key
  holding a number);
* **the confidence**: ``Confidence`` (else ``Score``, else 100), on Esri's 0-100 scale; a value of at most 1 is
  taken as 0-1 (as Esri's own detectors return it) and scaled.
"""

from __future__ import annotations

import json
from typing import Any

from ..model.definition import ClassInfo
from .errors import CustomFunctionError

NAME_KEYS = ("Class", "Classname", "ClassName", "Label", "class", "label")
VALUE_KEYS = ("Classvalue", "ClassValue", "Value", "value")


def feature_class(attrs: dict[str, Any], classes: list[ClassInfo]) -> ClassInfo | None:
    """The class of ``classes`` a feature's attributes name (by name, then by value), or None."""
    by_name = {c.name.lower(): c for c in classes}
    by_value = {c.value: c for c in classes}
    for key in NAME_KEYS:
        if attrs.get(key) not in (None, "") and str(attrs[key]).lower() in by_name:
            return by_name[str(attrs[key]).lower()]
    for key in VALUE_KEYS + NAME_KEYS:
        try:
            value = int(attrs[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value in by_value:
            return by_value[value]
    return None


def given_name(attrs: dict[str, Any]) -> str | None:
    """The class name a feature gives, whatever the definition lists (None when it gives none)."""
    for key in NAME_KEYS:
        if attrs.get(key) not in (None, ""):
            return str(attrs[key])
    return None


def given_label(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes that could name the class, for a message that shows what the function returned."""
    return {k: attrs[k] for k in NAME_KEYS + VALUE_KEYS if k in attrs}


def feature_confidence(attrs: dict[str, Any]) -> float:
    """The confidence on the 0-100 scale; ValueError when it is not a number."""
    raw = attrs.get("Confidence", attrs.get("Score", 100.0))
    try:
        score = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"Confidence {raw!r} is not a number") from None
    return score * 100.0 if score <= 1.0 else score


def feature_attributes(feature: Any) -> dict[str, Any]:
    """A feature's ``attributes`` (an empty dict when it has none)."""
    attrs = feature.get("attributes") if isinstance(feature, dict) else None
    return attrs if isinstance(attrs, dict) else {}


def feature_set(got: Any, shown: str) -> dict[str, Any]:
    """What ``vectorize`` returned: ``{'output_vectors': <Esri JSON text or dict>}`` -> the feature set, checked."""
    if not isinstance(got, dict) or "output_vectors" not in got:
        raise CustomFunctionError(f"vectorize() of '{shown}' must return a dict with 'output_vectors' (the features "
                                  f"as Esri JSON text), not {type(got).__name__}")
    vectors = got["output_vectors"]
    try:
        data = json.loads(vectors) if isinstance(vectors, (str, bytes)) else vectors
    except ValueError as exc:
        raise CustomFunctionError(f"vectorize() of '{shown}' returned output_vectors that are not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("features", []), list):
        raise CustomFunctionError(f"vectorize() of '{shown}' must return output_vectors as a feature set "
                                  "{\"features\": [...]}")
    return data


def field_list(text: Any, shown: str) -> list[dict[str, Any]]:
    """What ``getFields`` returned (JSON text ``{"fields": [...]}``) -> the field entries, checked."""
    try:
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
        return list(data["fields"])
    except (ValueError, KeyError, TypeError):
        raise CustomFunctionError(f"getFields() of '{shown}' must return JSON text "
                                  "{\"fields\": [{\"name\": ..., \"type\": ...}]}") from None

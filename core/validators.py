# SPDX-License-Identifier: GPL-2.0-or-later
"""Validators for model-definition JSON: one set for every reader (.emd, .ecd, class info, Deepness).

Each takes the value (or the object and its key), checks it and returns it typed, or raises
:class:`~.errors.ModelDefinitionError` with a message that names the key at fault.  Readers with
stricter rules (the .ecd class info) turn them on with keyword options rather than keeping copies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .definition import ClassInfo
from .errors import ModelDefinitionError


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelDefinitionError(f"Cannot read '{path}': {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelDefinitionError(f"'{path.name}' is not UTF-8 text (byte {exc.start}): an .emd is a UTF-8 JSON file") from exc


def parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelDefinitionError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise ModelDefinitionError(f"{what} must be a JSON object ({{...}}), not {type(data).__name__}")
    return data


def as_int(data: dict[str, Any], key: str, *, minimum: int | None = None, required: bool = False,
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


def as_float(data: dict[str, Any], key: str) -> float | None:
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


def as_flag(data: dict[str, Any], key: str) -> int | None:
    if key not in data or data[key] is None:
        return None
    return int(as_bool(data[key], f"Key '{key}'"))


def float_list(value: Any, what: str) -> list[float]:
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
        val = as_int(item, "Value")
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

# SPDX-License-Identifier: GPL-2.0-or-later
"""Validators for model-definition JSON: one set for every reader (.emd, .ecd, class info, Deepness).

Each takes the value (or the object and its key), checks it and returns it typed, or raises
:class:`~core.errors.ModelDefinitionError` with a message that names the key at fault.  ``what``
is how the message names the value ("Key 'ImageHeight'", "class info: key 'MiniBatchSize'").

Readers with stricter rules turn them on with options rather than keeping copies: the
"Esri Extra Info" class info that *Deep Learning Model To Ecd* reads must spell numbers as
JSON numbers (``strict=True``: ``"4"`` is refused) and give every class a name and an RGB
colour (:func:`parse_classes` with ``strict=True``); an .emd, written by many tools, is read
leniently (``"4"`` is 4, a class without a name is named by its value).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError
from ..flags import parse_bool
from .definition import KNOWN_MODEL_TYPES, ClassInfo

#: The hint for a definition file that is not UTF-8 text.
EMD_IS_UTF8_JSON = "an .emd is a UTF-8 JSON file"


# ----------------------------------------------------------------------------------------------- files and JSON
def read_text(path: Path, what: str | None = None, expected: str = EMD_IS_UTF8_JSON) -> str:
    """A UTF-8 text file (a BOM tolerated); ``what`` names it in messages ("Class info file")."""
    named = f"{what} '{path}'" if what else f"'{path}'"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelDefinitionError(f"{named} does not exist") from None
    except OSError as exc:
        raise ModelDefinitionError(f"Cannot read {named}: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        short = f"{what} '{path.name}'" if what else f"'{path.name}'"
        raise ModelDefinitionError(f"{short} is not UTF-8 text (byte {exc.start}): {expected}") from exc


#: Deeper JSON than this is refused: real model definitions nest a few levels, and a deep one is an attack.
MAX_JSON_DEPTH = 64


def _depth(data: Any) -> int:
    """How deeply lists and objects nest in ``data`` (iterative: a deep value cannot overflow the stack)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(text: str, what: str, warnings: list[str] | None = None) -> dict[str, Any]:
    """A JSON object (never a list or a number), nested at most :data:`MAX_JSON_DEPTH` levels.

    A key given twice in one object keeps its last value, as JSON readers do, but never silently: each such key
    is added to ``warnings`` (when given), by name.
    """
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj and key not in duplicates:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ModelDefinitionError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError:
        raise ModelDefinitionError(f"{what} nests lists or objects too deeply to read (more than {MAX_JSON_DEPTH} "
                                   "levels): refused") from None
    if not isinstance(data, dict):
        raise ModelDefinitionError(f"{what} must be a JSON object ({{...}}), not {type(data).__name__}")
    if _depth(data) > MAX_JSON_DEPTH:
        raise ModelDefinitionError(f"{what} nests lists or objects more than {MAX_JSON_DEPTH} levels deep: refused")
    if warnings is not None:
        for key in duplicates:
            warnings.append(f"{what}: key '{key}' is given more than once in one object; the last value is used")
    return data


def read_json_file(path: Path, what: str, expected: str = "it must be a JSON file") -> dict[str, Any]:
    """A file holding one JSON object; every message names ``what`` and the file."""
    return parse_json(read_text(path, what, expected), f"{what} '{path.name}'")


# ----------------------------------------------------------------------------------------------- numbers and flags
def integer(value: Any, what: str, *, minimum: int | None = None, strict: bool = False) -> int:
    """An integer (4 or 4.0), never a bool or 4.5; text such as ``"4"`` only when not ``strict``."""
    if isinstance(value, bool):
        raise ModelDefinitionError(f"{what} must be an integer, not {json.dumps(value)}")
    if strict and not isinstance(value, (int, float)):
        raise ModelDefinitionError(f"{what} must be an integer, not {json.dumps(value)}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ModelDefinitionError(f"{what} must be an integer, not {json.dumps(value)}") from None
    if not as_float.is_integer():
        raise ModelDefinitionError(f"{what} must be an integer, not {json.dumps(value)}")
    result = int(as_float)
    if minimum is not None and result < minimum:
        raise ModelDefinitionError(f"{what} must be at least {minimum}, not {result}")
    return result


def as_int(data: dict[str, Any], key: str, *, minimum: int | None = None, required: bool = False,
           default: int | None = None, strict: bool = False) -> int | None:
    """``data[key]`` as an integer; ``default`` when absent or null (an error when ``required``)."""
    if key not in data or data[key] is None:
        if required:
            raise ModelDefinitionError(f"Key '{key}' is missing from the model definition")
        return default
    return integer(data[key], f"Key '{key}'", minimum=minimum, strict=strict)


def as_float(data: dict[str, Any], key: str, *, minimum: float | None = None,
             maximum: float | None = None) -> float | None:
    """``data[key]`` as a finite number within [minimum, maximum] (the matching argument's range)."""
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if isinstance(value, bool):
        raise ModelDefinitionError(f"Key '{key}' must be a number, not {json.dumps(value)}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ModelDefinitionError(f"Key '{key}' must be a number, not {json.dumps(value)}") from None
    if not math.isfinite(result):
        raise ModelDefinitionError(f"Key '{key}' must be a finite number, not {value}")
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        bounds = " and ".join(b for b in (f"at least {minimum:g}" if minimum is not None else "",
                                          f"at most {maximum:g}" if maximum is not None else "") if b)
        raise ModelDefinitionError(f"Key '{key}' must be {bounds}, not {json.dumps(value)}")
    return result


def as_bool(value: Any, what: str) -> bool:
    """A definition's boolean (:func:`core.flags.parse_bool`; an empty text is false), or an error naming it."""
    parsed = False if isinstance(value, str) and not value.strip() else parse_bool(value)
    if parsed is not None:
        return parsed
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
        if not math.isfinite(float(item)):
            raise ModelDefinitionError(f"{what} must be a list of finite numbers; found {item}")
        out.append(float(item))
    return out


# ----------------------------------------------------------------------------------------------- definition keys
def require_known_model_type(model_type: Any, named: str) -> str:
    """``model_type`` if the plugin knows it; ``named`` is how the message shows it ("ModelType 'X'")."""
    if model_type not in KNOWN_MODEL_TYPES:
        raise ModelDefinitionError(f"{named} is unknown; known types: {', '.join(KNOWN_MODEL_TYPES)}")
    return model_type


def data_range(value: Any, what: str) -> tuple[float, float]:
    """``DataRange``: ``[min, max]`` with min < max."""
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value) or value[0] >= value[1]):
        raise ModelDefinitionError(f"{what} must be [min, max] with min < max, not {json.dumps(value)}")
    return float(value[0]), float(value[1])


def check_model_padding(padding: int, height: int, width: int, named: str, tile: str = "a") -> None:
    """A ``ModelPadding`` must leave a centre: less than half the tile; ``named`` leads the message."""
    if padding * 2 >= min(height, width):
        raise ModelDefinitionError(f"{named} {padding} leaves no centre in {tile} {width}x{height} tile: it must be "
                                   "less than half the tile")


def parse_classes(value: Any, key: str = "Classes", *, where: str = "", strict: bool = False) -> list[ClassInfo]:
    """``Classes``: a list of {Value, Name, Color} with unique values.

    Lenient (.emd): a Name may be a number (real files do that) or absent (then the value names
    the class), a Color is optional and may carry alpha.  ``strict`` (class info): every class needs
    a non-empty Name, an integer Value and exactly [red, green, blue] integers 0-255.  ``where``
    prefixes every message ("class info: Classes[1] ...").
    """
    prefix = f"{where}: " if where else ""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelDefinitionError(f"{prefix}Key '{key}' must be a list of {{Value, Name, Color}} objects")
    classes: list[ClassInfo] = []
    seen: dict[int, tuple[int, str]] = {}
    for i, item in enumerate(value):
        at = f"{prefix}{key}[{i}]"
        if not isinstance(item, dict):
            raise ModelDefinitionError(f"{at} must be an object with Value, Name and Color")
        cls = _strict_class(item, at) if strict else _lenient_class(item, at)
        if cls.value in seen:
            j, other = seen[cls.value]
            if strict:
                raise ModelDefinitionError(f"{at} ('{cls.name}') repeats Value {cls.value} of {key}[{j}] ('{other}'): "
                                           "class values must be unique")
            raise ModelDefinitionError(f"{prefix}{key}: Value {cls.value} is used twice ('{other}' and '{cls.name}')")
        seen[cls.value] = (i, cls.name)
        classes.append(cls)
    return classes


def _lenient_class(item: dict[str, Any], at: str) -> ClassInfo:
    if "Value" not in item:
        raise ModelDefinitionError(f"{at} has no 'Value'")
    val = integer(item["Value"], "Key 'Value'") if item["Value"] is not None else None
    if val is None:
        raise ModelDefinitionError(f"{at} has no 'Value'")
    name_raw = item.get("Name", str(val))
    if isinstance(name_raw, (dict, list)) or name_raw is None:
        raise ModelDefinitionError(f"{at} 'Name' must be text or a number")
    name = str(name_raw).strip() or str(val)
    color = None
    if item.get("Color") is not None:
        c = item["Color"]
        if (not isinstance(c, list) or len(c) < 3
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in c[:3])):
            raise ModelDefinitionError(f"{at} ('{name}') 'Color' must be [red, green, blue]")
        rgb = tuple(int(round(x)) for x in c[:3])
        if any(x < 0 or x > 255 for x in rgb):
            raise ModelDefinitionError(f"{at} ('{name}') 'Color' values must be 0-255, not {c}")
        color = (rgb[0], rgb[1], rgb[2])
    return ClassInfo(val, name, color)


def _strict_class(item: dict[str, Any], at: str) -> ClassInfo:
    name_raw = item.get("Name")
    if name_raw is None:
        raise ModelDefinitionError(f"{at} has no 'Name'")
    if isinstance(name_raw, bool) or not isinstance(name_raw, (str, int, float)):
        raise ModelDefinitionError(f"{at} 'Name' must be text, not {json.dumps(name_raw)}")
    name = str(name_raw)
    if not name.strip():
        raise ModelDefinitionError(f"{at} 'Name' is empty")
    label = f"{at} ('{name}')"
    if "Value" not in item:
        raise ModelDefinitionError(f"{label} has no 'Value'")
    value = integer(item["Value"], f"{label} 'Value'", strict=True)
    if "Color" not in item:
        raise ModelDefinitionError(f"{label} has no 'Color' ([red, green, blue], each 0-255)")
    color = item["Color"]
    if not isinstance(color, list) or len(color) != 3:
        raise ModelDefinitionError(f"{label} 'Color' must be a list [red, green, blue], not {json.dumps(color)}")
    rgb = []
    for channel, c in zip(("red", "green", "blue"), color):
        level = integer(c, f"{label} 'Color' {channel}", strict=True)
        if not 0 <= level <= 255:
            raise ModelDefinitionError(f"{label} 'Color' {channel} is {level}: colour values must be 0-255")
        rgb.append(level)
    return ClassInfo(value, name, (rgb[0], rgb[1], rgb[2]))

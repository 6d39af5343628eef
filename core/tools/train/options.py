# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model's ARGUMENTS, in ArcGIS's string form (``"name value;name value"``).

Every model: ``seed`` (0), ``lr_finder_steps`` (30), ``threads`` (all cores).  UnetClassifier and DeepLab, as
arcgis.learn takes them: ``class_balancing`` (weight each class's loss by the inverse of its pixel share),
``focal_loss`` (down-weight pixels already classified with confidence) and ``ignore_classes`` (class values that
incur no loss; the model then never predicts them nor the background, which the ``.emd``'s ``ignore_mapped_class``
tells Classify Pixels).  Unknown names and values of the wrong type are refused, naming the known ones.
"""

from __future__ import annotations

from typing import Any

from ...errors import ArgumentError
from ...flags import parse_bool

PIXEL_ONLY = ("class_balancing", "focal_loss", "ignore_classes")
TYPES: dict[str, str] = {"seed": "int", "lr_finder_steps": "int", "threads": "int", "class_balancing": "bool",
                         "focal_loss": "bool", "ignore_classes": "list"}


def _value(key: str, text: str) -> Any:  # noqa: ANN401 - int, bool or list of int
    kind = TYPES[key]
    try:
        if kind == "bool":
            flag = parse_bool(text)
            if flag is None:
                raise ValueError(text)
            return flag
        if kind == "list":
            return [int(v) for v in text.strip("[]").replace(",", " ").split()]
        return int(text)
    except ValueError:
        raise ArgumentError(f"ARGUMENTS: {key} must be {'a list of class values' if kind == 'list' else kind}, "
                            f"not '{text}'") from None


def parse_arguments(text: str, model_type: str = "UnetClassifier") -> dict[str, Any]:
    """``"seed 3;class_balancing true;ignore_classes [2]"`` -> typed values."""
    values: dict[str, Any] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        key, _, value = part.strip().partition(" ")
        key, value = key.strip(), value.strip()
        if key not in TYPES:
            raise ArgumentError(f"ARGUMENTS: '{key}' is not an argument of Train Deep Learning Model (known: "
                                f"{', '.join(TYPES)})")
        if key in PIXEL_ONLY and model_type not in ("UnetClassifier", "DeepLab"):
            raise ArgumentError(f"ARGUMENTS: {key} is for UnetClassifier and DeepLab, not {model_type}")
        values[key] = _value(key, value)
    return values


def class_weights(pixels: list[int], values: list[int], balance: bool, ignore: list[int]) -> list[float] | None:
    """Loss weight per training index (background first), or None for plain cross-entropy.

    ``class_balancing``: a class weighs (all class pixels) / (its pixels), 0 when it has none, and the background
    the mean of the classes' weights (arcgis.learn's rule); ``ignore_classes``: their weight and the background's
    are 0."""
    if not balance and not ignore:
        return None
    n = len(pixels)
    weights = [1.0] * n
    if balance:
        total = float(sum(pixels[1:]))
        classes = [total / p if p else 0.0 for p in pixels[1:]]
        weights = [sum(classes) / len(classes) if classes else 1.0] + classes
    for index in ignored_indexes(values, ignore):
        weights[index] = 0.0
    return weights


def ignored_indexes(values: list[int], ignore: list[int]) -> list[int]:
    """``ignore_mapped_class``: the background (0) and the training index of each ignored class value."""
    if not ignore:
        return []
    unknown = [v for v in ignore if v not in values]
    if unknown:
        raise ArgumentError(f"ARGUMENTS: ignore_classes names {unknown}, which are not classes of the training data "
                            f"({', '.join(str(v) for v in values)})")
    return [0] + [values.index(v) + 1 for v in ignore]

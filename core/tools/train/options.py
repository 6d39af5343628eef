# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model's ARGUMENTS, in ArcGIS's string form (``"name value;name value"``).

Every model: ``seed`` (0), ``lr_finder_steps`` (30), ``threads`` (all cores).  UnetClassifier and DeepLab, as
arcgis.learn takes them: ``class_balancing`` (weight each class's loss by the inverse of its pixel share),
``focal_loss`` (down-weight pixels already classified with confidence) and ``ignore_classes`` (class values that
incur no loss; the model then never predicts them nor the background, which the ``.emd``'s ``ignore_mapped_class``
tells Classify Pixels).  SingleShotDetector: ``grids``, ``zooms``, ``ratios`` (its anchors), ``focal_loss`` and
``location_loss_factor``; RetinaNet: ``scales`` and ``ratios`` (:mod:`.anchor_detection`).  FasterRCNN and
MaskRCNN: torchvision's ``box_batch_size_per_image`` (512) and ``box_positive_fraction`` (0.25), the region
proposals the box head learns from per chip, which arcgis.learn passes to the network too
(:func:`.detection.set_box_sampling`).  ``monitor`` (ArcGIS's MONITOR): ``valid_loss`` (the default) or, for
detectors, ``average_precision``: which epoch is kept and what STOP_TRAINING watches.  Lists are written as
Python lists (``grids [4, 2]``, ``ratios [[1.0, 1.0], [1.0, 0.5]]``).  Unknown names, names of another family and
values of the wrong type are refused, naming the known ones.
"""

from __future__ import annotations

import ast
from typing import Any

from ...errors import ArgumentError
from ...flags import parse_bool

PIXEL_MODELS = ("UnetClassifier", "DeepLab")
#: arguments of some families only -> those families
FAMILY_ONLY: dict[str, tuple[str, ...]] = {
    "class_balancing": PIXEL_MODELS, "ignore_classes": PIXEL_MODELS, "focal_loss": (*PIXEL_MODELS, "SingleShotDetector"),
    "grids": ("SingleShotDetector",), "zooms": ("SingleShotDetector",), "location_loss_factor": ("SingleShotDetector",),
    "ratios": ("SingleShotDetector", "RetinaNet"), "scales": ("RetinaNet",),
    "box_batch_size_per_image": ("FasterRCNN", "MaskRCNN"), "box_positive_fraction": ("FasterRCNN", "MaskRCNN")}
#: ArcGIS's MONITOR values (either case) -> TrainSettings.monitor
MONITORS = {"valid_loss": "valid_loss", "average_precision": "average_precision"}
DETECTOR_MODELS = ("FasterRCNN", "MaskRCNN", "SingleShotDetector", "RetinaNet")
TYPES: dict[str, str] = {"seed": "int", "lr_finder_steps": "int", "threads": "int", "class_balancing": "bool",
                         "focal_loss": "bool", "ignore_classes": "list", "grids": "literal", "zooms": "literal",
                         "ratios": "literal", "scales": "literal", "location_loss_factor": "fraction",
                         "box_batch_size_per_image": "int", "box_positive_fraction": "fraction", "monitor": "monitor"}


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
        if kind == "literal":  # a list of numbers (or of number pairs), checked by the family that takes it
            value = ast.literal_eval(text)
            if not isinstance(value, (list, tuple)):
                raise ValueError(text)
            return [list(v) if isinstance(v, tuple) else v for v in value]
        if kind == "monitor":
            if text.lower() not in MONITORS:
                raise ValueError(text)
            return MONITORS[text.lower()]
        if kind == "fraction":
            value = float(text)
            if not 0 < value < 1:
                raise ValueError(text)
            return value
        return int(text)
    except (ValueError, SyntaxError):
        what = {"list": "a list of class values", "literal": "a list, e.g. [1.0, 0.5]",
                "monitor": "valid_loss or average_precision",
                "fraction": "a number between 0 and 1"}.get(kind, kind)
        raise ArgumentError(f"ARGUMENTS: {key} must be {what}, "
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
        if key in FAMILY_ONLY and model_type not in FAMILY_ONLY[key]:
            raise ArgumentError(f"ARGUMENTS: {key} is for {' and '.join(FAMILY_ONLY[key])}, not {model_type}")
        values[key] = _value(key, value)
    if values.get("monitor") == "average_precision" and model_type not in DETECTOR_MODELS:
        raise ArgumentError(f"ARGUMENTS: monitor average_precision is for the detectors "
                            f"({', '.join(DETECTOR_MODELS)}); {model_type} monitors valid_loss")
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

# SPDX-License-Identifier: GPL-2.0-or-later
"""The training-data folders ArcGIS's and this plugin's export tools write, read without loading any chip.

A folder holds ``map.txt`` (one chip a line: ``images\\000000000.tif labels\\000000000.tif``),
``esri_model_definition.emd`` (the ``Classes`` with their values, names and colours) and
``esri_accumulated_stats.json`` (``MetaDataMode``: the layout).  ``Classified_Tiles`` pairs each image chip with a
label raster of class values (0: no class); ``Labeled_Tiles`` with a PASCAL-VOC-like ``.xml`` whose first
``object/name`` is the chip's class (its name, or its value as text).  Every problem is named here, before training
starts: a missing folder or file, an empty folder, a layout this tool does not train, a chip whose label holds a
class the ``.emd`` does not list.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputDataError

#: layout -> the model types that train on it
TRAINABLE: dict[str, tuple[str, ...]] = {
    "Classified_Tiles": ("UnetClassifier", "DeepLab"),
    "Labeled_Tiles": ("FeatureClassifier",),
    "PASCAL_VOC_rectangles": ("FasterRCNN", "SingleShotDetector", "RetinaNet"),
    "RCNN_Masks": ("MaskRCNN",),
}
#: layouts ArcGIS exports that this tool does not train (yet), named in the refusal
KNOWN_LAYOUTS = ("KITTI_rectangles", "MultiLabeled_Tiles", "Export_Tiles",
                 "CycleGAN", "Imagenet", "Panoptic_Segmentation")

EXPECTED_FILES = ("map.txt, images/, labels/, esri_model_definition.emd and esri_accumulated_stats.json, as Export "
                  "Training Data For Deep Learning writes them")


@dataclass(frozen=True)
class TrainingClass:
    """One class of the training data, as the export's ``.emd`` lists it."""

    value: int
    name: str
    color: tuple[int, int, int]


@dataclass
class TrainingData:
    """A training-data folder: its layout, its chips (image, label) and its classes."""

    folder: Path
    layout: str
    images: list[Path]
    labels: list[Path]
    classes: list[TrainingClass]
    emd: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.images)

    def class_index(self) -> dict[int, int]:
        """Label value -> training index: 0 (background) -> 0, ``Classes[i].Value`` -> i + 1 (pixel models)."""
        return {0: 0, **{c.value: i + 1 for i, c in enumerate(self.classes)}}


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"Cannot read {what} '{path}': {exc}") from exc
    if not isinstance(data, dict):
        raise InputDataError(f"{what} '{path}' is not a JSON object")
    return data


def _classes(emd: dict, path: Path) -> list[TrainingClass]:
    found = []
    for i, item in enumerate(emd.get("Classes") or []):
        if not isinstance(item, dict):
            raise InputDataError(f"Classes[{i}] in '{path}' is not an object with Value, Name and Color")
        value = item.get("Value", item.get("ClassValue"))
        name = item.get("Name", item.get("ClassName"))
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise InputDataError(f"Classes[{i}] in '{path}' has no integer Value (or ClassValue)") from None
        color = item.get("Color") if isinstance(item.get("Color"), list) and len(item["Color"]) >= 3 else [0, 0, 0]
        found.append(TrainingClass(value=value, name=str(name if name is not None else value),
                                   color=(int(color[0]), int(color[1]), int(color[2]))))
    if not found:
        raise InputDataError(f"'{path}' lists no Classes: the training data must name the classes of its labels "
                             "(Value, Name, Color), as Export Training Data For Deep Learning writes them")
    if 0 in [c.value for c in found]:
        raise InputDataError(f"'{path}' lists a class with Value 0, which the label chips use for 'no class'")
    return found


def detect_layout(folder: Path) -> str:
    """``MetaDataMode`` of ``esri_accumulated_stats.json``, or the refusal that names what is missing."""
    if not folder.is_dir():
        raise InputDataError(f"Training data folder '{folder}' does not exist or is not a folder")
    if not any(folder.iterdir()):
        raise InputDataError(f"Training data folder '{folder}' is empty: expected {EXPECTED_FILES}")
    stats_path = folder / "esri_accumulated_stats.json"
    if not stats_path.is_file():
        raise InputDataError(f"Training data folder '{folder}' has no esri_accumulated_stats.json, so its layout is "
                             f"unknown: expected {EXPECTED_FILES}")
    layout = _read_json(stats_path, "training data statistics").get("MetaDataMode")
    if not isinstance(layout, str) or not layout:
        raise InputDataError(f"'{stats_path}' has no MetaDataMode (the layout, e.g. Classified_Tiles)")
    if layout not in TRAINABLE:
        known = " (an ArcGIS layout)" if layout in KNOWN_LAYOUTS else ""
        raise InputDataError(f"Training data folder '{folder}' is in the '{layout}' layout{known}, which Train Deep "
                             f"Learning Model does not train: it reads {', '.join(TRAINABLE)}")
    return layout


def _pairs(folder: Path, label_must_exist: bool = True) -> list[tuple[Path, Path, int]]:
    map_path = folder / "map.txt"
    if not map_path.is_file():
        raise InputDataError(f"Training data folder '{folder}' has no map.txt (the list of chips): expected "
                             f"{EXPECTED_FILES}")
    pairs = []
    for number, line in enumerate(map_path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InputDataError(f"map.txt line {number} names no label for '{parts[0]}': each line is "
                                 "'images\\<chip> labels\\<label>'")
        image, label = (folder / p.replace("\\", "/") for p in (parts[0], parts[-1]))
        for path in (image, label) if label_must_exist else (image,):
            if not path.is_file():
                raise InputDataError(f"map.txt line {number} names '{path.relative_to(folder)}', which is not in "
                                     f"'{folder}'")
        pairs.append((image, label, number))
    if not pairs:
        raise InputDataError(f"map.txt in '{folder}' lists no chips: the training data folder is empty")
    return pairs


def xml_class(path: Path) -> str:
    """The first ``object/name`` of a Labeled_Tiles label file."""
    try:
        node = ET.parse(path).getroot().find("object/name")
    except (OSError, ET.ParseError) as exc:
        raise InputDataError(f"Label file '{path}' is not readable XML: {exc}") from exc
    if node is None or not (node.text or "").strip():
        raise InputDataError(f"Label file '{path}' has no object/name (the chip's class)")
    return node.text.strip()


def read_training_folder(folder: str | Path, model_type: str) -> TrainingData:
    """The training data in ``folder``, checked against ``model_type`` (the layouts it trains on)."""
    folder = Path(folder)
    layout = detect_layout(folder)
    if model_type not in TRAINABLE[layout]:
        wants = next((lay for lay, types in TRAINABLE.items() if model_type in types), None)
        raise InputDataError(f"{model_type} trains on {wants or 'a layout this tool does not read'} training data, but "
                             f"'{folder}' is {layout}: export {wants} chips, or choose "
                             f"{' or '.join(TRAINABLE[layout])}")
    emd_path = folder / "esri_model_definition.emd"
    if not emd_path.is_file():
        raise InputDataError(f"Training data folder '{folder}' has no esri_model_definition.emd (the classes): "
                             f"expected {EXPECTED_FILES}")
    emd = _read_json(emd_path, "training data definition")
    classes = _classes(emd, emd_path)
    pairs = _pairs(folder, label_must_exist=layout != "RCNN_Masks")  # a chip without objects has no mask file
    data = TrainingData(folder=folder, layout=layout, images=[p[0] for p in pairs], labels=[p[1] for p in pairs],
                        classes=classes, emd=emd)
    if layout == "Labeled_Tiles":
        known = {c.name for c in classes} | {str(c.value) for c in classes}
        for image, label, number in pairs:
            name = xml_class(label)
            if name not in known:
                raise InputDataError(f"Chip '{image.name}' (map.txt line {number}) is labelled '{name}', a class "
                                     f"esri_model_definition.emd does not list ({', '.join(c.name for c in classes)})")
    if layout == "PASCAL_VOC_rectangles":
        _check_voc_classes(data, pairs)
    if layout == "RCNN_Masks":
        _check_mask_folders(data)
    return data


def _check_mask_folders(data: TrainingData) -> None:
    """RCNN_Masks: ``labels/<class value>/`` folders, each value one the ``.emd`` lists."""
    labels = data.folder / "labels"
    known = {str(c.value) for c in data.classes}
    for sub in sorted(p for p in labels.iterdir() if p.is_dir()) if labels.is_dir() else []:
        if sub.name not in known:
            raise InputDataError(f"RCNN_Masks folder '{sub}' holds masks of class value {sub.name}, which "
                                 f"esri_model_definition.emd does not list "
                                 f"({', '.join(f'{c.value} {c.name}' for c in data.classes)})")


def mask_files(data: TrainingData, image: Path) -> list[tuple[int, Path]]:
    """RCNN_Masks: (class position, ``labels/<value>/<chip>.tif``) of each class present in the chip."""
    found = []
    for i, c in enumerate(data.classes):
        path = data.folder / "labels" / str(c.value) / f"{image.stem}.tif"
        if path.is_file():
            found.append((i, path))
    return found


def voc_objects(path: Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Every ``object`` of a PASCAL_VOC_rectangles label file: (its name, its box x1, y1, x2, y2 in chip pixels)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputDataError(f"Label file '{path}' is not readable XML: {exc}") from exc
    found = []
    for i, node in enumerate(root.findall("object")):
        name = (node.findtext("name") or "").strip()
        box = node.find("bndbox")
        try:
            coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            raise InputDataError(f"Label file '{path}': object {i + 1} has no bndbox with numeric xmin, ymin, xmax, "
                                 "ymax") from None
        if not name:
            raise InputDataError(f"Label file '{path}': object {i + 1} has no name (its class)")
        found.append((name, coords))
    return found


def _check_voc_classes(data: TrainingData, pairs: list[tuple[Path, Path, int]]) -> None:
    known = {c.name for c in data.classes} | {str(c.value) for c in data.classes}
    for image, label, number in pairs:
        for name, _ in voc_objects(label):
            if name not in known:
                raise InputDataError(f"Chip '{image.name}' (map.txt line {number}) holds an object of class '{name}', "
                                     f"which esri_model_definition.emd does not list "
                                     f"({', '.join(f'{c.value} {c.name}' for c in data.classes)})")


def class_position(data: TrainingData, name: str) -> int:
    """0-based position in ``Classes`` of a class given by name or by value as text."""
    for i, c in enumerate(data.classes):
        if name in (c.name, str(c.value)):
            return i
    raise InputDataError(f"Class '{name}' is not listed in esri_model_definition.emd")


def labeled_tile_index(data: TrainingData, label: Path) -> int:
    """Training index (0-based, ``Classes`` order) of a Labeled_Tiles chip."""
    name = xml_class(label)
    for i, c in enumerate(data.classes):
        if name in (c.name, str(c.value)):
            return i
    raise InputDataError(f"Label '{label}' names class '{name}', which esri_model_definition.emd does not list")

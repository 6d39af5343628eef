# SPDX-License-Identifier: GPL-2.0-or-later
"""The label files of each metadata format, one chip at a time.

Each writer turns one chip's labels (:class:`ChipLabels`, in chip pixels) into the files its format
keeps under ``labels/`` (or in one file for COCO) and returns the label path that ``map.txt`` pairs
with the image.  The layouts follow what ArcGIS writes and what arcgis.learn's ``prepare_data`` reads:

* Classified_Tiles: ``labels/<stem>.tif`` (``.png`` for PNG and JPEG chips, never lossy), one band of
  class values, 0 where no class is.
* PASCAL_VOC_rectangles and Labeled_Tiles: ``labels/<stem>.xml``, a PASCAL VOC annotation, one
  ``<object>`` per feature whose ``<name>`` is the class value (Labeled_Tiles: one object, the feature
  the chip was cut around).
* KITTI_rectangles: ``labels/<stem>.txt``, one line per feature, 15 fields: the class value, then
  truncated 0.00, occluded 0, alpha 0.00, the box (left top right bottom), and 7 zeros (3D size,
  location, rotation).
* RCNN_Masks: ``labels/<class value>/<stem>.tif`` for each class present in the chip: one band, each
  feature of that class numbered 1, 2, ... (its instance), 0 elsewhere.
* YOLO: ``labels/<stem>.txt``, one line per feature: the class index (0-based, classes in ascending
  value), then the box centre x, y, width and height as fractions of the chip (6 decimals).
* COCO: ``labels.json`` (instances: images, annotations with ``bbox`` [x, y, width, height], ``area``
  and the polygon ``segmentation``, categories whose ``id`` is the class value).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import numpy as np

from .chip_files import write_chip
from .settings import CLASSIFIED_TILES, COCO, KITTI, LABELED_TILES, PASCAL_VOC, RCNN_MASKS, YOLO


@dataclass
class ChipObjectLabel:
    """One feature in one (possibly turned) chip."""

    value: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in chip pixels
    rings: list[list[tuple[float, float]]] = field(default_factory=list)  # outer rings in chip pixels (COCO)


@dataclass
class ChipLabels:
    """Everything a format may need from one chip."""

    stem: str
    image_name: str  # e.g. 000000012.tif
    width: int
    height: int
    bands: int
    gt: tuple[float, ...]
    crs_wkt: str
    objects: list[ChipObjectLabel] = field(default_factory=list)
    class_mask: np.ndarray | None = None  # Classified_Tiles: [h, w] class values
    instance_masks: dict[int, np.ndarray] = field(default_factory=dict)  # RCNN_Masks: class -> [h, w] instances


def _num(v: float) -> str:
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class LabelWriter:
    """Base: where labels go; subclasses write one chip's labels and return map.txt's label path."""

    def __init__(self, folder: str, image_ext: str, world_ext: str, classes: list[int]) -> None:
        self.folder = folder
        self.labels = os.path.join(folder, "labels")
        os.makedirs(self.labels, exist_ok=True)
        self.image_ext = image_ext
        self.world_ext = world_ext
        self.classes = classes

    def write(self, chip: ChipLabels) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, classes: list[int]) -> None:
        """Files written once the last chip is known (COCO's JSON)."""


class ClassifiedTilesWriter(LabelWriter):
    def write(self, chip: ChipLabels) -> str:
        ext = "tif" if self.image_ext == "tif" else "png"
        mask = chip.class_mask if chip.class_mask is not None else np.zeros((chip.height, chip.width), np.uint8)
        dtype = "uint8" if int(mask.max(initial=0)) < 256 else "uint16"
        name = f"{chip.stem}.{ext}"
        write_chip(os.path.join(self.labels, name), mask.astype(dtype)[None], "GTiff" if ext == "tif" else "PNG",
                   chip.gt, chip.crs_wkt, None)
        return f"labels\\{name}"


class PascalVocWriter(LabelWriter):
    def write(self, chip: ChipLabels) -> str:
        name = f"{chip.stem}.xml"
        with open(os.path.join(self.labels, name), "w", encoding="utf-8") as fh:
            fh.write(pascal_voc_xml(chip))
        return f"labels\\{name}"


def pascal_voc_xml(chip: ChipLabels) -> str:
    objects = "".join(
        "  <object>\n"
        f"    <name>{o.value}</name>\n"
        "    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
        "    <bndbox>\n"
        f"      <xmin>{_num(o.box[0])}</xmin>\n      <ymin>{_num(o.box[1])}</ymin>\n"
        f"      <xmax>{_num(o.box[2])}</xmax>\n      <ymax>{_num(o.box[3])}</ymax>\n"
        "    </bndbox>\n  </object>\n" for o in chip.objects)
    return ('<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n'
            f"  <folder>images</folder>\n  <filename>{escape(chip.image_name)}</filename>\n"
            "  <source>\n    <database>Unknown</database>\n  </source>\n"
            f"  <size>\n    <width>{chip.width}</width>\n    <height>{chip.height}</height>\n"
            f"    <depth>{chip.bands}</depth>\n  </size>\n  <segmented>0</segmented>\n{objects}</annotation>\n")


class KittiWriter(LabelWriter):
    def write(self, chip: ChipLabels) -> str:
        name = f"{chip.stem}.txt"
        lines = [f"{o.value} 0.00 0 0.00 {o.box[0]:.2f} {o.box[1]:.2f} {o.box[2]:.2f} {o.box[3]:.2f} "
                 "0.00 0.00 0.00 0.00 0.00 0.00 0.00\n" for o in chip.objects]
        with open(os.path.join(self.labels, name), "w", encoding="ascii") as fh:
            fh.writelines(lines)
        return f"labels\\{name}"


class RcnnMasksWriter(LabelWriter):
    def write(self, chip: ChipLabels) -> str:
        first = ""
        for value in sorted(chip.instance_masks):
            mask = chip.instance_masks[value]
            folder = os.path.join(self.labels, str(value))
            os.makedirs(folder, exist_ok=True)
            dtype = "uint8" if int(mask.max(initial=0)) < 256 else "uint16"
            write_chip(os.path.join(folder, f"{chip.stem}.tif"), mask.astype(dtype)[None], "GTiff", chip.gt,
                       chip.crs_wkt, None)
            first = first or f"labels\\{value}\\{chip.stem}.tif"
        return first or f"labels\\{chip.stem}.tif"


class YoloWriter(LabelWriter):
    def write(self, chip: ChipLabels) -> str:
        name = f"{chip.stem}.txt"
        lines = []
        for o in chip.objects:
            x1, y1, x2, y2 = o.box
            lines.append(f"{self.classes.index(o.value)} {(x1 + x2) / 2 / chip.width:.6f} "
                         f"{(y1 + y2) / 2 / chip.height:.6f} {(x2 - x1) / chip.width:.6f} "
                         f"{(y2 - y1) / chip.height:.6f}\n")
        with open(os.path.join(self.labels, name), "w", encoding="ascii") as fh:
            fh.writelines(lines)
        return f"labels\\{name}"


class CocoWriter(LabelWriter):
    """Images and annotations stream to two scratch files; ``labels.json`` is put together at the end."""

    def __init__(self, folder: str, image_ext: str, world_ext: str, classes: list[int]) -> None:
        self.folder = folder
        self.image_ext, self.world_ext, self.classes = image_ext, world_ext, classes
        self._images = open(os.path.join(folder, ".coco_images.jsonl"), "w+", encoding="utf-8")  # noqa: SIM115
        self._annotations = open(os.path.join(folder, ".coco_annotations.jsonl"), "w+", encoding="utf-8")  # noqa: SIM115
        self._image_id = 0
        self._annotation_id = 0

    def write(self, chip: ChipLabels) -> str:
        self._image_id += 1
        self._images.write(json.dumps({"id": self._image_id, "file_name": chip.image_name, "width": chip.width,
                                       "height": chip.height}) + "\n")
        for o in chip.objects:
            self._annotation_id += 1
            x1, y1, x2, y2 = o.box
            segmentation = [[c for point in ring for c in point] for ring in o.rings]
            area = float(sum(_ring_area(ring) for ring in o.rings)) if o.rings else (x2 - x1) * (y2 - y1)
            self._annotations.write(json.dumps({
                "id": self._annotation_id, "image_id": self._image_id, "category_id": o.value,
                "bbox": [x1, y1, round(x2 - x1, 6), round(y2 - y1, 6)], "area": round(area, 6),
                "segmentation": segmentation, "iscrowd": 0}) + "\n")
        return "labels.json"

    def finish(self, classes: list[int]) -> None:
        path = os.path.join(self.folder, "labels.json")
        with open(path, "w", encoding="utf-8") as out:
            out.write('{"info": {"description": "Deep Learning Tools for QGIS: Export Training Data"},\n"images": [')
            _copy_jsonl(self._images, out)
            out.write('],\n"annotations": [')
            _copy_jsonl(self._annotations, out)
            categories = [{"id": c, "name": str(c), "supercategory": "none"} for c in classes]
            out.write("],\n\"categories\": " + json.dumps(categories) + "}\n")
        self.close()

    def close(self) -> None:
        for fh in (self._images, self._annotations):
            if not fh.closed:
                fh.close()
                os.remove(fh.name)


def _copy_jsonl(src, out) -> None:  # noqa: ANN001 - open text files
    src.seek(0)
    first = True
    for line in src:
        out.write(("" if first else ",\n") + line.rstrip("\n"))
        first = False


def _ring_area(ring: list[tuple[float, float]]) -> float:
    xs = np.array([p[0] for p in ring])
    ys = np.array([p[1] for p in ring])
    return abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))) / 2


WRITERS = {CLASSIFIED_TILES: ClassifiedTilesWriter, PASCAL_VOC: PascalVocWriter, KITTI: KittiWriter,
           RCNN_MASKS: RcnnMasksWriter, LABELED_TILES: PascalVocWriter, YOLO: YoloWriter, COCO: CocoWriter}

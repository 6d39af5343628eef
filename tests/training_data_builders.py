# SPDX-License-Identifier: GPL-2.0-or-later
"""Training-data folders in ArcGIS's layouts, built by the tests: squares and discs of two classes on noise.

``Classified_Tiles``: ``images/NNNNNNNNN.tif`` (3 bands, uint8) and ``labels/NNNNNNNNN.tif`` (class values: 1 square,
2 disc, 0 neither), ``map.txt`` with ArcGIS's backslashes, ``esri_model_definition.emd`` (Classes) and
``esri_accumulated_stats.json`` (MetaDataMode).  ``Labeled_Tiles``: one shape per chip, its class in an ``.xml``.
Squares are reddish and discs bluish on grey noise, so that a small network learns them in a few epochs; the shape
differs too, which the scene test relies on nowhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from builders import write_raster

CLASSES = [{"Value": 1, "Name": "square", "Color": [230, 25, 75]},
           {"Value": 2, "Name": "disc", "Color": [0, 130, 200]}]
SQUARE_RGB = (200, 60, 60)
DISC_RGB = (60, 60, 200)


def noise(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.integers(70, 150, (3, rows, cols)).astype(np.int16)


def paint(image: np.ndarray, mask: np.ndarray, shape: str, cy: int, cx: int, r: int, rng: np.random.Generator) -> None:
    """A square of half-side ``r`` or a disc of radius ``r`` centred on (cy, cx), in the image and the mask."""
    yy, xx = np.mgrid[:image.shape[1], :image.shape[2]]
    inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r) if shape == "square" else \
        (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    colour = SQUARE_RGB if shape == "square" else DISC_RGB
    for b in range(3):
        image[b][inside] = colour[b] + rng.integers(-20, 21, int(inside.sum()))
    mask[inside] = 1 if shape == "square" else 2


def shapes_scene(rows: int, cols: int, count: int, seed: int,
                 radii: tuple[int, int] = (5, 11)) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, class mask) with ``count`` shapes of random kind, place and size (half-side or radius drawn
    from ``radii``, upper bound excluded) that do not overlap."""
    rng = np.random.default_rng(seed)
    image = noise(rng, rows, cols)
    mask = np.zeros((rows, cols), np.uint8)
    taken = np.zeros((rows, cols), bool)
    placed = tries = 0
    while placed < count and tries < 200 * count:
        tries += 1
        r = int(rng.integers(*radii))
        cy, cx = int(rng.integers(r + 1, rows - r - 1)), int(rng.integers(r + 1, cols - r - 1))
        if taken[max(cy - r - 2, 0):cy + r + 3, max(cx - r - 2, 0):cx + r + 3].any():
            continue
        taken[max(cy - r - 2, 0):cy + r + 3, max(cx - r - 2, 0):cx + r + 3] = True
        paint(image, mask, "square" if rng.random() < 0.5 else "disc", cy, cx, r, rng)
        placed += 1
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _common(folder: Path, layout: str, chip: int, extra: dict | None = None) -> None:
    emd = {"Framework": "", "ModelConfiguration": "", "ModelType": "", "ImageHeight": chip, "ImageWidth": chip,
           "ImageSpaceUsed": "MAP_SPACE", "Classes": CLASSES, **(extra or {})}
    (folder / "esri_model_definition.emd").write_text(json.dumps(emd, indent=2))
    (folder / "esri_accumulated_stats.json").write_text(json.dumps({"MetaDataMode": layout, "NumTiles": 0}))


def write_classified_tiles(folder: Path, count: int = 48, chip: int = 64, seed: int = 0) -> Path:
    """A Classified_Tiles folder of ``count`` chips, each with two to four shapes."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    lines = []
    for i in range(count):
        image, mask = shapes_scene(chip, chip, 2 + i % 3, seed * 10007 + i)
        name = f"{i:09d}.tif"
        write_raster(folder / "images" / name, image, block=None)
        write_raster(folder / "labels" / name, mask, block=None)
        lines.append(f"images\\{name} labels\\{name}")
    (folder / "map.txt").write_text("\n".join(lines) + "\n")
    _common(folder, "Classified_Tiles", chip)
    return folder


def write_labeled_tiles(folder: Path, count: int = 40, chip: int = 64, seed: int = 0) -> Path:
    """A Labeled_Tiles folder: one square or disc per chip, its class name in the chip's .xml."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        shape = "square" if i % 2 == 0 else "disc"
        image = noise(rng, chip, chip)
        mask = np.zeros((chip, chip), np.uint8)
        paint(image, mask, shape, chip // 2 + int(rng.integers(-6, 7)), chip // 2 + int(rng.integers(-6, 7)),
              int(rng.integers(10, 16)), rng)
        name = f"{i:09d}"
        write_raster(folder / "images" / f"{name}.tif", np.clip(image, 0, 255).astype(np.uint8), block=None)
        (folder / "labels" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.tif</filename><object><name>{shape}</name></object></annotation>")
        lines.append(f"images\\{name}.tif labels\\{name}.xml")
    (folder / "map.txt").write_text("\n".join(lines) + "\n")
    _common(folder, "Labeled_Tiles", chip, {"CropTileMode": "Fixed_Size", "BlackenAroundFeature": False})
    return folder


def write_pascal_voc(folder: Path, count: int = 8, chip: int = 64, seed: int = 0,
                     radii: tuple[int, int] = (5, 11)) -> Path:
    """A PASCAL_VOC_rectangles folder: two or three squares and discs per chip, each a box in the chip's .xml whose
    name is the class value (as Export Training Data writes it)."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    lines = []
    for i in range(count):
        image, mask = shapes_scene(chip, chip, 2 + i % 2, seed * 10007 + i, radii)
        name = f"{i:09d}"
        write_raster(folder / "images" / f"{name}.tif", image, block=None)
        objects = "".join(
            f"<object><name>{value}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox></object>" for value, (x1, y1, x2, y2) in shape_boxes(mask))
        (folder / "labels" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.tif</filename><size><width>{chip}</width><height>{chip}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
        lines.append(f"images\\{name}.tif labels\\{name}.xml")
    (folder / "map.txt").write_text("\n".join(lines) + "\n")
    _common(folder, "PASCAL_VOC_rectangles", chip)
    return folder


def shape_boxes(mask: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(class value, (x1, y1, x2, y2)) of each separate shape of a class mask (shapes never touch)."""
    from scipy import ndimage

    found = []
    for value in (1, 2):
        labelled, _ = ndimage.label(mask == value)
        for rows, cols in ndimage.find_objects(labelled):
            found.append((value, (cols.start, rows.start, cols.stop, rows.stop)))
    return found


def pixel_box(wkb: bytes) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) in scene pixels of a polygon in map coordinates (write_raster's grid: 1 m, north-up)."""
    from osgeo import ogr

    minx, maxx, miny, maxy = ogr.CreateGeometryFromWkb(wkb).GetEnvelope()
    return minx - 500000.0, 4000000.0 - maxy, maxx - 500000.0, 4000000.0 - miny


def shapes_under_boxes(boxes: list[tuple[float, float, float, float]],
                       truth: list[tuple[int, tuple[int, int, int, int]]]) -> list[list]:
    """For each detected box, the true shapes (class value, box) whose box holds the detected box's centre: a box
    placed on one shape has exactly one."""
    owners = []
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        owners.append([(v, box) for v, box in truth if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]])
    return owners


def shapes_found_with_class(objects: list[tuple[int, tuple[float, float, float, float]]],
                            truth: list[tuple[int, tuple[int, int, int, int]]]) -> tuple[int, int]:
    """Of detected ``objects`` (class value, pixel box) on a scene's ``truth`` (:func:`shape_boxes`): how many shapes
    hold the centre of an object of their own class, and how many objects centred on one shape have another class."""
    owners = shapes_under_boxes([box for _, box in objects], truth)
    on_one = [(value, o[0]) for (value, _), o in zip(objects, owners) if len(o) == 1]
    return (len({shape[1] for value, shape in on_one if shape[0] == value}),
            sum(1 for value, shape in on_one if shape[0] != value))


def write_rcnn_masks(folder: Path, count: int = 8, chip: int = 64, seed: int = 0,
                     radii: tuple[int, int] = (5, 11)) -> Path:
    """An RCNN_Masks folder: for each chip and each class present, ``labels/<value>/<chip>.tif`` numbering that
    class's shapes 1, 2, ... (as Export Training Data writes it); ``map.txt`` names the first class's mask."""
    from scipy import ndimage

    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(count):
        image, mask = shapes_scene(chip, chip, 2 + i % 2, seed * 10007 + i, radii)
        name = f"{i:09d}"
        write_raster(folder / "images" / f"{name}.tif", image, block=None)
        first = ""
        for value in (1, 2):
            numbers, found = ndimage.label(mask == value)
            if found:
                (folder / "labels" / str(value)).mkdir(parents=True, exist_ok=True)
                write_raster(folder / "labels" / str(value) / f"{name}.tif", numbers.astype(np.uint8), block=None)
                first = first or f"labels\\{value}\\{name}.tif"
        fallback = "labels\\" + f"{name}.tif"
        lines.append(f"images\\{name}.tif {first or fallback}")
    (folder / "map.txt").write_text("\n".join(lines) + "\n")
    _common(folder, "RCNN_Masks", chip)
    return folder

# SPDX-License-Identifier: GPL-2.0-or-later
"""The files beside the chips: statistics, ArcGIS's model definition and accumulated statistics, YOLO's yaml.

What arcgis.learn's ``prepare_data`` reads from them (and so what they must hold):

* ``esri_accumulated_stats.json``: ``MetaDataMode``; ``NumTiles``; ``NumClasses``; ``NumBands``;
  ``BandStatsState`` per band (``Min``, ``Max``, ``M1`` the mean, ``M2`` the sum of squared deviations
  from it, ``Num`` the pixels counted: prepare_data's StdDev is ``sqrt(M2 / Num)``); and
  ``ClassPixelStats`` (Classified_Tiles: ``NumPixelsPerClass``) or ``FeatureStats`` (the others:
  ``NumFeaturesPerClass``), each with ``NumImagesTotal`` and ``NumImagesPerClass``, lists in the
  order of the definition's ``Classes``.
* ``esri_model_definition.emd``: ``MetaDataMode``, ``ImageSpaceUsed``, ``ImageWidth``/``ImageHeight``,
  ``ExtractBands``, ``Classes`` (``Value``, ``Name``, ``Color``), ``AllTilesStats`` (per band ``Min``,
  ``Max``, ``Mean``, ``StdDev``) and ``InputRastersProps`` (``BandNames``, ``SensorName``, ...).
* ``map.txt``: one line per chip, ``images\\<stem>.<ext> <label path>`` (backslashes, as ArcGIS writes).

The statistics count the valid pixels of every chip written (rotated copies included); NoData and
the zeros past the raster's edge are not counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .settings import CLASSIFIED_TILES, COCO, ESRI_FORMATS, LABELED_TILES, YOLO, ExportSettings


@dataclass
class BandStats:
    """Running minimum, maximum, mean and sum of squared deviations per band (Chan's merge per chip)."""

    bands: int
    num: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)
    lo: np.ndarray = field(init=False)
    hi: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.num = np.zeros(self.bands)
        self.mean = np.zeros(self.bands)
        self.m2 = np.zeros(self.bands)
        self.lo = np.full(self.bands, np.inf)
        self.hi = np.full(self.bands, -np.inf)

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        if not valid.any():
            return
        values = data.reshape(data.shape[0], -1) if valid.all() else data[:, valid]  # [bands, n], raw type
        n = values.shape[1]
        mean = values.mean(axis=1, dtype=np.float64)
        m2 = values.var(axis=1, dtype=np.float64) * n
        total = self.num + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta ** 2 * self.num * n / total
        self.num = total
        self.lo = np.minimum(self.lo, values.min(axis=1))
        self.hi = np.maximum(self.hi, values.max(axis=1))

    def state(self) -> list[dict]:
        return [{"Min": _f(self.lo[b]), "Max": _f(self.hi[b]), "M1": float(self.mean[b]), "M2": float(self.m2[b]),
                 "Num": float(self.num[b])} for b in range(self.bands)]

    def tiles_stats(self, names: list[str]) -> list[dict]:
        std = np.sqrt(self.m2 / np.maximum(self.num, 1))
        return [{"BandName": names[b], "Min": _f(self.lo[b]), "Max": _f(self.hi[b]), "Mean": float(self.mean[b]),
                 "StdDev": float(std[b])} for b in range(self.bands)]


def _f(v: float) -> float:
    return float(v) if np.isfinite(v) else 0.0


@dataclass
class ClassTally:
    """Chips and features (or pixels) per class."""

    images: dict[int, int] = field(default_factory=dict)
    amounts: dict[int, int] = field(default_factory=dict)
    chips: int = 0

    def add(self, amounts: dict[int, int]) -> None:
        self.chips += 1
        for value, amount in amounts.items():
            if amount:
                self.images[value] = self.images.get(value, 0) + 1
                self.amounts[value] = self.amounts.get(value, 0) + int(amount)


#: class colours (ArcGIS's emd keeps one per class): a fixed, readable sequence
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


@dataclass
class RunInfo:
    """What the metadata says about the run, gathered as it goes."""

    settings: ExportSettings
    band_names: list[str]
    dtype: str
    cell_size: tuple[float, float]
    crs_wkt: str
    chip_width: int
    chip_height: int


def write_metadata(folder: str, info: RunInfo, stats: BandStats, tally: ClassTally, classes: list[int]) -> None:
    """Every metadata file of the format (the chips and labels are already there)."""
    fmt = info.settings.metadata_format
    if fmt in ESRI_FORMATS:
        with open(os.path.join(folder, "esri_model_definition.emd"), "w", encoding="utf-8") as fh:
            json.dump(model_definition(info, stats, classes), fh, indent=2)
        with open(os.path.join(folder, "esri_accumulated_stats.json"), "w", encoding="utf-8") as fh:
            json.dump(accumulated_stats(info, stats, tally, classes), fh, indent=2)
    if fmt == YOLO:
        with open(os.path.join(folder, "data.yaml"), "w", encoding="utf-8") as fh:
            fh.write(yolo_yaml(classes))
    with open(os.path.join(folder, "stats.txt"), "w", encoding="utf-8") as fh:
        fh.write(stats_text(info, stats, tally, classes))


def model_definition(info: RunInfo, stats: BandStats, classes: list[int]) -> dict:
    s = info.settings
    emd = {
        "Framework": "",
        "ModelConfiguration": "",
        "MetaDataMode": s.metadata_format,
        "ImageSpaceUsed": s.reference_system,
        "ImageHeight": info.chip_height,
        "ImageWidth": info.chip_width,
        "ExtractBands": list(range(len(info.band_names))),
        "IsMultidimensional": False,
        "Classes": [{"Value": c, "Name": str(c), "Color": list(PALETTE[i % len(PALETTE)])}
                    for i, c in enumerate(classes)],
        "AllTilesStats": stats.tiles_stats(info.band_names),
        "InputRastersProps": {"RasterCount": 1, "SensorName": "", "BandNames": info.band_names,
                              "PixelType": info.dtype, "CellSizeX": info.cell_size[0], "CellSizeY": info.cell_size[1],
                              "SpatialReference": info.crs_wkt if s.reference_system != "PIXEL_SPACE" else ""},
    }
    if s.metadata_format == LABELED_TILES:
        emd["CropTileMode"] = s.crop_mode
        emd["BlackenAroundFeature"] = s.blacken_around_feature
    return emd


def accumulated_stats(info: RunInfo, stats: BandStats, tally: ClassTally, classes: list[int]) -> dict:
    pixels = info.settings.metadata_format == CLASSIFIED_TILES
    per_class = {
        "NumClasses": len(classes),  # older arcgis.learn versions read it here when merging folders
        "NumImagesTotal": tally.chips,
        "NumImagesPerClass": [tally.images.get(c, 0) for c in classes],
        ("NumPixelsPerClass" if pixels else "NumFeaturesPerClass"): [tally.amounts.get(c, 0) for c in classes],
    }
    if not pixels:
        per_class["NumFeaturesTotal"] = sum(tally.amounts.values())
    return {
        "Version": "1.0",
        "MetaDataMode": info.settings.metadata_format,
        "NumTiles": tally.chips,
        "NumClasses": len(classes),
        "NumBands": len(info.band_names),
        "ImageHeight": info.chip_height,
        "ImageWidth": info.chip_width,
        "BandStatsState": stats.state(),
        ("ClassPixelStats" if pixels else "FeatureStats"): per_class,
    }


def yolo_yaml(classes: list[int]) -> str:
    """Ultralytics' dataset file: the folder it sits in, images for training and validation, class names."""
    names = "".join(f"  {i}: '{c}'\n" for i, c in enumerate(classes))
    return f"path: .\ntrain: images\nval: images\nnc: {len(classes)}\nnames:\n{names}"


def stats_text(info: RunInfo, stats: BandStats, tally: ClassTally, classes: list[int]) -> str:
    s = info.settings
    what = "pixels" if s.metadata_format == CLASSIFIED_TILES else "features"
    lines = [f"Metadata format: {s.metadata_format}", f"Image chip format: {s.image_format}",
             f"Chip size: {info.chip_width} x {info.chip_height}", f"Stride: {s.stride_x} x {s.stride_y}",
             f"Reference system: {s.reference_system}", f"Rotation angle: {s.rotation_angle:g}",
             f"Chips: {tally.chips}", f"Bands: {', '.join(info.band_names)}"]
    for b, band in enumerate(stats.tiles_stats(info.band_names)):
        lines.append(f"Band {b + 1} ({band['BandName']}): min {band['Min']:g}, max {band['Max']:g}, "
                     f"mean {band['Mean']:.6g}, std {band['StdDev']:.6g}")
    for c in classes:
        lines.append(f"Class {c}: {tally.images.get(c, 0)} chips, {tally.amounts.get(c, 0)} {what}")
    if s.metadata_format == COCO:
        lines.append("Labels: labels.json (COCO instances)")
    return "\n".join(lines) + "\n"

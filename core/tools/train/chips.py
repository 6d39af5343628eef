# SPDX-License-Identifier: GPL-2.0-or-later
"""Chips streamed from a training-data folder: read with GDAL one batch at a time, normalised as the inference
side will normalise them, and augmented with the flips and right-angle rotations imagery allows.

Memory is bounded by the batch: no chip is kept after its batch.  The normalisation is decided once from the
training chips (:func:`training_normalisation`): 8-bit three-band chips get ImageNet's mean and deviation, as
arcgis.learn gives them (``IsImageNetNormalization``); any other chips get ``NormalizationStats`` computed from the
training chips (band minimum, maximum, mean, deviation and the same after min-max scaling), which the ``.emd``
carries so that Classify Pixels normalises a scene identically.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputDataError
from ...raster.resize import resize_chip
from .layouts import TrainingData, labeled_tile_index

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def read_array(path) -> np.ndarray:  # noqa: ANN001 - a path
    """All bands of a chip, ``(bands, rows, cols)``."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    if ds is None:
        raise InputDataError(f"Chip '{path}' cannot be read by GDAL")
    try:
        array = ds.ReadAsArray()
    finally:
        ds = None
    return array[None] if array.ndim == 2 else array


@dataclass
class ChipNormalisation:
    """``x * scale + offset`` per band, and what the ``.emd`` must say for the inference to do the same."""

    scale: np.ndarray
    offset: np.ndarray
    imagenet: bool
    stats: dict[str, list[float]] = field(default_factory=dict)

    def emd_keys(self, bands: int) -> dict:
        keys = {"ExtractBands": list(range(bands)), "IsImageNetNormalization": self.imagenet,
                "IsMultispectral": bands != 3}
        if not self.imagenet:
            keys.update(NormalizationStats=self.stats, DoNormalize=True, Bands=[f"Band_{i + 1}" for i in range(bands)],
                        ImageryType="ms" if bands != 3 else "RGB")
        return keys


def _band_statistics(data: TrainingData, bands: int) -> dict[str, list[float]]:
    low = np.full(bands, np.inf)
    high = np.full(bands, -np.inf)
    total = np.zeros(bands)
    squares = np.zeros(bands)
    count = 0
    for path in data.images:
        chip = read_array(path).astype(np.float64).reshape(bands, -1)
        low, high = np.minimum(low, chip.min(axis=1)), np.maximum(high, chip.max(axis=1))
        total += chip.sum(axis=1)
        squares += (chip ** 2).sum(axis=1)
        count += chip.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    span = np.where(high - low == 0, 1.0, high - low)
    scaled_std = np.where(std / span == 0, 1.0, std / span)
    return {"band_min_values": low.tolist(), "band_max_values": high.tolist(), "band_mean_values": mean.tolist(),
            "band_std_values": std.tolist(), "scaled_min_values": [0.0] * bands, "scaled_max_values": [1.0] * bands,
            "scaled_mean_values": ((mean - low) / span).tolist(), "scaled_std_values": scaled_std.tolist()}


def chip_shape(data: TrainingData) -> tuple[int, int, int, str]:
    """(bands, rows, cols, numpy type) the network is trained on: the first chip's; for Labeled_Tiles the export's
    ImageHeight x ImageWidth (BOUNDING_BOX exports hold chips of many sizes, resized to it when read)."""
    first = read_array(data.images[0])
    rows, cols = first.shape[1], first.shape[2]
    if data.layout == "Labeled_Tiles":
        try:
            rows, cols = int(data.emd.get("ImageHeight") or rows), int(data.emd.get("ImageWidth") or cols)
        except (TypeError, ValueError):
            pass
    return first.shape[0], rows, cols, first.dtype.name


def training_normalisation(data: TrainingData, bands: int, dtype: str) -> ChipNormalisation:
    if bands == 3 and dtype == "uint8":
        std = IMAGENET_STD * 255.0
        return ChipNormalisation(scale=1.0 / std, offset=-(IMAGENET_MEAN * 255.0) / std, imagenet=True)
    stats = _band_statistics(data, bands)
    low, high = np.asarray(stats["band_min_values"]), np.asarray(stats["band_max_values"])
    span = np.where(high - low == 0, 1.0, high - low)
    mean, std = np.asarray(stats["scaled_mean_values"]), np.asarray(stats["scaled_std_values"])
    return ChipNormalisation(scale=1.0 / (span * std), offset=(-low / span - mean) / std, imagenet=False, stats=stats)


def label_lookup(data: TrainingData) -> dict[int, int]:
    return data.class_index()


def scan_labels(data: TrainingData) -> list[int]:
    """Chips per class (Labeled_Tiles) or pixels per class, background first (Classified_Tiles); refuses a label
    holding a value the ``.emd`` does not list, naming the chip."""
    if data.layout == "Labeled_Tiles":
        counts = [0] * len(data.classes)
        for label in data.labels:
            counts[labeled_tile_index(data, label)] += 1
        return counts
    lookup = data.class_index()
    counts = [0] * (len(data.classes) + 1)
    for image, label in zip(data.images, data.labels):
        values, numbers = np.unique(read_array(label)[0], return_counts=True)
        unknown = [int(v) for v in values if int(v) not in lookup]
        if unknown:
            raise InputDataError(
                f"Label chip '{label.name}' (for '{image.name}') holds class value(s) {unknown} that "
                f"esri_model_definition.emd does not list (Classes: "
                f"{', '.join(f'{c.value} {c.name}' for c in data.classes)}): export the training data again with "
                "every class, or add the class to the .emd")
        for v, n in zip(values, numbers):
            counts[lookup[int(v)]] += int(n)
    return counts


class ChipReader:
    """Reads chip ``i`` as a normalised float32 array and its target (class index map, or class index)."""

    def __init__(self, data: TrainingData, norm: ChipNormalisation, shape: tuple[int, int, int]) -> None:
        self.data = data
        self.norm = norm
        self.shape = shape
        lookup = data.class_index()
        self.lut = np.zeros(max(lookup) + 1, np.int64)
        for value, index in lookup.items():
            self.lut[value] = index

    def image(self, i: int) -> np.ndarray:
        chip = read_array(self.data.images[i])
        if chip.shape != self.shape and self.data.layout == "Labeled_Tiles" and chip.shape[0] == self.shape[0]:
            chip = resize_chip(chip, self.shape[1], self.shape[2])  # as Classify Objects resizes (CropSizeFixed 0)
        if chip.shape != self.shape:
            raise InputDataError(f"Chip '{self.data.images[i].name}' is {chip.shape[0]} bands of {chip.shape[2]} x "
                                 f"{chip.shape[1]} pixels, the first chip {self.shape[0]} of {self.shape[2]} x "
                                 f"{self.shape[1]}: every chip of a training folder must have the same size and bands")
        out = chip.astype(np.float32)
        out *= self.norm.scale[:, None, None].astype(np.float32)
        out += self.norm.offset[:, None, None].astype(np.float32)
        return out

    def target(self, i: int) -> np.ndarray | int:
        label = self.data.labels[i]
        if self.data.layout == "Labeled_Tiles":
            return labeled_tile_index(self.data, label)
        values = read_array(label)[0].astype(np.int64)
        if values.max(initial=0) >= len(self.lut):
            raise InputDataError(f"Label chip '{label.name}' holds class values esri_model_definition.emd does not list")
        return self.lut[values]


def _augment(image: np.ndarray, target, k: int, flip: bool):  # noqa: ANN001, ANN202
    image = np.rot90(image, k, axes=(-2, -1))
    if flip:
        image = image[..., ::-1]
    if isinstance(target, np.ndarray):
        target = np.rot90(target, k, axes=(-2, -1))
        if flip:
            target = target[..., ::-1]
    return np.ascontiguousarray(image), (np.ascontiguousarray(target) if isinstance(target, np.ndarray) else target)


def batches(reader: ChipReader, indices: Sequence[int], batch_size: int, torch, generator=None,  # noqa: ANN001
            augment: bool = False) -> Iterator[tuple]:
    """(images, targets) tensors, ``batch_size`` chips at a time in the order of ``indices``; with ``augment`` each
    chip is turned by a random multiple of 90 degrees and maybe mirrored, drawn from ``generator``."""
    square = reader.shape[1] == reader.shape[2]
    for start in range(0, len(indices), batch_size):
        images, targets = [], []
        for i in indices[start:start + batch_size]:
            image, target = reader.image(int(i)), reader.target(int(i))
            if augment:
                draws = torch.randint(0, 4, (2,), generator=generator).tolist()
                k = draws[0] if square else 2 * (draws[0] % 2)
                image, target = _augment(image, target, k, draws[1] % 2 == 1)
            images.append(image)
            targets.append(target)
        yield torch.from_numpy(np.stack(images)), torch.as_tensor(np.asarray(targets), dtype=torch.long)

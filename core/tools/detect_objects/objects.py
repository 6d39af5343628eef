# SPDX-License-Identifier: GPL-2.0-or-later
"""What Detect Objects finds, at its three stages: a block's raw objects in pixels (:class:`RawObjects`), the merged
objects as map geometries (:class:`DetectedObject`), and the run's output on disk (:class:`ObjectStore`).

The store is why a run's memory does not grow with the objects it finds: each object is written to a temporary
file as soon as it is decided (most of them when their block is done), and read back one at a time by whoever
writes the output layer. It crosses from a child process to QGIS as its file name.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...detection.decode import ChipDetections, ClassTable
from ...safe_output import remove_scratch_file


@dataclass
class DetectedObject:
    """One output feature: geometry (WKB, map coordinates), class and confidence (0-100)."""

    wkb: bytes
    class_name: str
    class_value: int
    confidence: float
    extra: tuple = ()  # values of DetectionResult.extra_fields (a custom function's getFields())


@dataclass
class RawObjects:
    """Objects of one block in raster pixel coordinates, before the global merge (picklable: WKB, not OGR)."""

    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    classes: list[np.ndarray] = field(default_factory=list)
    chips: list[np.ndarray] = field(default_factory=list)
    cut: list[np.ndarray] = field(default_factory=list)
    shapes: list[bytes | None] = field(default_factory=list)  # map geometry (WKB) of rotated boxes / masks
    #: objects the model returned that cannot be right, by reason (detection.screen): dropped, not written
    dropped: Counter = field(default_factory=Counter)

    def add(self, det: ChipDetections, chip: int, cut: np.ndarray, shapes: list) -> None:
        self.boxes.append(det.boxes)
        self.scores.append(det.scores)
        self.classes.append(det.classes)
        self.chips.append(np.full(len(det), chip, np.int64))
        self.cut.append(cut)
        self.shapes.extend(shapes)

    def extend(self, other: RawObjects) -> None:
        for name in ("boxes", "scores", "classes", "chips", "cut", "shapes"):
            getattr(self, name).extend(getattr(other, name))
        self.dropped.update(other.dropped)

    def arrays(self) -> tuple[np.ndarray, ...]:
        def cat(parts: list[np.ndarray], shape: tuple, dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)
        return (cat(self.boxes, (0, 4), float), cat(self.scores, (0,), float), cat(self.classes, (0,), np.int64),
                cat(self.chips, (0,), np.int64), cat(self.cut, (0,), bool))

    def subset(self, which: np.ndarray) -> RawObjects:
        """The objects ``which`` (a boolean mask over :meth:`arrays`), as one part, without the dropped counts."""
        boxes, scores, classes, chips, cut = self.arrays()
        shapes = [s for s, k in zip(self.shapes, which.tolist()) if k] if self.shapes else []
        return RawObjects([boxes[which]], [scores[which]], [classes[which]], [chips[which]], [cut[which]], shapes)


_RECORD = struct.Struct("<Iqd")  # WKB length, class slot, confidence


class ObjectStore:
    """The objects of a run in a temporary file, in the order they were decided; iterates as DetectedObject.

    The file is removed by :meth:`discard` (the algorithm, once it has written its layer), or when the object that
    owns it is collected. Pickled (a child process's answer), the copy takes the ownership with it."""

    def __init__(self, table: ClassTable) -> None:
        fd, self.path = tempfile.mkstemp(prefix="dltools-detected-", suffix=".bin")
        self._out: Any = os.fdopen(fd, "wb")
        self._table = table
        self.count = 0
        self.per_class: Counter = Counter()
        self._infos: dict[int, tuple[str, int]] = {}
        self._owner = True

    def add(self, wkbs: list[bytes], slots: np.ndarray, scores: np.ndarray) -> None:
        """Append objects: map geometries, class slots and scores (0-1)."""
        confidence = np.round(np.asarray(scores, np.float64) * 100.0, 4)
        for w, slot, conf in zip(wkbs, np.asarray(slots).tolist(), confidence.tolist()):
            if slot not in self._infos:
                info = self._table.info(int(slot))
                self._infos[slot] = (info.name, int(info.value))
            self._out.write(_RECORD.pack(len(w), slot, conf))
            self._out.write(w)
            self.per_class[self._infos[slot][0]] += 1
        self.count += len(wkbs)

    def finish(self) -> None:
        """No more objects: the file is complete."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[DetectedObject]:
        self.finish()
        with open(self.path, "rb") as fh:
            for _ in range(self.count):
                size, slot, conf = _RECORD.unpack(fh.read(_RECORD.size))
                name, value = self._infos[slot]
                yield DetectedObject(fh.read(size), name, value, conf)

    def discard(self) -> None:
        """Remove the file (idempotent)."""
        self.finish()
        if self._owner:
            self._owner = False
            remove_scratch_file(self.path)

    def __getstate__(self) -> dict:
        self.finish()
        state = dict(self.__dict__)
        self._owner = False  # the copy owns the file now: this one must not remove it when it is collected
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __del__(self) -> None:
        try:
            self.discard()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing more can be done
            pass

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects as one job for a separate process: the features go in as a file, the rows come back as one.

A Classify Objects run streams features in and rows out, and the QGIS tool holds the features (a feature source,
each output row is written with its input feature's own attributes and geometry). To run the model in a child
process (:mod:`core.runner`) like the raster tools, the parent writes each feature's key and WKB once to a
*feature file* (:func:`write_feature_file`; no attributes: they stay in QGIS), the child classifies from it
(:class:`FeatureFile` is a :class:`~.pipeline.FeatureInput`) and writes its rows to a *rows file*
(:func:`classify_objects_to_file`), and the parent reads them back (:func:`read_rows`) and joins each to its
feature by key. Both files are plain records, JSON and bytes, never pickles; only the run's outline (field names,
output CRS) crosses the message pipe. The same :func:`.runs.object_run` builds the run in-process and in the child,
so both write the same rows.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ...backends.base import DeviceRequest
from ...errors import CancelledError, InputDataError
from ...model.definition import ModelDefinition
from ...progress import Progress
from ...raster.gdal_io import mosaic_items, same_crs
from .function import open_object_classifier
from .images import image_info
from .pipeline import FeatureInput, FieldSpec, ObjectRow
from .runs import object_run

_LENGTH = struct.Struct("!I")
_RECORD = struct.Struct("!qI")
_NO_GEOMETRY = 0xFFFFFFFF


@dataclass(frozen=True)
class ObjectRunPlan:
    """The inputs of one run, as :func:`.runs.object_run` takes them (built by keyword): ``images`` (an image
    folder's files) stand in for ``raster``; ``separately``: each feature on every item it touches."""

    label_field: str
    separately: bool = False
    raster: str | None = None
    raster_crs: tuple[str, str] | None = None
    images: list[str] | None = None
    layer_crs_wkt: str | None = None

    def run(self, classifier: Any, features: FeatureInput | None, progress: Progress) -> Any:
        """The run's context manager (:func:`.runs.object_run`) on ``classifier`` and ``features``."""
        return object_run(classifier, self.label_field, progress, features=features, raster=self.raster,
                          raster_crs=self.raster_crs, images=self.images, separately=self.separately,
                          layer_crs_wkt=self.layer_crs_wkt)

    def crs_targets(self) -> list[str]:
        """The CRSs the features may be transformed to (the raster's, each image's), for their PROJ pipelines."""
        targets = [self.raster_crs[0]] if self.raster_crs else []
        paths = list(self.images or []) + ([self.raster] if self.raster and not self.raster_crs else [])
        if self.raster and self.separately and self.images is None:
            paths += mosaic_items(self.raster)
        targets += [image_info(p).crs_wkt for p in paths]
        return list(dict.fromkeys(t for t in targets if t))


@dataclass(frozen=True)
class ClassifierOpening:
    """How to open the classifier (``open_object_classifier``'s arguments), so the child opens it itself."""

    md: ModelDefinition
    arguments: str | dict | None = None
    device: DeviceRequest | None = None
    allow_custom_code: bool = False
    scheduler: str = ""
    retries: int = 2

    def open(self, progress: Progress) -> Any:
        return open_object_classifier(self.md, self.arguments, self.device, progress, self.allow_custom_code,
                                      self.scheduler, self.retries)


@dataclass
class RunOutline:
    """What the tool needs to open its output (the attributes of a run it reads): the new fields (and renamed
    input fields), geometry and CRS."""

    fields: list[FieldSpec]
    input_names: list[str] | None = None
    has_geometry: bool = True
    crs_from_layer: bool = False
    crs_wkt: str = ""


def outline_of(run: Any) -> RunOutline:
    """The outline of a built run (FeaturesOnRaster, FeaturesPerItem or ImagesAsObjects)."""
    return RunOutline(fields=list(run.fields), input_names=getattr(run, "input_names", None),
                      has_geometry=getattr(run, "has_geometry", True),
                      crs_from_layer=getattr(run, "crs_from_layer", False), crs_wkt=getattr(run, "crs_wkt", ""))


# ------------------------------------------------------------------------------------------------ feature file
def _write_block(f: BinaryIO, data: bytes) -> None:
    f.write(_LENGTH.pack(len(data)) + data)


def _read_exactly(f: BinaryIO, n: int, path: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise InputDataError(f"The feature file '{path}' is cut short")
    return data


def write_feature_file(path: str, features: FeatureInput, crs_targets: Iterable[str], progress: Progress) -> str:
    """Each feature's integer key and WKB into ``path`` (the layer's name, CRS, field names and the PROJ pipeline
    to each of ``crs_targets`` in front); raises CancelledError when the user cancels meanwhile."""
    operations = {t: features.operation(t) for t in crs_targets} if features.crs_wkt else {}
    header = {"name": features.name, "crs_wkt": features.crs_wkt, "crs_name": features.crs_name,
              "field_names": list(features.field_names), "count": features.count(),
              "operations": [[k, v] for k, v in operations.items() if v]}
    seen: set[int] = set()
    with open(path, "wb") as f:
        _write_block(f, json.dumps(header).encode("utf-8"))
        for key, wkb, _payload in features.features():
            if key in seen:  # rows are joined back to features by id: two of one id would swap their attributes
                raise InputDataError(f"Layer '{features.name}' has two features with the id {key}: each row is "
                                     "written back to its feature by id. Save the layer with unique ids first")
            seen.add(key)
            wkb = bytes(wkb) if wkb else b""
            f.write(_RECORD.pack(int(key), len(wkb) if wkb else _NO_GEOMETRY) + wkb)
    if progress.is_canceled():
        raise CancelledError("The run was cancelled.")
    return path


@dataclass
class FeatureFile:
    """A feature file read back as the engine's :class:`~.pipeline.FeatureInput`; each payload is the key."""

    path: str
    name: str = ""
    crs_wkt: str = ""
    crs_name: str = ""
    field_names: list[str] = field(default_factory=list)
    total: int = 0
    operations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with open(self.path, "rb") as f:
            header = json.loads(self._header(f))
        self.name, self.crs_wkt, self.crs_name = header["name"], header["crs_wkt"], header["crs_name"]
        self.field_names, self.total = list(header["field_names"]), int(header["count"])
        self.operations = {k: v for k, v in header["operations"]}

    def _header(self, f: BinaryIO) -> bytes:
        return _read_exactly(f, _LENGTH.unpack(_read_exactly(f, _LENGTH.size, self.path))[0], self.path)

    def count(self) -> int:
        return self.total

    def operation(self, target_crs_wkt: str) -> str:
        if target_crs_wkt in self.operations:
            return self.operations[target_crs_wkt]
        return next((v for k, v in self.operations.items() if same_crs(k, target_crs_wkt)), "")

    def features(self, keys: Iterable[Any] | None = None) -> Iterator[tuple[int, bytes | None, int]]:
        wanted = None if keys is None else set(keys)
        with open(self.path, "rb") as f:
            self._header(f)
            while True:
                head = f.read(_RECORD.size)
                if not head:
                    return
                if len(head) != _RECORD.size:
                    raise InputDataError(f"The feature file '{self.path}' is cut short")
                key, size = _RECORD.unpack(head)
                wkb = None if size == _NO_GEOMETRY else _read_exactly(f, size, self.path)
                if wanted is None or key in wanted:
                    yield key, wkb, key


# ------------------------------------------------------------------------------------------------ rows file
def _plain(value: Any) -> Any:
    """A numpy number as the Python number it holds (JSON knows only those)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"a row value of type {type(value).__name__} cannot be written")


def _row_line(row: ObjectRow) -> bytes:
    record = {"k": row.payload, "v": row.values, "g": row.geometry_wkb.hex() if row.geometry_wkb else None}
    return json.dumps(record, default=_plain).encode("utf-8") + b"\n"


def read_rows(path: str) -> Iterator[ObjectRow]:
    """The rows a child wrote, in order; each payload is its feature's key (None for an image)."""
    with open(path, "rb") as f:
        for line in f:
            record = json.loads(line)
            yield ObjectRow(record["k"], list(record["v"]), bytes.fromhex(record["g"]) if record["g"] else None)


def classify_objects_to_file(plan: ObjectRunPlan, opening: ClassifierOpening, feature_file: str | None,
                             rows_file: str, progress: Progress) -> RunOutline:
    """The child's job: open the classifier, run ``plan`` on the features of ``feature_file`` and write every row
    to ``rows_file`` (removed when the run fails); the run's outline is the answer."""
    features = FeatureFile(feature_file) if feature_file else None
    classifier = opening.open(progress)
    try:
        with plan.run(classifier, features, progress) as run, open(rows_file, "wb") as f:
            for row in run.rows():
                f.write(_row_line(row))
            return outline_of(run)
    except BaseException:
        if os.path.exists(rows_file):
            os.remove(rows_file)
        raise
    finally:
        classifier.close()

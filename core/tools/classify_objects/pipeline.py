# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects runs: features on one raster, features on each item of a mosaic, images as objects.

The caller hands over plain inputs: a :class:`FeatureInput` (each feature's key, WKB in the layer's
CRS and an opaque payload, plus the layer's name, CRS and field names; :class:`OgrFeatures` reads
any OGR layer, the QGIS tool adapts its feature source), raster paths and an
:class:`~.classifier.ObjectClassifier`.  This module repairs invalid geometries (make valid),
reprojects them to the raster's CRS (OSR), decides which features touch which image, names the new
fields, logs what it did, and yields :class:`ObjectRow`\\ s in input order; the caller writes them to
its sink with the payload's own attributes and geometry.  Memory stays bounded: only the features
in flight are held.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from osgeo import ogr, osr

from ...errors import CancelledError, InputDataError
from ...progress import Progress, SubProgress
from ...raster.gdal_io import same_crs
from .chip_task import ObjectResult
from .classifier import ObjectClassifier
from .images import ImageInfo, image_info

ogr.UseExceptions()

IMAGE_FIELD = "Image"
VALUE_FIELD = "ClassValue"
CONFIDENCE_FIELD = "Confidence"
#: Features without any image logged one by one before only counting them.
MAX_LOGGED_UNMATCHED = 50


class FeatureInput(Protocol):
    """Input features as plain data."""

    name: str  # for messages: "Layer 'name' has no features"
    crs_wkt: str  # "" when the layer has no CRS
    crs_name: str  # "EPSG:4326" (or a description), for messages
    field_names: list[str]

    def count(self) -> int: ...

    def features(self, keys: Sequence[Any] | None = None) -> Iterable[tuple[Any, bytes | None, Any]]:
        """``(key, WKB in crs_wkt or None, payload)`` for every feature (or those with ``keys``), in order."""
        ...

    def operation(self, target_crs_wkt: str) -> str:
        """A PROJ pipeline to reproject to ``target_crs_wkt`` (a QGIS project's datum choice), or "" for PROJ's own."""
        ...


@dataclass
class ObjectRow:
    """One output record: the payload it belongs to (None for an image), a geometry (images only) and values."""

    payload: Any
    values: list[Any]
    geometry_wkb: bytes | None = None


@dataclass
class FieldSpec:
    name: str
    kind: str  # "text", "int" or "real"


# ------------------------------------------------------------------------------------------------ field names
def check_label_field(name: str) -> str:
    """The CLASS_LABEL_FIELD value, stripped, or a clear error."""
    label = (name or "").strip()
    if not label:
        raise InputDataError("The class label field name is empty: give a field name")
    if label.lower() in (VALUE_FIELD.lower(), CONFIDENCE_FIELD.lower()):
        raise InputDataError(f"The class label field cannot be called '{label}': the tool writes that field itself")
    return label


def unique_names(existing: list[str], wanted: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Names for new fields: a taken name (case-insensitive) gets the first free suffix _1, _2, ..."""
    taken = {n.lower() for n in existing}
    out: list[str] = []
    renamed: list[tuple[str, str]] = []
    for name in wanted:
        candidate, i = name, 1
        while candidate.lower() in taken:
            candidate = f"{name}_{i}"
            i += 1
        taken.add(candidate.lower())
        out.append(candidate)
        if candidate != name:
            renamed.append((name, candidate))
    return out, renamed


def new_fields(existing: list[str], label_field: str, multilabel: bool, with_image: bool,
               progress: Progress) -> list[FieldSpec]:
    """The fields the tool adds after ``existing``: [Image,] label, ClassValue, Confidence (text when multi-label)."""
    wanted = ([IMAGE_FIELD] if with_image else []) + [label_field, VALUE_FIELD, CONFIDENCE_FIELD]
    names, renamed = unique_names(existing, wanted)
    for old, new in renamed:
        progress.warning(f"The input already has a field '{old}': the new field is called '{new}'")
    kinds = (["text"] if with_image else []) + ["text"] + (["text", "text"] if multilabel else ["int", "real"])
    return [FieldSpec(n, k) for n, k in zip(names, kinds)]


def per_item_input_names(existing: list[str], progress: Progress) -> list[str]:
    """A feature may be written once per image: a field called 'fid' (a GeoPackage's unique key) becomes input_fid."""
    taken = list(existing)
    out = []
    for name in existing:
        if name.lower() == "fid":
            new_name = unique_names(taken, ["input_fid"])[0][0]
            taken.append(new_name)
            progress.info(f"A feature can be written once per image, so the input field '{name}' is written as "
                          f"'{new_name}'")
            name = new_name
        out.append(name)
    return out


# ------------------------------------------------------------------------------------------------ geometries
def crs_label(wkt: str) -> str:
    """"EPSG:32633" for a CRS with an authority code, else its name."""
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    name, code = srs.GetAuthorityName(None), srs.GetAuthorityCode(None)
    return f"{name}:{code}" if name and code else (srs.GetName() or "unknown CRS")


class ChipGeometries:
    """Features' WKB (in their layer's CRS) -> WKB in a raster's CRS, repaired; says what it does once."""

    def __init__(self, features: FeatureInput, raster_crs_wkt: str, raster_crs_name: str, raster_name: str,
                 progress: Progress) -> None:
        self.transform: osr.CoordinateTransformation | None = None
        self.repaired = 0
        if not raster_crs_wkt:
            progress.warning(f"Raster '{raster_name}' has no CRS: feature coordinates are used as they are")
        elif not features.crs_wkt:
            progress.warning(f"Layer '{features.name}' has no CRS: its features are taken to be in the raster's CRS "
                             f"({raster_crs_name})")
        elif not same_crs(features.crs_wkt, raster_crs_wkt):
            progress.info(f"Features are transformed from {features.crs_name} to the raster's {raster_crs_name}")
            src, dst = osr.SpatialReference(), osr.SpatialReference()
            src.ImportFromWkt(features.crs_wkt)
            dst.ImportFromWkt(raster_crs_wkt)
            for s in (src, dst):
                s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            options = osr.CoordinateTransformationOptions()
            pipeline = features.operation(raster_crs_wkt) if hasattr(features, "operation") else ""
            if pipeline:
                options.SetOperation(pipeline)
            self.transform = osr.CoordinateTransformation(src, dst, options)

    def prepare(self, wkb: bytes | None) -> tuple[ogr.Geometry | None, str | None]:
        """The geometry in the raster's CRS, repaired; or (None, why)."""
        geom = None
        if wkb:
            try:
                geom = ogr.CreateGeometryFromWkb(bytes(wkb))
            except RuntimeError:
                geom = None
        if geom is None or geom.IsEmpty():
            return None, "it has no geometry"
        if not geom.IsValid():
            fixed = geom.MakeValid()
            if fixed is None or fixed.IsEmpty():
                return None, "its geometry is invalid and could not be repaired"
            geom = fixed
            self.repaired += 1
        if self.transform is not None:
            try:
                geom.Transform(self.transform)
            except RuntimeError as exc:
                return None, f"its geometry cannot be transformed to the raster's CRS ({exc})"
        return geom, None


# ------------------------------------------------------------------------------------------------ the runs
def _wkb(geom: ogr.Geometry | None) -> bytes | None:
    return bytes(geom.ExportToIsoWkb()) if geom is not None else None


def _values(result: ObjectResult) -> list[Any]:
    return [result.label, result.class_value, result.confidence]


def _no_features(features: FeatureInput) -> InputDataError:
    return InputDataError(f"Layer '{features.name}' has no features: there is nothing to classify")


def _check_canceled(progress: Progress) -> None:
    if progress.is_canceled():
        raise CancelledError("The run was cancelled.")


class FeaturesOnRaster:
    """Every feature classified once on one raster (a single image or a mosaic)."""

    def __init__(self, classifier: ObjectClassifier, features: FeatureInput, raster: str, label_field: str,
                 progress: Progress, raster_crs: tuple[str, str] | None = None) -> None:
        self.classifier, self.features, self.raster, self.progress = classifier, features, raster, progress
        self.total = features.count()
        if self.total == 0:
            raise _no_features(features)
        if raster_crs is None:
            wkt = image_info(raster).crs_wkt
            raster_crs = (wkt, crs_label(wkt) if wkt else "")
        self.geometries = ChipGeometries(features, raster_crs[0], raster_crs[1], os.path.basename(raster), progress)
        self.fields = new_fields(features.field_names, label_field, classifier.multilabel, False, progress)

    def rows(self) -> Iterator[ObjectRow]:
        pending: dict[Any, Any] = {}

        def items() -> Iterator[tuple[Any, bytes | None, str | None]]:
            for key, wkb, payload in self.features.features():
                pending[key] = payload
                geom, note = self.geometries.prepare(wkb)
                yield key, _wkb(geom), note

        count = 0
        total = self.total if self.total > 0 else None
        for result in self.classifier.classify(self.raster, items(), total):
            yield ObjectRow(pending.pop(result.key), _values(result))
            count += 1
        _check_canceled(self.progress)
        if count == 0:
            raise _no_features(self.features)
        if self.geometries.repaired:
            self.progress.info(f"{self.geometries.repaired} invalid geometries were repaired (make valid) to cut their "
                               "chips; the output keeps the original geometries")
        for line in self.classifier.summary_lines("features"):
            self.progress.info(line)


class FeaturesPerItem:
    """Every feature classified on each image it touches: one row per feature and image, then the untouched ones."""

    def __init__(self, classifier: ObjectClassifier, features: FeatureInput, items: list[str], label_field: str,
                 progress: Progress) -> None:
        self.classifier, self.features, self.items, self.progress = classifier, features, items, progress
        if features.count() == 0:
            raise _no_features(features)
        self.input_names = per_item_input_names(features.field_names, progress)
        self.fields = new_fields(self.input_names, label_field, classifier.multilabel, True, progress)

    def rows(self) -> Iterator[ObjectRow]:
        matched: set[Any] = set()
        all_keys: list[Any] = []
        seen: set[Any] = set()
        repaired = 0
        for n, path in enumerate(self.items):
            info = image_info(path)
            if info.error:
                self.progress.warning(f"Image '{info.name}' is skipped: {info.error}")
                continue
            geometries = ChipGeometries(self.features, info.crs_wkt, crs_label(info.crs_wkt) if info.crs_wkt else "",
                                        info.name, self.progress)
            extent = ogr.CreateGeometryFromWkb(info.extent_wkb)
            pending: dict[Any, Any] = {}

            def on_image(geometries: ChipGeometries = geometries, extent: ogr.Geometry = extent,
                         pending: dict = pending) -> Iterator[tuple[Any, bytes | None]]:
                for key, wkb, payload in self.features.features():
                    if key not in seen:
                        seen.add(key)
                        all_keys.append(key)
                    geom, _note = geometries.prepare(wkb)
                    if geom is None or not geom.Intersects(extent):
                        continue
                    pending[key] = payload
                    matched.add(key)
                    yield key, _wkb(geom)

            stem = os.path.splitext(info.name)[0]
            sub = SubProgress(self.progress, 100.0 * n / len(self.items), 100.0 * (n + 1) / len(self.items))
            results = self.classifier.classify(info.path, on_image(), None,
                                               describe=lambda k, s=info.name: f"Feature {k} on '{s}'",
                                               chip_name=lambda k, s=stem: f"{s}_{k}", progress=sub)
            for result in results:
                yield ObjectRow(pending.pop(result.key), [info.path] + _values(result))
            sub.set_progress(100.0)
            repaired += geometries.repaired
            _check_canceled(self.progress)
        unmatched = [k for k in all_keys if k not in matched]
        if unmatched:
            for i, (key, _geometry, payload) in enumerate(self.features.features(sorted(unmatched))):
                if i < MAX_LOGGED_UNMATCHED:
                    self.progress.warning(f"Feature {key}: no label, it does not touch any image (or has no usable "
                                          "geometry)")
                yield ObjectRow(payload, [None, None, None, None])
            self.progress.warning(f"{len(unmatched)} features touch no image and have no label")
        if repaired:
            self.progress.info(f"Invalid geometries were repaired (make valid) {repaired} times to cut chips; the output "
                               "keeps the original geometries")
        for line in self.classifier.summary_lines("feature-image pairs"):
            self.progress.info(line)


class ImagesAsObjects:
    """Every image one object: its extent polygon (in the output CRS) or, when none is georeferenced, a table."""

    def __init__(self, classifier: ObjectClassifier, images: list[str], label_field: str, progress: Progress,
                 layer_crs_wkt: str | None = None) -> None:
        self.classifier, self.progress = classifier, progress
        self.infos: list[ImageInfo] = [image_info(p) for p in images]
        georef = [i for i in self.infos if i.georeferenced and not i.error]
        self.has_geometry = bool(georef)
        #: the output CRS: the input layer's (one image given as a layer), else the first georeferenced image's
        self.crs_from_layer = bool(georef and layer_crs_wkt)
        self.crs_wkt = (layer_crs_wkt or "") if self.crs_from_layer else (georef[0].crs_wkt if georef else "")
        if not georef:
            progress.info("The images are not georeferenced: the output is a table of image paths and labels")
        self.fields = new_fields([], label_field, classifier.multilabel, True, progress)

    def _extent(self, info: ImageInfo) -> bytes | None:
        if not (self.has_geometry and info.georeferenced and not info.error):
            return None
        geom = ogr.CreateGeometryFromWkb(info.extent_wkb)
        if info.crs_wkt and self.crs_wkt and not same_crs(info.crs_wkt, self.crs_wkt):
            src, dst = osr.SpatialReference(), osr.SpatialReference()
            src.ImportFromWkt(info.crs_wkt)
            dst.ImportFromWkt(self.crs_wkt)
            for s in (src, dst):
                s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            try:
                geom.Transform(osr.CoordinateTransformation(src, dst))
            except RuntimeError:
                self.progress.warning(f"Image '{info.name}': its extent cannot be transformed to the output CRS")
                return None
        return bytes(geom.ExportToWkb())

    def rows(self) -> Iterator[ObjectRow]:
        infos = self.infos
        stems = [os.path.splitext(i.name)[0] for i in infos]
        entries = [(k, info.path, None if info.error else info.extent_wkb, info.error) for k, info in enumerate(infos)]
        results = self.classifier.classify_items(entries, len(entries), describe=lambda k: f"Image '{infos[k].name}'",
                                                 chip_name=lambda k: stems[k])
        for result in results:
            info = infos[result.key]
            yield ObjectRow(None, [info.path] + _values(result), self._extent(info))
        for line in self.classifier.summary_lines("images"):
            self.progress.info(line)


# ------------------------------------------------------------------------------------------------ OGR input
@dataclass
class OgrFeatures:
    """A vector file (any OGR format) as :class:`FeatureInput`: for scripts, notebooks and tests without QGIS.

    The payload of each feature is its attribute dict.
    """

    path: str
    layer: str | int = 0
    name: str = ""
    crs_wkt: str = ""
    crs_name: str = ""
    field_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        ds = self._open()
        lyr = ds.GetLayer(self.layer)
        srs = lyr.GetSpatialRef()
        self.name = self.name or lyr.GetName()
        self.crs_wkt = srs.ExportToWkt() if srs is not None else ""
        self.crs_name = crs_label(self.crs_wkt) if self.crs_wkt else ""
        defn = lyr.GetLayerDefn()
        self.field_names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]

    def _open(self):  # noqa: ANN202 - an ogr.DataSource
        try:
            return ogr.Open(self.path)
        except RuntimeError as exc:
            raise InputDataError(f"Cannot open the features '{self.path}': {exc}") from exc

    def count(self) -> int:
        ds = self._open()
        return ds.GetLayer(self.layer).GetFeatureCount()

    def features(self, keys: Sequence[Any] | None = None) -> Iterator[tuple[Any, bytes | None, Any]]:
        ds = self._open()
        lyr = ds.GetLayer(self.layer)
        wanted = None if keys is None else set(keys)
        for feature in lyr:
            key = feature.GetFID()
            if wanted is not None and key not in wanted:
                continue
            geom = feature.GetGeometryRef()
            yield key, (bytes(geom.ExportToWkb()) if geom is not None else None), feature.items()

# SPDX-License-Identifier: GPL-2.0-or-later
"""Export Training Data For Deep Learning: chips of a raster and their labels, in ArcGIS's layouts.

One chip at a time: read its window (raw values, the chosen bands, through the same
:class:`~core.raster.gdal_io.RasterSource` as the inference tools), ask the class data what falls in
it, write the chip and its labels, add its pixels to the statistics.  Memory holds one chip and the
class features, whatever the raster's size.  Everything is written into a hidden temporary folder that
becomes the output folder only when the last metadata file is written; a cancel or an error removes it.

Where the chips are (the README repeats it):

* The tiles start at the raster's top-left pixel and step by the stride; along each axis tiles are
  added until one reaches the raster's last column (row), so every pixel is in a chip and the last
  chip may reach past the edge: those pixels are 0 (and, like NoData, not counted in the statistics).
* A chip with no valid pixel is never written; one without a labelled feature only with
  OUTPUT_NOFEATURE_TILES.  With MASK only chips lying completely inside the mask polygons are written.
* Labeled_Tiles cuts one chip per feature instead (FIXED_SIZE: the tile size, centred on the centre of
  the feature's bounding box; BOUNDING_BOX: every pixel the bounding box touches).
* ROTATION_ANGLE adds each chip turned counter-clockwise about its centre by that angle and its multiples below
  360 (90: 90, 180, 270; 45: 45, 90, ..., 315), same size, with a geotransform (and world file) that keeps every
  pixel in its place on the map.  Quarter turns rearrange the pixels and labels exactly; other angles take each
  pixel from the input pixel under its centre (nearest: raw values) and cut the labels anew on the turned
  footprint (see rotation.py).  A turned copy is written under the same rules as any chip (valid pixels, a
  labelled feature unless OUTPUT_NOFEATURE_TILES).
* Chips are numbered from START_INDEX, 9 digits: ``000000000.tif``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from osgeo import ogr

from ...errors import InputDataError
from ...progress import NullProgress, Progress, SubProgress, check_canceled
from ...raster.gdal_io import RasterSource, bounded_gdal_cache
from ...safe_output import check_new_folder, replacing_folder
from .chip_files import turn_array, turn_box, turn_point, turn_transform, write_chip
from .labels import ChipObject, ClassFeatures, chip_rectangle, is_point_geometry, pixel_box, pixel_rings, rasterize
from .layouts import WRITERS, ChipLabels, ChipObjectLabel
from .metadata import BandStats, ClassTally, RunInfo, write_metadata
from .rotation import read_rotated, rotated_transform
from .settings import (
    BOUNDING_BOX,
    CHIP_FORMATS,
    CLASSIFIED_TILES,
    COCO,
    LABELED_TILES,
    PIXEL_SPACE,
    RCNN_MASKS,
    ExportSettings,
    check_settings,
)

#: PIXEL_SPACE: chips are placed on the input's pixel grid (x = column, y = -row)
PIXEL_GRID = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class ClassData:
    """The labels: features ``(key, WKB in the raster's CRS, class value)``, or a classified raster's path."""

    features: Iterable[tuple[object, bytes | None, object]] | None = None
    raster: str | None = None
    name: str = "CLASS_DATA"


@dataclass(frozen=True)
class ExportSummary:
    folder: str
    chips: int
    classes: list[int]
    features: int


@dataclass
class _Chip:
    """One chip before it is written: pixels, where it is, its labels at rotation 0."""

    data: np.ndarray
    valid: np.ndarray
    x0: int
    y0: int
    map_gt: tuple[float, ...]
    objects: list[ChipObject]
    class_mask: np.ndarray | None = None
    instance_masks: dict[int, np.ndarray] | None = None
    angle: float = 0.0  # degrees counter-clockwise (map_gt then carries the rotation)
    feature: ogr.Geometry | None = None  # Labeled_Tiles: the feature the chip is cut around

    def amounts(self, fmt: str) -> dict[int, int]:
        if fmt == CLASSIFIED_TILES:
            values, counts = np.unique(self.class_mask, return_counts=True)
            return {int(v): int(c) for v, c in zip(values, counts) if v}
        if fmt == RCNN_MASKS:
            return {v: len(np.unique(m[m > 0])) for v, m in (self.instance_masks or {}).items()}
        found: dict[int, int] = {}
        for obj in self.objects:
            found[obj.value] = found.get(obj.value, 0) + 1
        return found


def tile_origins(size: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: 0, stride, ... until a tile reaches the last pixel."""
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + stride)
    return starts


def export_training_data(raster: str | Sequence[str], folder: str, class_data: ClassData, settings: ExportSettings,
                         mask_wkbs: Iterable[bytes] = (), progress: Progress | None = None) -> ExportSummary:
    """Write the training-data folder ``folder`` (new or empty) from ``raster`` and ``class_data``.

    ``raster`` may be several rasters (a mosaic's items, processed separately): their chips go into the one
    folder, numbered on, with one set of statistics; they must share pixel type and bands."""
    progress = progress or NullProgress()
    check_new_folder(folder)
    items = [raster] if isinstance(raster, str) else list(raster)
    bands = list(settings.bands) if settings.bands else list(range(_band_count(items[0])))
    source = RasterSource(items[0], bands)
    features = None
    if class_data.features is not None:
        samples = list(class_data.features)
        points = any(wkb is not None and is_point_geometry(wkb) for _k, wkb, _v in samples)
        check_settings(settings, source.dtype, len(source.bands), False, points)
        features = ClassFeatures(samples, settings.buffer_radius)
        if not features.count():
            raise InputDataError(f"{class_data.name} has no features with a geometry: nothing to label")
    else:
        check_settings(settings, source.dtype, len(source.bands), True, False)
    run = _Run(items, bands, settings, features, class_data.raster, _union(mask_wkbs), progress)
    with bounded_gdal_cache(), replacing_folder(folder) as tmp:
        run.write_all(tmp)
    progress.info(f"{run.tally.chips} chips written to '{folder}' ({settings.metadata_format}, "
                  f"{settings.image_format}); classes: {', '.join(map(str, run.classes())) or 'none'}")
    return ExportSummary(folder=folder, chips=run.tally.chips, classes=run.classes(),
                         features=features.count() if features else 0)


def _band_count(path: str) -> int:
    from ...raster.gdal_io import open_raster

    return open_raster(path).RasterCount


def _union(wkbs: Iterable[bytes]) -> ogr.Geometry | None:
    union = None
    for wkb in wkbs:
        geom = ogr.CreateGeometryFromWkb(wkb)
        if not geom.IsValid():
            geom = geom.MakeValid() if hasattr(geom, "MakeValid") else geom.Buffer(0)
        union = geom if union is None else union.Union(geom)
    return union


class _Run:
    """One export's state: the writer, the statistics, the chip counter."""

    def __init__(self, items: list[str], bands: list[int], settings: ExportSettings, features: ClassFeatures | None,
                 class_raster: str | None, mask: ogr.Geometry | None, progress: Progress) -> None:
        self.items, self.bands, self.settings, self.features = items, bands, settings, features
        self.class_raster, self.mask, self.progress = class_raster, mask, progress
        self._use(0)
        self.band_names = [self.source.band_names()[b] for b in self.source.bands]
        self.dtype = self.source.dtype
        self.stats = BandStats(len(bands))
        self.tally = ClassTally()
        self.seen: set[int] = set()
        self.index = settings.start_index
        self.driver, self.image_ext, self.world_ext = CHIP_FORMATS[settings.image_format]

    def _use(self, k: int) -> None:
        """Read item ``k`` from now on (its own grid; the class raster read onto it)."""
        self.source = RasterSource(self.items[k], self.bands)
        if k and self.source.dtype != self.dtype:
            raise InputDataError(f"Raster item '{self.items[k]}' holds {self.source.dtype} pixels, the first item "
                                 f"{self.dtype}: the items of one export must share their pixel type")
        self.grid = self.source.grid
        self.labels_raster = RasterSource(self.class_raster, [0], grid=self.grid, resampling="near") \
            if self.class_raster else None

    def classes(self) -> list[int]:
        return sorted(self.features.values if self.features is not None else self.seen)

    def write_all(self, folder: str) -> None:
        os.makedirs(os.path.join(folder, "images"))
        writer = WRITERS[self.settings.metadata_format](folder, self.image_ext, self.world_ext, self.classes())
        with open(os.path.join(folder, "map.txt"), "w", encoding="utf-8") as map_txt:
            for chip in self._all_chips():
                check_canceled(self.progress)
                for angle in self.settings.angles():
                    if angle % 90 == 0:
                        map_txt.write(self._write_chip(folder, writer, chip, int(angle // 90)) + "\n")
                        continue
                    turned = self._rotated(chip, angle)
                    if turned is not None:
                        map_txt.write(self._write_chip(folder, writer, turned, 0) + "\n")
        writer.finish(self.classes())
        if self.settings.metadata_format == COCO:
            os.remove(os.path.join(folder, "map.txt"))
        info = RunInfo(settings=self.settings, band_names=self.band_names, dtype=str(self.dtype),
                       cell_size=self.grid.cell_size, crs_wkt=self.grid.crs_wkt,
                       chip_width=self.settings.tile_x, chip_height=self.settings.tile_y)
        write_metadata(folder, info, self.stats, self.tally, self.classes())
        self.progress.set_progress(100.0)

    # -- where the chips are ---------------------------------------------------------------
    def _all_chips(self) -> Iterator[_Chip]:
        """Every item's chips, item after item (one raster: just its chips)."""
        parent = self.progress
        for k in range(len(self.items)):
            if k:
                self._use(k)
            if len(self.items) > 1:
                parent.info(f"Item {k + 1}/{len(self.items)}: {self.items[k]}")
                self.progress = SubProgress(parent, 100.0 * k / len(self.items), 100.0 * (k + 1) / len(self.items))
            yield from self._feature_chips() if self.settings.metadata_format == LABELED_TILES else self._tile_chips()
        self.progress = parent

    def _tile_chips(self) -> Iterator[_Chip]:
        s = self.settings
        xs = tile_origins(self.grid.width, s.tile_x, s.stride_x)
        ys = tile_origins(self.grid.height, s.tile_y, s.stride_y)
        total = len(xs) * len(ys)
        for n, (y0, x0) in enumerate((y, x) for y in ys for x in xs):
            self.progress.set_progress(99.0 * n / total)
            gt = self._map_gt(x0, y0)
            if self.mask is not None and not self.mask.Contains(chip_rectangle(gt, s.tile_x, s.tile_y)):
                continue
            data, valid = self.source.read(x0, y0, s.tile_x, s.tile_y)
            if not valid.any():
                continue
            chip = self._labelled(_Chip(data, valid, x0, y0, gt, []))
            if s.output_nofeature_tiles or any(chip.amounts(s.metadata_format).values()):
                yield chip

    def _feature_chips(self) -> Iterator[_Chip]:
        s = self.settings
        total = self.features.count() or 1
        for n, (value, geom) in enumerate(self.features.all()):
            self.progress.set_progress(99.0 * n / total)
            x0, y0, w, h = self._feature_window(geom)
            gt = self._map_gt(x0, y0)
            data, valid = self.source.read(x0, y0, w, h)
            data[:, ~valid] = 0
            area = geom.GetArea() > 0
            if s.blacken_around_feature and area:
                inside = rasterize([ChipObject(value, (0, 0, 0, 0), geom)], [1], gt, w, h, "uint8") > 0
                data[:, ~inside] = 0
                valid = valid & inside
            if not valid.any():
                continue
            part = geom.Intersection(chip_rectangle(gt, w, h)) if area else geom
            box = pixel_box(gt, part)
            yield _Chip(data, valid, x0, y0, gt, [ChipObject(value, box, part)], feature=geom)

    def _feature_window(self, geom: ogr.Geometry) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = pixel_box(self.grid.geotransform, geom)
        if self.settings.crop_mode == BOUNDING_BOX:
            x0, y0 = math.floor(x1), math.floor(y1)
            return x0, y0, max(1, math.ceil(x2) - x0), max(1, math.ceil(y2) - y0)
        w, h = self.settings.tile_x, self.settings.tile_y
        return math.floor((x1 + x2) / 2 - w / 2 + 0.5), math.floor((y1 + y2) / 2 - h / 2 + 0.5), w, h

    def _map_gt(self, x0: int, y0: int) -> tuple[float, ...]:
        g = self.grid.geotransform
        return (g[0] + x0 * g[1], g[1], 0.0, g[3] + y0 * g[5], 0.0, g[5])

    # -- what is in a chip -----------------------------------------------------------------
    def _labelled(self, chip: _Chip) -> _Chip:
        h, w = chip.valid.shape
        fmt = self.settings.metadata_format
        if self.labels_raster is not None:
            labels, known = read_rotated(self.labels_raster, chip.x0, chip.y0, w, h, chip.angle) if chip.angle \
                else self.labels_raster.read(chip.x0, chip.y0, w, h)
            mask = np.where(known, labels[0], 0).astype(np.uint16)
            self.seen.update(int(v) for v in np.unique(mask) if v)
            return replace(chip, class_mask=mask)
        objects = self.features.in_chip(chip.map_gt, w, h, self.settings.min_polygon_overlap_ratio)
        if fmt == CLASSIFIED_TILES:
            return replace(chip, objects=objects, class_mask=rasterize(objects, [o.value for o in objects],
                                                                       chip.map_gt, w, h))
        if fmt == RCNN_MASKS:
            masks = {}
            for value in sorted({o.value for o in objects}):
                own = [o for o in objects if o.value == value]
                masks[value] = rasterize(own, list(range(1, len(own) + 1)), chip.map_gt, w, h)
            return replace(chip, objects=objects, instance_masks={v: m for v, m in masks.items() if m.any()})
        return replace(chip, objects=objects)

    # -- writing -------------------------------------------------------------------------------
    def _rotated(self, chip: _Chip, degrees: float) -> _Chip | None:
        return _rotated_chip(self, chip, degrees)

    def _write_chip(self, folder: str, writer, chip: _Chip, quarter_turns: int) -> str:  # noqa: ANN001
        s = self.settings
        stem = f"{self.index:09d}"
        self.index += 1
        h, w = chip.valid.shape
        gt = chip.map_gt if s.reference_system != PIXEL_SPACE else \
            rotated_transform(PIXEL_GRID, chip.x0, chip.y0, w, h, chip.angle)
        crs = self.grid.crs_wkt if s.reference_system != PIXEL_SPACE else ""
        data, valid = np.where(chip.valid, chip.data, 0).astype(chip.data.dtype), chip.valid
        labels = ChipLabels(stem=stem, image_name=f"{stem}.{self.image_ext}", width=data.shape[2],
                            height=data.shape[1], bands=data.shape[0], gt=gt, crs_wkt=crs,
                            objects=[ChipObjectLabel(o.value, o.box, pixel_rings(chip.map_gt, o.geometry)
                                                     if s.metadata_format == COCO else []) for o in chip.objects],
                            class_mask=chip.class_mask, instance_masks=dict(chip.instance_masks or {}))
        for _ in range(quarter_turns):
            data, valid, labels = turn_array(data), turn_array(valid), _turned(labels)
        write_chip(os.path.join(folder, "images", labels.image_name), np.ascontiguousarray(data), self.driver,
                   labels.gt, crs, self.world_ext)
        label_path = writer.write(labels)
        self.stats.add(data, valid)
        self.tally.add(chip.amounts(s.metadata_format))
        return f"images\\{labels.image_name} {label_path}"


def _rotated_chip(run: _Run, chip: _Chip, degrees: float) -> _Chip | None:
    """``chip`` turned by ``degrees`` (not a quarter turn): pixels gathered nearest, labels cut anew on its footprint;
    None when the turned chip has no valid pixel, or no labelled feature where those are required."""
    s = run.settings
    h, w = chip.valid.shape
    data, valid = read_rotated(run.source, chip.x0, chip.y0, w, h, degrees)
    gt = rotated_transform(run.grid.geotransform, chip.x0, chip.y0, w, h, degrees)
    turned = _Chip(data, valid, chip.x0, chip.y0, gt, [], angle=degrees, feature=chip.feature)
    if chip.feature is not None:  # Labeled_Tiles: the same feature, on the turned footprint
        geom = chip.feature
        if geom.GetArea() > 0:
            if s.blacken_around_feature:
                inside = rasterize([ChipObject(0, (0, 0, 0, 0), geom)], [1], gt, w, h, "uint8") > 0
                turned.data[:, ~inside] = 0
                turned.valid = valid & inside
            geom = geom.Intersection(chip_rectangle(gt, w, h))
        turned.data[:, ~turned.valid] = 0
        turned.objects = [ChipObject(chip.objects[0].value, pixel_box(gt, geom), geom)]
    else:
        turned = run._labelled(turned)
    if not turned.valid.any():
        return None
    if chip.feature is None and not s.output_nofeature_tiles and not any(turned.amounts(s.metadata_format).values()):
        return None
    return turned


def _turned(labels: ChipLabels) -> ChipLabels:
    """``labels`` after a quarter turn counter-clockwise of its chip."""
    w = labels.width
    objects = [ChipObjectLabel(o.value, turn_box(o.box, w), [[turn_point(p, w) for p in ring] for ring in o.rings])
               for o in labels.objects]
    return replace(labels, width=labels.height, height=w, gt=turn_transform(labels.gt, w), objects=objects,
                   class_mask=None if labels.class_mask is None else np.ascontiguousarray(turn_array(labels.class_mask)),
                   instance_masks={v: np.ascontiguousarray(turn_array(m)) for v, m in labels.instance_masks.items()})

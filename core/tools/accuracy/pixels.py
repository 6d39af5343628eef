# SPDX-License-Identifier: GPL-2.0-or-later
"""Compute Accuracy For Pixel Classification: a classified raster against reference data.

Everything happens on the classified raster's grid, block by block (memory: one block): a reference raster
is read onto it with nearest neighbour (any extent, cell size or CRS), reference polygons and points are
rasterised onto it (a polygon labels the pixels whose centre is inside, a point the pixel it falls in).  A
pixel counts where both the classified raster and the reference have a value (NoData, and pixels no
reference feature covers, are left out).  ``class_mapping`` turns reference values into the classified
raster's (e.g. a reference 1/2/3 = clear onto the model's 0); reference values it does not name stay as they
are.

Sampling (ArcGIS's Create Accuracy Assessment Points): ``ALL`` pixels; ``RANDOM``: that many pixels drawn
uniformly without replacement; ``STRATIFIED_RANDOM``: as many per reference class as its share of the pixels
(largest remainders make the total exact); ``EQUALIZED_STRATIFIED_RANDOM``: the same number per reference class
(all of a class smaller than that).  Draws come from numpy's generator seeded with ``seed``: the same seed
gives the same points.  Two passes over the blocks: one counts, one picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from osgeo import ogr

from ...engine.class_scores import scores_of
from ...errors import InputDataError
from ...progress import NullProgress, Progress, SubProgress, check_canceled
from ...raster.burn import FeatureIndex, rasterize, window_rectangle
from ...raster.gdal_io import RasterSource, bounded_gdal_cache

SAMPLINGS = ("ALL", "RANDOM", "STRATIFIED_RANDOM", "EQUALIZED_STRATIFIED_RANDOM")
BLOCK = 512
_NONE = -(2 ** 31)  # "no reference here" in the rasterised reference


@dataclass(frozen=True)
class Reference:
    """Reference data: a classified raster, or features ``(key, WKB in the classified raster's CRS, value)``."""

    raster: str | None = None
    features: list[tuple[object, bytes | None, object]] | None = None
    name: str = "REFERENCE"


@dataclass(frozen=True)
class PixelAccuracy:
    """The confusion matrix (rows: classified, columns: reference) over ``classes`` and what follows from it."""

    classes: list[int]
    matrix: np.ndarray
    sampling: str

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def overall_accuracy(self) -> float:
        return float(np.trace(self.matrix) / self.total) if self.total else 0.0

    def kappa(self) -> float:
        total = self.total
        if not total:
            return 0.0
        expected = float((self.matrix.sum(axis=1) * self.matrix.sum(axis=0)).sum()) / total ** 2
        observed = self.overall_accuracy()
        return (observed - expected) / (1 - expected) if expected < 1 else (1.0 if observed == 1 else 0.0)

    def per_class(self) -> list[dict]:
        """Per class: pixels classified and in the reference, precision (user's), recall (producer's), F1, IoU."""
        _, scores = scores_of(self.matrix.T, [str(v) for v in self.classes])  # rows: the reference (the truth)
        return [{"value": value, "classified": int(self.matrix[k].sum()), "reference": int(self.matrix[:, k].sum()),
                 "precision": scores.precision[k], "recall": scores.recall[k], "f1": scores.f1[k],
                 "iou": scores.iou[k]} for k, value in enumerate(self.classes)]

    def mean_iou(self) -> float:
        ious = [r["iou"] for r in self.per_class() if r["classified"] or r["reference"]]
        return float(np.mean(ious)) if ious else 0.0


def parse_class_mapping(text: str) -> dict[int, int]:
    """``"0:2;1:0;2:0;3:0;4:1"`` (reference value: classified value, separated by ';' or ',') as a dict."""
    mapping: dict[int, int] = {}
    for part in text.replace(",", ";").split(";"):
        if not part.strip():
            continue
        try:
            ref, cls = (int(float(v)) for v in part.split(":"))
        except ValueError:
            raise InputDataError(f"CLASS_MAPPING '{part.strip()}' is not 'reference value:classified value' with whole "
                                 "numbers (e.g. '0:2;4:1')") from None
        mapping[ref] = cls
    return mapping


class _Blocks:
    """The classified raster and the reference, block by block, on the classified raster's grid."""

    def __init__(self, classified: str, reference: Reference, mapping: dict[int, int]) -> None:
        self.source = RasterSource(classified, [0])
        self.grid = self.source.grid
        self.mapping = mapping
        self.ref_raster = RasterSource(reference.raster, [0], grid=self.grid, resampling="near") \
            if reference.raster else None
        self.index = None
        if reference.features is not None:
            self.index = FeatureIndex()
            for key, wkb, value in reference.features:
                if wkb is None:
                    continue
                try:
                    number = float(value)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    number = float("nan")
                if not number.is_integer():
                    raise InputDataError(f"{reference.name} feature {key} has class value {value!r}: whole numbers only")
                self.index.add(int(number), ogr.CreateGeometryFromWkb(wkb))
            if not self.index.count():
                raise InputDataError(f"{reference.name} has no features with a geometry")

    def windows(self) -> list[tuple[int, int, int, int]]:
        g = self.grid
        return [(x, y, min(BLOCK, g.width - x), min(BLOCK, g.height - y))
                for y in range(0, g.height, BLOCK) for x in range(0, g.width, BLOCK)]

    def pairs(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(classified, reference) values of the pixels of the window where both have one, row by row."""
        cls, cvalid = self.source.read(x, y, w, h)
        if self.ref_raster is not None:
            ref, rvalid = self.ref_raster.read(x, y, w, h)
            ref = ref[0].astype(np.int64)
        else:
            g = self.grid.geotransform
            gt = (g[0] + x * g[1], g[1], 0.0, g[3] + y * g[5], 0.0, g[5])
            found = list(self.index.touching(window_rectangle(gt, w, h)))
            ref = rasterize([f[1] for f in found], [f[0] for f in found], gt, w, h, "int32", fill=_NONE)
            ref = ref.astype(np.int64)
            rvalid = ref != _NONE
        valid = cvalid & rvalid
        classified = cls[0][valid]
        if not np.issubdtype(classified.dtype, np.integer):
            classified = np.rint(classified)
        reference = ref[valid]
        for source_value, target in self.mapping.items():
            reference = np.where(ref[valid] == source_value, target, reference)
        return classified.astype(np.int64), reference


def pixel_accuracy(classified: str, reference: Reference, class_mapping: dict[int, int] | None = None,
                   sampling: str = "ALL", points: int = 500, seed: int = 1,
                   progress: Progress | None = None) -> PixelAccuracy:
    """The confusion matrix of ``classified`` against ``reference`` (see the module's rules)."""
    progress = progress or NullProgress()
    if sampling not in SAMPLINGS:
        raise InputDataError(f"SAMPLING '{sampling}' is not one of {', '.join(SAMPLINGS)}")
    if sampling != "ALL" and points < 1:
        raise InputDataError(f"NUMBER_OF_POINTS must be at least 1 for {sampling}, not {points}")
    blocks = _Blocks(classified, reference, class_mapping or {})
    with bounded_gdal_cache():
        if sampling == "ALL":
            return _confusion(_all_pairs(blocks, progress), sampling)
        counts = _reference_counts(blocks, SubProgress(progress, 0, 50))
        picks = _draw(counts, sampling, points, seed)
        return _confusion(_picked_pairs(blocks, picks, SubProgress(progress, 50, 100)), sampling)


def _all_pairs(blocks: _Blocks, progress: Progress) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    windows = blocks.windows()
    for n, window in enumerate(windows):
        check_canceled(progress)
        yield blocks.pairs(*window)
        progress.set_progress(100.0 * (n + 1) / len(windows))


def _reference_counts(blocks: _Blocks, progress: Progress) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _cls, ref in _all_pairs(blocks, progress):
        values, numbers = np.unique(ref, return_counts=True)
        for v, c in zip(values.tolist(), numbers.tolist()):
            counts[v] = counts.get(v, 0) + c
    if not counts:
        raise InputDataError("The classified raster and the reference share no valid pixel: nothing to compare")
    return counts


def _draw(counts: dict[int, int], sampling: str, points: int, seed: int) -> dict[int, np.ndarray]:
    """Per reference class, the sorted ranks (among that class's pixels, in block order) of the pixels drawn."""
    rng = np.random.default_rng(seed)
    classes = sorted(counts)
    total = sum(counts.values())
    if sampling == "RANDOM":
        return {None: np.sort(rng.choice(total, size=min(points, total), replace=False))}  # type: ignore[dict-item]
    if sampling == "STRATIFIED_RANDOM":
        share = np.array([counts[c] * min(points, total) / total for c in classes])
        wanted = np.floor(share).astype(np.int64)
        for k in np.argsort(-(share - wanted), kind="stable")[: min(points, total) - int(wanted.sum())]:
            wanted[k] += 1
    else:
        wanted = np.array([points // len(classes)] * len(classes), np.int64)
    return {c: np.sort(rng.choice(counts[c], size=min(int(n), counts[c]), replace=False))
            for c, n in zip(classes, wanted)}


def _picked_pairs(blocks: _Blocks, picks: dict, progress: Progress) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    seen: dict = {key: 0 for key in picks}
    for cls, ref in _all_pairs(blocks, progress):
        if None in picks:
            groups = {None: np.arange(len(ref))}
        else:
            order = np.argsort(ref, kind="stable")  # each class's positions stay in block order
            keys, ranked = list(picks), ref[order]
            starts = np.searchsorted(ranked, keys, side="left").tolist()
            ends = np.searchsorted(ranked, keys, side="right").tolist()
            groups = {c: order[lo:hi] for c, lo, hi in zip(keys, starts, ends)}
        chosen = []
        for key, where in groups.items():
            ranks = picks[key]
            lo, hi = np.searchsorted(ranks, [seen[key], seen[key] + len(where)])
            chosen.append(where[ranks[lo:hi] - seen[key]])
            seen[key] += len(where)
        take = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
        yield cls[take], ref[take]


def _pair_counts(cls: np.ndarray, ref: np.ndarray) -> list[tuple[int, int, int]]:
    """How often each (classified, reference) pair occurs: a bincount over the block's value ranges when they are
    small (class rasters), a sort of 64-bit pair codes otherwise."""
    if not len(cls):
        return []
    c0, r0 = int(cls.min()), int(ref.min())
    cspan, rspan = int(cls.max()) - c0 + 1, int(ref.max()) - r0 + 1
    if cspan * rspan <= 1 << 20:
        counts = np.bincount((cls - c0) * rspan + (ref - r0), minlength=cspan * rspan)
        hit = np.nonzero(counts)[0]
        return [(c0 + k // rspan, r0 + k % rspan, n) for k, n in zip(hit.tolist(), counts[hit].tolist())]
    codes = ((cls - c0).astype(np.uint64) << np.uint64(32)) | (ref - r0).astype(np.uint64)
    values, numbers = np.unique(codes, return_counts=True)
    return [(c0 + (v >> 32), r0 + (v & 0xFFFFFFFF), n)
            for v, n in zip(values.tolist(), numbers.tolist())]


def _confusion(pairs: Iterator[tuple[np.ndarray, np.ndarray]], sampling: str) -> PixelAccuracy:
    counts: dict[tuple[int, int], int] = {}
    for cls, ref in pairs:
        for c, r, n in _pair_counts(cls, ref):
            counts[(c, r)] = counts.get((c, r), 0) + n
    if not counts:
        raise InputDataError("The classified raster and the reference share no valid pixel: nothing to compare")
    classes = sorted({c for c, _ in counts} | {r for _, r in counts})
    where = {v: k for k, v in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    for (c, r), n in counts.items():
        matrix[where[c], where[r]] += n
    return PixelAccuracy(classes=classes, matrix=matrix, sampling=sampling)

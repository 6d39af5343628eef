# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects as block jobs: a job is a few consecutive objects, its result their labels in order.

Like the raster tools, Classify Objects runs on the block engine (:mod:`core.engine.blocks`), in-process or on a
Dask cluster (:mod:`core.engine.cluster`).  An :class:`ObjectJob` is ``batch_size`` consecutive objects
(``(key, raster path, WKB in that raster's CRS, note)`` and the name its chip is saved under); its
:class:`ChipTask`:

* ``load``: cuts and normalises each object's chip (:class:`ChipCutter`; the reader stage);
* ``infer``: the chip model's labels for the batch (``decider.classify(model, chips, masks)``: the model file's
  scores decoded by :class:`ModelChips`, or a model's own Python function, ``function.FunctionChips``);
* ``start``/``fold``/``finish``: the job's :class:`ObjectResult` s in input order, objects without a chip
  carrying their note.

Everything here is picklable (paths, the decoder, the chip rules); the open raster is reopened on each worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ...engine import augment
from ...engine.contract import ModelContract
from ...engine.normalize import Normaliser, build_normaliser, resolve_bands
from ...errors import OutputError
from ...model.definition import ModelDefinition
from ...raster.gdal_io import RasterSource
from ...safe_output import same_path
from .decode import ObjectDecoder, scores_2d
from .feature_chips import (
    ChipSpec,
    Rasteriser,
    extract_chip,
    geometry_from_wkb,
    is_polygonal,
    raster_extent_geometry,
    write_chip_png,
)

#: The warning a run gives once when BlackenAroundFeature meets points or lines.
UNMASKED_WARNING = ("BlackenAroundFeature is 1 but some features are points or lines, which have no inside: their "
                    "chips are not masked")


@dataclass
class ObjectResult:
    """The outcome for one object; ``label`` is None when it got none (``note`` says why)."""

    key: Any
    label: str | None
    class_value: int | str | None
    confidence: float | str | None
    note: str | None = None
    probabilities: np.ndarray | None = None


class ObjectItem(NamedTuple):
    """One object to classify: its key, the raster its chip is cut from, its WKB (in that raster's CRS) or None
    with a note saying why it has none, and the file name its chip is saved under (``save_chips``)."""

    key: Any
    raster: str
    wkb: bytes | None
    note: str | None
    chip_name: str


@dataclass(frozen=True)
class ObjectJob:
    """A few consecutive objects: one independent job of the block engine."""

    index: int
    items: tuple[ObjectItem, ...]

    def describe(self) -> str:
        return f"block {self.index} (objects {self.items[0].key} to {self.items[-1].key})"


@dataclass
class ObjectBlock:
    """A finished job: its objects' results in input order, the chips it cut and what to log."""

    results: list[ObjectResult]
    chips: int
    messages: list[tuple[str, str]] = field(default_factory=list)


class _OpenRaster:
    """A raster opened for chips: the model's bands, its normaliser and extent polygon."""

    def __init__(self, path: str, md: ModelDefinition, model_channels: int | None) -> None:
        probe = RasterSource(path, [0])
        try:
            bands = resolve_bands(md, probe.ds.RasterCount, probe.band_names(), probe.name, model_channels)
        finally:
            probe.close()
        self.path = path
        self.source = RasterSource(path, bands)
        self.normaliser: Normaliser = build_normaliser(md, bands, self.source.dtype, self.source.band_range)
        self.extent = raster_extent_geometry(self.source)
        self._ranges: list[tuple[float, float]] | None = None

    def band_ranges(self) -> list[tuple[float, float]]:
        if self._ranges is None:
            self._ranges = [self.source.band_range(b) for b in self.source.bands[:3]]
        return self._ranges

    def close(self) -> None:
        self.source.close()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "chip"


class _Pending(NamedTuple):
    key: Any
    chip: np.ndarray | None  # None: no chip (see note)
    valid: np.ndarray | None  # the chip's validity (None: every pixel valid)
    note: str | None


class ChipCutter:
    """Cuts, saves (``save_chips``) and normalises the chips of a job's objects; keeps the last raster open.

    Picklable: the open raster and the rasteriser are left behind and reopened where the job runs."""

    def __init__(self, md: ModelDefinition, spec: ChipSpec, model_channels: int | None,
                 save_dir: str | None) -> None:
        self.md, self.spec, self.model_channels, self.save_dir = md, spec, model_channels, save_dir
        self._open: _OpenRaster | None = None
        self._rasteriser: Rasteriser | None = None
        self._warned_unmasked = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_open=None, _rasteriser=None)
        return state

    def _raster(self, path: str, messages: list[tuple[str, str]]) -> _OpenRaster:
        current = self._open
        if current is not None and current.path == path:
            return current
        if self.save_dir is not None and same_path(Path(self.save_dir), Path(path).resolve().parent):
            raise OutputError(f"The save_chips folder '{self.save_dir}' holds the input image '{Path(path).name}': a "
                              "chip could replace an input (chips are named like the images). Choose another folder")
        self.close()
        current = self._open = _OpenRaster(path, self.md, self.model_channels)
        messages.append(("debug", f"{Path(path).name}: normalisation {current.normaliser.description}"))
        return current

    def cut(self, item: ObjectItem, messages: list[tuple[str, str]]) -> _Pending:
        """The item's normalised chip and its validity, or its note."""
        geom = geometry_from_wkb(item.wkb)
        if geom is None:
            return _Pending(item.key, None, None, item.note or "it has no geometry")
        current = self._raster(item.raster, messages)
        if self.spec.blacken and not self._warned_unmasked and not is_polygonal(geom):
            self._warned_unmasked = True
            messages.append(("warning", UNMASKED_WARNING))
        if self.spec.blacken and self._rasteriser is None:
            self._rasteriser = Rasteriser(self.spec.width, self.spec.height)
        chip = extract_chip(current.source, geom, self.spec, current.extent, self._rasteriser)
        if chip.data is None:
            return _Pending(item.key, None, None, chip.note)
        if self.save_dir is not None:
            target = Path(self.save_dir) / f"{_safe_name(item.chip_name)}.png"
            ranges = None if current.source.dtype in ("uint8", "uint16") else current.band_ranges()
            write_chip_png(str(target), chip.data, current.source.dtype, chip.geotransform, ranges)
        current.normaliser.apply(chip.data)
        return _Pending(item.key, chip.data, chip.valid, None)

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None


@dataclass
class ModelChips:
    """A model file's chip labels: its ``[batch, classes]`` scores, averaged over the test-time transforms,
    decoded by the run's :class:`ObjectDecoder` (probabilities or logits decided once, on the client)."""

    decoder: ObjectDecoder
    contract: ModelContract  # the layout and the test-time transforms

    @property
    def transforms(self) -> tuple[int, ...]:
        return self.contract.transforms

    def scores(self, backend: Any, batch: np.ndarray) -> np.ndarray:
        return scores_2d(backend.run(self.contract.feeds(batch))[0], batch.shape[0])

    def classify(self, backend: Any, chips: np.ndarray, masks: list[np.ndarray | None]) -> list[tuple]:
        stack = [self.decoder.probabilities(self.scores(backend, augment.forward(chips, k) if k else chips))
                 for k in self.transforms]
        probs = stack[0] if len(stack) == 1 else np.mean(np.stack(stack), axis=0)
        return [(*self.decoder.decide(p), p) for p in probs]


@dataclass
class _Acc:
    job: ObjectJob
    pending: list[tuple[Any, str | None]]  # (key, note) of each item, in order
    messages: list[tuple[str, str]]
    decided: dict[int, tuple] = field(default_factory=dict)


@dataclass
class ChipTask:
    """One Classify Objects job (see the module text and :class:`core.engine.blocks.BlockTask`)."""

    cutter: ChipCutter
    decider: Any  # ModelChips, or a model's own function (function.FunctionChips)
    batch: int

    def units(self, job: ObjectJob) -> int:
        return len(job.items)

    def load(self, job: ObjectJob) -> tuple[Any, Iterator[tuple[Any, list]]]:
        messages: list[tuple[str, str]] = []
        cut = [self.cutter.cut(item, messages) for item in job.items]
        with_chips = [i for i, p in enumerate(cut) if p.chip is not None]

        def batches() -> Iterator[tuple[Any, list]]:
            for s in range(0, len(with_chips), self.batch):
                picked = with_chips[s:s + self.batch]
                yield (np.stack([cut[i].chip for i in picked]), [cut[i].valid for i in picked]), picked

        return ([(p.key, p.note) for p in cut], messages), batches()

    def infer(self, model: Any, data: tuple[np.ndarray, list]) -> list[tuple]:
        chips, masks = data
        return self.decider.classify(model, chips, masks)

    def start(self, job: ObjectJob, context: Any) -> _Acc:
        pending, messages = context
        return _Acc(job, pending, messages)

    def fold(self, acc: _Acc, metas: list, output: list[tuple]) -> None:
        for i, decision in zip(metas, output):
            acc.decided[i] = decision

    def finish(self, acc: _Acc) -> ObjectBlock:
        results = [ObjectResult(key, *acc.decided[i]) if i in acc.decided else ObjectResult(key, None, None, None, note)
                   for i, (key, note) in enumerate(acc.pending)]
        return ObjectBlock(results, len(acc.decided), acc.messages)

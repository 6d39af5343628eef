# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects Using Deep Learning: one label for each feature (or each image).

For every object a chip is cut from the raster (:mod:`.feature_chips`), NoData pixels are
zeroed, the chip is normalised exactly as Classify Pixels does (ExtractBands via
:func:`core.engine.normalize.resolve_bands`, :func:`core.engine.normalize.build_normaliser`), chips are
batched (the batch size and the layout follow the run's :mod:`core.engine.contract`) and the model's
labels are decided by the run's chip model (:mod:`.chip_models`):

* **a model file**: its ``[batch, classes]`` scores are decoded by :class:`.decode.ObjectDecoder`:
  probabilities or logits is decided once per run, on the model's scores for a zero chip and a noise chip,
  with the rule every decoder shares (:mod:`core.engine.scores`); score index ``i`` is
  ``Classes[i]``, the confidence the probability x 100; multi-label models report every class
  reaching ``score_threshold``.  **Test-time augmentation** averages the class probabilities over the
  dihedral transforms of the chip: all 8 in map space for square chips, the 4 flips for others, and identity
  plus a left-right flip when ``ImageSpaceUsed`` is not ``MAP_SPACE`` (as Classify Pixels does).
* **a model's own Python function** (:mod:`.function`): the label and confidence it returns, as it returns them.

The work runs on the block engine like the raster tools' (:mod:`.chip_task`): a job is ``batch_size``
consecutive objects, run in-process (a reader thread cutting chips while the model runs) or on a Dask cluster
(``scheduler``).  Objects that get no chip (no geometry, entirely outside the raster, only NoData)
are returned with no label and a note; nothing is dropped.  Results come back in the order the objects went
in, a few jobs at a time in-process, so the caller can write them as they come and memory stays bounded;
on a cluster every job is submitted at once and the results come back when the cluster has run them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osgeo import gdal, ogr

from ...arguments.specs import resolve_arguments
from ...backends import DeviceRequest
from ...engine.blocks import ResultSink, run_in_process
from ...errors import ModelDefinitionError, OutputError
from ...model.definition import ModelDefinition
from ...progress import NullProgress, Progress, check_canceled
from ...raster.gdal_io import bounded_gdal_cache
from .chip_models import ChipModel, open_model_chips
from .chip_task import ChipCutter, ChipTask, ObjectBlock, ObjectItem, ObjectJob, ObjectResult
from .feature_chips import ChipSpec
from .images import IMAGE_EXTENSIONS, ImageInfo, image_info, list_images

gdal.UseExceptions()
ogr.UseExceptions()

__all__ = ["IMAGE_EXTENSIONS", "ImageInfo", "ObjectClassifier", "ObjectResult", "RunSummary", "classify_objects",
           "image_info", "list_images"]

#: Notes logged one by one before only counting them.
MAX_LOGGED_NOTES = 50
#: Jobs run in-process at a time (the reader thread cuts the next job's chips while the model runs).
JOBS_IN_FLIGHT = 8


@dataclass
class RunSummary:
    objects: int = 0
    chips: int = 0
    per_class: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    batch_size: int = 0

    @property
    def unlabelled(self) -> int:
        return sum(self.notes.values())


class _WithoutPercent:
    """The caller's progress for the engine's inner runs: messages and cancel, but the percentage is the
    classifier's own (objects done of the total)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def set_progress(self, percent: float) -> None:
        pass

    def is_canceled(self) -> bool:
        return self.progress.is_canceled()

    def info(self, message: str) -> None:
        self.progress.info(message)

    def warning(self, message: str) -> None:
        self.progress.warning(message)

    def debug(self, message: str) -> None:
        self.progress.debug(message)


def _check_model_type(md: ModelDefinition) -> None:
    if md.model_type == "ImageCaptioner":
        raise ModelDefinitionError("ModelType 'ImageCaptioner' writes captions with arcgis.learn's own code, which "
                                   "this plugin does not run; only ObjectClassification models are supported")
    if md.model_type != "ObjectClassification":
        other = {"ImageClassification": " (it classifies pixels: use Classify Pixels Using Deep Learning)",
                 "ObjectDetection": " (it detects objects: use Detect Objects Using Deep Learning)",
                 "InstanceDetection": " (it detects objects: use Detect Objects Using Deep Learning)"}
        raise ModelDefinitionError(f"ModelType '{md.model_type}' is not an object classifier"
                                   f"{other.get(md.model_type, '')}; this tool needs ModelType ObjectClassification")


class ObjectClassifier:
    """Loads the model once; classifies objects from one or several rasters (see the module text).

    ``chip_model``: the model when it is not the definition's model file (a model's own function,
    :func:`.function.open_object_classifier`); ``scheduler``/``retries``: where the jobs run."""

    def __init__(self, md: ModelDefinition, arguments: dict[str, Any] | str | None = None,
                 device: DeviceRequest | None = None, progress: Progress | None = None,
                 chip_model: ChipModel | None = None, scheduler: str = "", retries: int = 2) -> None:
        self.progress = progress or NullProgress()
        self.md = md
        _check_model_type(md)
        self.args = arguments if isinstance(arguments, dict) else resolve_arguments(md, "classify_objects", arguments,
                                                                                    self.progress)
        device = (device or DeviceRequest()).take_arguments(self.args)
        self.scheduler, self.retries = (scheduler or "").strip(), int(retries)
        self.spec = ChipSpec(md.image_width, md.image_height,
                             crop_size_fixed=md.crop_size_fixed is None or bool(md.crop_size_fixed),
                             blacken=bool(md.blacken_around_feature), padding=int(self.args.get("padding") or 0))
        save_dir = self._save_dir()
        self.chips = chip_model or open_model_chips(md, self.args, device, self.progress)
        self.backend = self.chips.model
        self.decoder = self.chips.decoder
        self.batch_size = self.chips.batch_size
        self.task = ChipTask(ChipCutter(md, self.spec, self.chips.model_channels, save_dir), self.chips.decider,
                             self.batch_size)
        self.summary = RunSummary(batch_size=self.batch_size)
        self.cluster_seconds = 0.0
        self._said: set[tuple[str, str]] = set()
        self._log_setup()

    # -- set-up ----------------------------------------------------------------------------------
    def _save_dir(self) -> str | None:
        if not self.args.get("save_chips"):
            return None
        folder = Path(str(self.args["save_chips"])).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create the save_chips folder '{folder}': {exc.strerror or exc}") from exc
        return str(folder)

    @property
    def multilabel(self) -> bool:
        return self.decoder is not None and self.decoder.multilabel

    def _log_setup(self) -> None:
        spec = self.spec
        crop = (f"fixed {spec.width}x{spec.height} chips centred on each feature" if spec.crop_size_fixed else
                f"each feature's bounding box (padding {spec.padding}) resized to {spec.width}x{spec.height}")
        self.progress.info(f"Chips: {crop}; BlackenAroundFeature {int(spec.blacken)}")
        transforms = getattr(self.chips.decider, "transforms", [0])
        tta = f"; test-time augmentation x{len(transforms)}" if len(transforms) > 1 else ""
        batch = self.chips.batch
        note = f" ({batch.why}; {batch.requested} requested)" if batch.why else ""
        self.progress.info(f"Batch size {batch.used}{note}; {self.chips.description}{tta}")
        if self.decoder is not None and self.decoder.confidence_scale != 100.0:
            self.progress.info("Confidence is the probability (0-1), as ArcGIS writes it for arcgis.learn "
                               "FeatureClassifier models")
        if self.multilabel:
            self.progress.info(f"Multi-label model: every class with a probability of at least "
                               f"{self.decoder.threshold:g} is reported")

    # -- running ---------------------------------------------------------------------------------
    def classify(self, raster: str, items: Iterable[tuple], total: int | None = None,
                 describe: Callable[[Any], str] | None = None, chip_name: Callable[[Any], str] | None = None,
                 progress: Progress | None = None) -> Iterator[ObjectResult]:
        """Classify objects on one raster; results in input order.

        ``items`` are ``(key, WKB in the raster's CRS)`` or ``(key, WKB, note)``: a None WKB with a note
        is returned unlabelled with that note (the caller found the geometry unusable).
        """
        def expand() -> Iterator[tuple[Any, str, bytes | None, str | None]]:
            for item in items:
                yield item[0], raster, item[1], (item[2] if len(item) > 2 else None)

        return self.classify_items(expand(), total, describe, chip_name, progress)

    def classify_items(self, items: Iterable[tuple[Any, str, bytes | None, str | None]], total: int | None = None,
                       describe: Callable[[Any], str] | None = None, chip_name: Callable[[Any], str] | None = None,
                       progress: Progress | None = None) -> Iterator[ObjectResult]:
        """Classify ``(key, raster path, WKB in that raster's CRS, note)`` objects; results in input order.

        Items are pulled from ``items`` a few jobs at a time in the caller's thread, and every message is
        logged from it too."""
        progress = progress or self.progress
        describe = describe or (lambda key: f"Feature {key}")
        chip_name = chip_name or (lambda key: f"chip_{key}")
        started = time.perf_counter()
        done = 0
        try:
            with bounded_gdal_cache():
                for block in self._blocks(self._jobs(items, chip_name), progress):
                    self._say(block.messages, progress)
                    self.summary.chips += block.chips
                    for result in block.results:
                        self._count(result, describe, progress)
                        done += 1
                        yield result
                    if total:
                        progress.set_progress(min(100.0, 100.0 * done / total))
                    check_canceled(progress)
        finally:
            self.task.cutter.close()
            self.summary.seconds += time.perf_counter() - started

    def _jobs(self, items: Iterable[tuple[Any, str, bytes | None, str | None]],
              chip_name: Callable[[Any], str]) -> Iterator[ObjectJob]:
        group: list[ObjectItem] = []
        index = 0
        for key, raster, wkb, note in items:
            group.append(ObjectItem(key, raster, wkb, note, chip_name(key)))
            if len(group) == self.batch_size:
                yield ObjectJob(index, tuple(group))
                index, group = index + 1, []
        if group:
            yield ObjectJob(index, tuple(group))

    def _blocks(self, jobs: Iterator[ObjectJob], progress: Progress) -> Iterator[ObjectBlock]:
        """The jobs' results in job order: in-process :data:`JOBS_IN_FLIGHT` jobs at a time, or all on Dask."""
        if self.scheduler:
            from ...engine.cluster import run_jobs

            every = list(jobs)
            sink = ResultSink()
            stats = run_jobs(self.task, self.chips.model, every, sink, progress, self.scheduler, self.retries,
                             lambda: self.chips.model_ref(self.scheduler))
            self.cluster_seconds += stats.model_seconds
            for job in every:
                yield sink.take(job.index)
            return
        chunk: list[ObjectJob] = []
        for job in jobs:
            chunk.append(job)
            if len(chunk) == JOBS_IN_FLIGHT:
                yield from self._in_process(chunk, progress)
                chunk = []
        if chunk:
            yield from self._in_process(chunk, progress)

    def _in_process(self, chunk: list[ObjectJob], progress: Progress) -> Iterator[ObjectBlock]:
        sink = ResultSink()
        run_in_process(self.task, self.chips.model, chunk, sink, _WithoutPercent(progress))
        for job in chunk:
            yield sink.take(job.index)

    def _say(self, messages: list[tuple[str, str]], progress: Progress) -> None:
        """A job's messages, each said once per run (every job and worker cuts chips on its own)."""
        for level, text in messages:
            if (level, text) not in self._said:
                self._said.add((level, text))
                getattr(progress, level)(text)

    def _count(self, result: ObjectResult, describe: Callable[[Any], str], progress: Progress) -> None:
        s = self.summary
        s.objects += 1
        if result.label is None:
            reason = result.note or "no label"
            s.notes[reason] += 1
            if s.unlabelled <= MAX_LOGGED_NOTES:
                progress.warning(f"{describe(result.key)}: no label, {reason}")
            elif s.unlabelled == MAX_LOGGED_NOTES + 1:
                progress.warning(f"More objects without a label are only counted (after {MAX_LOGGED_NOTES})")
        else:
            for name in result.label.split(";") if self.multilabel else [result.label]:
                s.per_class[name] += 1

    def summary_lines(self, what: str = "features") -> list[str]:
        s = self.summary
        rate = s.chips / s.seconds if s.seconds > 0 else 0.0
        model_seconds = self.chips.model_seconds + self.cluster_seconds
        lines = [f"Classified {s.objects - s.unlabelled} of {s.objects} {what} in {s.seconds:.1f} s "
                 f"({rate:.1f} chips per second, {model_seconds:.1f} s in the model, batch size {self.batch_size})"]
        if s.per_class:
            order = {c.name: i for i, c in enumerate(self.md.classes)}
            counts = sorted(s.per_class.items(), key=lambda kv: order.get(kv[0], len(order)))
            lines.append("Labels: " + ", ".join(f"{name} {n}" for name, n in counts))
        if s.notes:
            lines.append(f"Without a label: {s.unlabelled} (" + "; ".join(f"{n}: {reason}" for reason, n in
                                                                       s.notes.most_common()) + ")")
        decided = self.decoder.describe() if self.decoder is not None else ""
        if decided:
            lines.append(f"Model scores: {decided}")
        return lines

    def close(self) -> None:
        if getattr(self, "chips", None) is not None:
            self.chips.close()
            self.backend = None

    def __enter__(self) -> ObjectClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def classify_objects(raster: str, features: Iterable[tuple[Any, bytes | None]], md: ModelDefinition,
                     arguments: dict[str, Any] | str | None = None, device: DeviceRequest | None = None,
                     progress: Progress | None = None, total: int | None = None) -> list[ObjectResult]:
    """Classify ``(key, WKB in the raster's CRS)`` features on ``raster``; one result per feature, in order."""
    progress = progress or NullProgress()
    with ObjectClassifier(md, arguments, device, progress) as clf:
        results = list(clf.classify(raster, features, total))
        for line in clf.summary_lines():
            progress.info(line)
    return results

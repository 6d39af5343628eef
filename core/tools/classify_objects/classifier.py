# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects Using Deep Learning: one label for each feature (or each image).

For every object a chip is cut from the raster (:mod:`..chips`), NoData pixels are
zeroed, the chip is normalised exactly as Classify Pixels does (ExtractBands via
:func:`..normalize.resolve_bands`, :func:`..normalize.build_normaliser`), chips are
batched (the batch size follows :func:`..arguments.square_batch_size`) and the model's
``[batch, classes]`` scores are decoded:

* **Scores -> labels** is :class:`..decoders.object_classes.ObjectDecoder`: probabilities
  or logits is decided once per run, on the model's scores for a zero chip and a noise chip,
  with the rule every decoder shares (:mod:`..decoders.scores`); score index ``i`` is
  ``Classes[i]``, the confidence the probability x 100; multi-label models report every class
  reaching ``score_threshold``.
* **Test-time augmentation** averages the class probabilities over the dihedral
  transforms of the chip: all 8 in map space for square chips, the 4 flips for
  others, and identity plus a left-right flip when ``ImageSpaceUsed`` is not
  ``MAP_SPACE`` (as Classify Pixels does).

Objects that get no chip (no geometry, entirely outside the raster, only NoData)
are returned with no label and a note; nothing is dropped.  Results come back in
the order the objects went in, one batch at a time, so the caller can write them as
they come and memory stays bounded by the batch size.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from osgeo import gdal, ogr

from ...arguments.specs import resolve_arguments, square_batch_size
from ...backends import Backend, DeviceRequest, open_backend
from ...engine import augment
from ...engine.normalize import Normaliser, build_normaliser, resolve_bands
from ...errors import InputDataError, ModelDefinitionError, OutputError
from ...model.definition import ModelDefinition
from ...progress import NullProgress, Progress, check_canceled
from ...raster.gdal_io import RasterSource, bounded_gdal_cache, open_raster
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

gdal.UseExceptions()
ogr.UseExceptions()

#: Notes logged one by one before only counting them.
MAX_LOGGED_NOTES = 50
#: Image files IMAGE_FOLDER looks at (any GDAL can read).
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".bmp", ".gif", ".vrt", ".webp")


@dataclass
class ObjectResult:
    """The outcome for one object; ``label`` is None when it got none (``note`` says why)."""

    key: Any
    label: str | None
    class_value: int | str | None
    confidence: float | str | None
    note: str | None = None
    probabilities: np.ndarray | None = None


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


# ------------------------------------------------------------------------------------------------ images
@dataclass
class ImageInfo:
    """An image as one object: its extent polygon (in its CRS, or in pixels when not georeferenced)."""

    path: str
    name: str
    georeferenced: bool = False
    crs_wkt: str = ""
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    extent_wkb: bytes | None = None
    error: str | None = None


class _Pending(NamedTuple):
    """An item waiting for its batch. The chip's validity mask (None: every pixel valid) travels with the chip
    itself, so the model call gets each chip's own mask whatever order the batches are cut in."""

    key: Any
    chip: np.ndarray | None  # None: no chip (see note)
    valid: np.ndarray | None
    note: str | None


def image_info(path: str) -> ImageInfo:
    name = Path(path).name
    try:
        ds = open_raster(path)
    except InputDataError as exc:
        return ImageInfo(str(path), name, error=str(exc))
    try:
        gt = ds.GetGeoTransform(can_return_null=True)
        if gt is not None and (gt[2] != 0 or gt[4] != 0):
            return ImageInfo(str(path), name, error=f"Image '{name}' is rotated (sheared geotransform): warp it north-up")
        georef = gt is not None
        gt = gt or (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
        x0, y0 = gt[0], gt[3]
        x1, y1 = x0 + gt[1] * ds.RasterXSize, y0 + gt[5] * ds.RasterYSize
        bounds = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((bounds[0], bounds[1]), (bounds[2], bounds[1]), (bounds[2], bounds[3]), (bounds[0], bounds[3]),
                     (bounds[0], bounds[1])):
            ring.AddPoint_2D(x, y)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        return ImageInfo(str(path), name, georef, (ds.GetProjection() or "") if georef else "", bounds,
                         bytes(poly.ExportToWkb()))
    finally:
        ds = None


def list_images(folder: str) -> list[str]:
    """The image files directly inside ``folder`` (by extension), sorted by name."""
    p = Path(folder)
    if not p.is_dir():
        raise InputDataError(f"Image folder '{folder}' does not exist or is not a folder")
    files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputDataError(f"Image folder '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


# ------------------------------------------------------------------------------------------------ the classifier
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "chip"


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


class ObjectClassifier:
    """Loads the model once; classifies objects from one or several rasters."""

    def __init__(self, md: ModelDefinition, arguments: dict[str, Any] | str | None = None,
                 device: DeviceRequest | None = None, progress: Progress | None = None,
                 backend: Backend | None = None) -> None:
        self.progress = progress or NullProgress()
        self.md = md
        if md.model_type == "ImageCaptioner":
            raise ModelDefinitionError("ModelType 'ImageCaptioner' writes captions with arcgis.learn's own code, which "
                                       "this plugin does not run; only ObjectClassification models are supported")
        if md.model_type != "ObjectClassification":
            other = {"ImageClassification": " (it classifies pixels: use Classify Pixels Using Deep Learning)",
                     "ObjectDetection": " (it detects objects: use Detect Objects Using Deep Learning)",
                     "InstanceDetection": " (it detects objects: use Detect Objects Using Deep Learning)"}
            raise ModelDefinitionError(f"ModelType '{md.model_type}' is not an object classifier"
                                       f"{other.get(md.model_type, '')}; this tool needs ModelType ObjectClassification")
        self.args = arguments if isinstance(arguments, dict) else resolve_arguments(md, "classify_objects", arguments,
                                                                                    self.progress)
        device = device or DeviceRequest()
        if self.args.get("threads"):
            device.threads = int(self.args["threads"])
        self.spec = ChipSpec(md.image_width, md.image_height,
                             crop_size_fixed=md.crop_size_fixed is None or bool(md.crop_size_fixed),
                             blacken=bool(md.blacken_around_feature), padding=int(self.args.get("padding") or 0))
        self.nhwc = md.model_format == "NHWC"
        self.save_dir: Path | None = None
        if self.args.get("save_chips"):
            self.save_dir = Path(str(self.args["save_chips"])).expanduser()
            try:
                self.save_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"Cannot create the save_chips folder '{self.save_dir}': {exc.strerror or exc}") from exc
        self._own_backend = backend is None
        self.backend = backend or open_backend(md.require_model_file(), md.model_format_kind or "onnx", device,
                                               self.progress, definition=md.raw)
        try:
            self._check_model()
        except BaseException:
            self.close()
            raise
        self.summary = RunSummary(batch_size=self.batch_size)
        self._warned_unmasked = False
        self._rasteriser = Rasteriser(self.spec.width, self.spec.height) if self.spec.blacken else None
        self._log_setup()

    # -- set-up ----------------------------------------------------------------------------------
    def _check_model(self) -> None:
        md, backend = self.md, self.backend
        if len(backend.inputs) != 1:
            raise InputDataError(f"The model has {len(backend.inputs)} inputs; an object classifier takes one image batch")
        declared = backend.inputs[0].shape
        self.model_channels: int | None = None
        if len(declared) == 4:
            self.model_channels = declared[3] if self.nhwc else declared[1]
            want_h, want_w = (declared[1], declared[2]) if self.nhwc else (declared[2], declared[3])
            if want_h is not None and want_w is not None and (want_h, want_w) != (md.image_height, md.image_width):
                raise InputDataError(f"The model takes {want_w}x{want_h} chips but ImageWidth/ImageHeight say "
                                     f"{md.image_width}x{md.image_height}: fix the model definition")
        elif declared and any(d is not None for d in declared):
            raise InputDataError(f"The model takes an input of shape {backend.inputs[0].shape_text()}, not an image "
                                 "batch [batch, bands, height, width]")
        channels = self.model_channels or (len(md.extract_bands) if md.extract_bands else None) or \
            (len(md.extract_band_names) if md.extract_band_names else None)
        if channels is None:
            channels = 3
        requested = int(self.args.get("batch_size") or 1)
        batch = square_batch_size(requested)
        self.batch_note = "" if batch == requested else f" ({requested} requested; not a perfect square, lowered as " \
                                                        "ArcGIS does)"
        if backend.fixed_batch is not None and backend.fixed_batch != batch:
            self.batch_note = f" (the model's batch dimension is fixed at {backend.fixed_batch}; {requested} requested)"
            batch = backend.fixed_batch
        self.batch_size = batch
        n = backend.fixed_batch or 1
        shape = (n, channels, md.image_height, md.image_width)
        scores = scores_2d(self._model_call(np.zeros(shape, np.float32)), n)
        self.decoder = ObjectDecoder(md, scores.shape[1], float(self.args.get("score_threshold", 0.5)), self.progress)
        # Logits or probabilities is the model's property: judge it once, on zeros and on seeded noise of
        # magnitudes 0.1..100 (as Classify Pixels does), never per batch.
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-1.0, 2.0, shape)).astype(np.float32)
        self.decoder.calibrate([scores, scores_2d(self._model_call(noise), n)])

    def _log_setup(self) -> None:
        spec = self.spec
        crop = (f"fixed {spec.width}x{spec.height} chips centred on each feature" if spec.crop_size_fixed else
                f"each feature's bounding box (padding {spec.padding}) resized to {spec.width}x{spec.height}")
        self.progress.info(f"Chips: {crop}; BlackenAroundFeature {int(spec.blacken)}")
        tta = ""
        if self.args.get("test_time_augmentation"):
            tta = f"; test-time augmentation x{len(self._transforms())}"
        self.progress.info(f"Batch size {self.batch_size}{self.batch_note}; {self.backend.describe()}{tta}")
        if self.decoder.confidence_scale != 100.0:
            self.progress.info("Confidence is the probability (0-1), as ArcGIS writes it for arcgis.learn "
                               "FeatureClassifier models")
        if self.decoder.multilabel:
            self.progress.info(f"Multi-label model: every class with a probability of at least "
                               f"{self.decoder.threshold:g} is reported")

    def _transforms(self) -> list[int]:
        if not self.args.get("test_time_augmentation"):
            return [0]
        return augment.transform_ids(self.spec.width == self.spec.height, self.md.image_space_used.upper() == "MAP_SPACE")

    def _model_call(self, batch: np.ndarray, masks: list[np.ndarray] | None = None) -> np.ndarray:
        """The model's first output; a backend that reads the chips' validity (a custom function's
        ``rasters_mask``: ``run_with_masks``) gets ``masks`` too."""
        feed = np.ascontiguousarray(batch.transpose(0, 2, 3, 1) if self.nhwc else batch)
        with_masks = getattr(self.backend, "run_with_masks", None)
        if with_masks is not None and masks is not None:
            return with_masks(feed, masks)[0]
        return self.backend.run(feed)[0]

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

        Chips are cut by one read-ahead thread while the model runs on the previous batch; the items are
        pulled from ``items`` in the caller's thread, and every message is logged from it too.
        """
        progress = progress or self.progress
        describe = describe or (lambda key: f"Feature {key}")
        chip_name = chip_name or (lambda key: f"chip_{key}")
        started = time.perf_counter()
        transforms = self._transforms()
        state: dict[str, Any] = {"raster": None}
        pending: list[_Pending] = []
        done = 0
        max_pending = max(self.batch_size * 4, 256)

        def extract(group: list[tuple[Any, str, bytes | None, str | None]]) -> tuple[list, list[tuple[str, str]]]:
            """Worker thread: chips (normalised) or notes for a group of items, and messages to log."""
            out: list[_Pending] = []
            messages: list[tuple[str, str]] = []
            for key, raster, wkb, given_note in group:
                geom = geometry_from_wkb(wkb)
                if geom is None:
                    out.append(_Pending(key, None, None, given_note or "it has no geometry"))
                    continue
                current: _OpenRaster | None = state["raster"]
                if current is None or current.path != raster:
                    if self.save_dir is not None and same_path(self.save_dir, Path(raster).resolve().parent):
                        raise OutputError(
                            f"The save_chips folder '{self.save_dir}' holds the input image '{Path(raster).name}': a "
                            "chip could replace an input (chips are named like the images). Choose another folder")
                    if current is not None:
                        current.close()
                        state["raster"] = None
                    current = state["raster"] = _OpenRaster(raster, self.md, self.model_channels)
                    messages.append(("debug", f"{Path(raster).name}: normalisation {current.normaliser.description}"))
                if self.spec.blacken and not self._warned_unmasked and not is_polygonal(geom):
                    self._warned_unmasked = True
                    messages.append(("warning", "BlackenAroundFeature is 1 but some features are points or lines, "
                                                "which have no inside: their chips are not masked"))
                chip = extract_chip(current.source, geom, self.spec, current.extent, self._rasteriser)
                if chip.data is None:
                    out.append(_Pending(key, None, None, chip.note))
                    continue
                if self.save_dir is not None:
                    target = self.save_dir / f"{_safe_name(chip_name(key))}.png"
                    ranges = None if current.source.dtype in ("uint8", "uint16") else current.band_ranges()
                    write_chip_png(str(target), chip.data, current.source.dtype, chip.geotransform, ranges)
                current.normaliser.apply(chip.data)
                out.append(_Pending(key, chip.data, chip.valid, None))
            return out, messages

        def flush(all_items: bool) -> Iterator[ObjectResult]:
            """Run the model on the first batch of pending chips (or on all) and hand back results in order."""
            nonlocal done
            check_canceled(progress)
            cut, n_chips = len(pending), 0
            for i, item in enumerate(pending):
                if item.chip is not None:
                    n_chips += 1
                    if not all_items and n_chips == self.batch_size:
                        cut = i + 1
                        break
            head = pending[:cut]
            del pending[:cut]
            with_chips = [item for item in head if item.chip is not None]
            chips = [item.chip for item in with_chips]
            valid = [item.valid for item in with_chips]
            probs = self._infer(np.stack(chips), transforms, valid) if chips else None
            k = 0
            for key, chip, _, note in head:
                if chip is None:
                    result = ObjectResult(key, None, None, None, note)
                else:
                    assert probs is not None
                    label, value, conf, note = self.decoder.decide(probs[k])
                    result = ObjectResult(key, label, value, conf, note, probs[k])
                    k += 1
                self._count(result, describe, progress)
                done += 1
                yield result
            self.summary.chips += len(chips)
            if total:
                progress.set_progress(min(100.0, 100.0 * done / total))

        def take(job: Future) -> Iterator[ObjectResult]:
            extracted, messages = job.result()
            for level, text in messages:
                getattr(progress, level)(text)
            pending.extend(extracted)
            while sum(1 for item in pending if item.chip is not None) >= self.batch_size:
                yield from flush(False)
            if len(pending) >= max_pending:
                yield from flush(True)

        def groups() -> Iterator[list]:
            group: list = []
            for item in items:
                group.append(item)
                if len(group) >= self.batch_size:
                    yield group
                    group = []
            if group:
                yield group

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dltools-chips")
        try:
            with bounded_gdal_cache():
                job: Future | None = None
                for group in groups():
                    following = executor.submit(extract, group)
                    if job is not None:
                        yield from take(job)
                    job = following
                if job is not None:
                    yield from take(job)
                while pending:
                    yield from flush(True)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            if state["raster"] is not None:
                state["raster"].close()
                state["raster"] = None
            self.summary.seconds += time.perf_counter() - started

    def _infer(self, batch: np.ndarray, transforms: list[int], masks: list | None = None) -> np.ndarray:
        stack = []
        for k in transforms:
            arr = augment.forward(batch, k) if k else batch
            raw = scores_2d(self._model_call(arr, masks if not k else None), batch.shape[0])
            stack.append(self.decoder.probabilities(raw))
        return stack[0] if len(stack) == 1 else np.mean(np.stack(stack), axis=0)

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
            for name in result.label.split(";") if self.decoder.multilabel else [result.label]:
                s.per_class[name] += 1

    def summary_lines(self, what: str = "features") -> list[str]:
        s = self.summary
        rate = s.chips / s.seconds if s.seconds > 0 else 0.0
        lines = [f"Classified {s.objects - s.unlabelled} of {s.objects} {what} in {s.seconds:.1f} s "
                 f"({rate:.1f} chips per second, {self.backend.model_seconds:.1f} s in the model, batch size "
                 f"{self.batch_size})"]
        if s.per_class:
            order = {c.name: i for i, c in enumerate(self.md.classes)}
            counts = sorted(s.per_class.items(), key=lambda kv: order.get(kv[0], len(order)))
            lines.append("Labels: " + ", ".join(f"{name} {n}" for name, n in counts))
        if s.notes:
            lines.append(f"Without a label: {s.unlabelled} (" + "; ".join(f"{n}: {reason}" for reason, n in
                                                                       s.notes.most_common()) + ")")
        decided = self.decoder.describe()
        if decided:
            lines.append(f"Model scores: {decided}")
        return lines

    def close(self) -> None:
        if self._own_backend and getattr(self, "backend", None) is not None:
            self.backend.close()
            self.backend = None  # type: ignore[assignment]

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

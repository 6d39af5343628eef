# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects Using Deep Learning (``dltools:classifyobjects``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameters,
    QgsProcessingParameterString,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.errors import CancelledError
from ..core.model_definition import load_model_definition
from ..core.pipelines.classify_objects import (
    ObjectClassifier,
    ObjectResult,
    image_info,
    list_images,
)
from ..core.pipelines.custom_objects import open_object_classifier
from ..core.progress import SubProgress
from ..core.raster_io import build_mosaic, mosaic_items, release_mosaic
from .base import DLToolsAlgorithm, FeedbackProgress, run_engine
from .outputs import AtomicSink, refuse_same_files

ARGUMENTS_HELP = (
    "Model arguments as 'name value' pairs separated by ';', e.g. 'batch_size 16;test_time_augmentation True'. "
    "Known: batch_size (chips per model call; not a perfect square -> the largest square below), "
    "test_time_augmentation (average over flips and rotations of each chip), score_threshold (multi-label models: "
    "every class at or above it is reported), padding (pixels added around each feature's bounding box when the "
    "model crops to the feature, CropSizeFixed 0), save_chips (a folder: every chip is saved there as a PNG to check "
    "what the model sees), threads (CPU threads, 0 = all).")
MODES = ["Process as mosaicked image", "Process all raster items separately"]
IMAGE_FIELD = "Image"
#: invalid geometries are repaired here (make valid), never skipped or refused by the context's setting
SKIP_VALIDITY = QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks


def _unique_names(existing: list[str], wanted: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
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


class ClassifyObjectsAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    FEATURES = "FEATURES"
    CLASS_LABEL_FIELD = "CLASS_LABEL_FIELD"
    PROCESSING_MODE = "PROCESSING_MODE"
    IMAGE_FOLDER = "IMAGE_FOLDER"
    OUTPUT = "OUTPUT"

    def name(self) -> str:
        return "classifyobjects"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Classify Objects Using Deep Learning")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Gives every feature (or every image) one label from a trained image classifier, e.g. building footprints "
            "over post-fire imagery -> Damaged / Undamaged. The output holds every input feature with all its "
            "attributes and geometry, plus the label (ClassLabel, or the name you choose), ClassValue (the class's "
            "Value in the model definition) and Confidence (the probability, 0-100). If the input already has a field "
            "of one of these names (compared ignoring case), the new field gets the first free suffix _1, _2, ...; the "
            "log says so.\n\n"
            "Chips are cut from the raster at its own cell size, around each feature transformed to the raster's CRS:\n"
            "- CropSizeFixed 1 (or absent): a chip of exactly the model's ImageWidth x ImageHeight pixels centred on "
            "the centre of the feature's bounding box (the chip's centre is within half a pixel of it; ties go right/"
            "down). Pixels are not resampled.\n"
            "- CropSizeFixed 0: the smallest block of whole pixels around the feature's bounding box, plus 'padding' "
            "pixels, widened on its shorter side (with real raster context) to the model's aspect ratio, then resized "
            "to ImageWidth x ImageHeight: area averaging when shrinking, bilinear when enlarging.\n"
            "- BlackenAroundFeature 1: pixels whose centre lies outside the polygon are set to 0. Points and lines have "
            "no inside, so their chips are not masked.\n"
            "Pixels outside the raster and NoData pixels are 0. Features entirely outside the raster, on NoData only, "
            "with no geometry or with a geometry that cannot be transformed stay in the output with an empty (NULL) "
            "label, and the log says why. Invalid geometries are repaired (make valid) for cutting the chip; the "
            "output keeps the original geometry.\n\n"
            "Without input features every image is one object: the input raster, or each image in the image folder. "
            "Georeferenced images get their extent as a polygon; otherwise the output is a table with the image "
            "path.\n\n"
            "Model scores: values in [0, 1] whose rows sum to 1 are taken as probabilities, otherwise a softmax is "
            "applied (a sigmoid for multi-label models). Multi-label models report every class at or above "
            "score_threshold, joined with ';'.")

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster"), optional=True),
                       "The image the chips are cut from; its bands are picked by the model's ExtractBands. Leave it "
                       "empty when an image folder is given. A VRT mosaic can be processed item by item "
                       "(Processing mode).")
        self.add_param(QgsProcessingParameterFeatureSource(self.FEATURES, self.tr("Input features"),
                                                           [QgsProcessing.TypeVectorAnyGeometry], optional=True),
                       "Points, lines or polygons, in any CRS: one chip and one label per feature. Without features "
                       "every image is one object.")
        self.add_model_parameters(ARGUMENTS_HELP)
        self.add_param(QgsProcessingParameterString(self.CLASS_LABEL_FIELD, self.tr("Class label field"),
                                                    defaultValue="ClassLabel"),
                       "Name of the output field holding the label (the class Name).")
        self.add_param(QgsProcessingParameterEnum(self.PROCESSING_MODE, self.tr("Processing mode"), options=MODES,
                                                  defaultValue=0),
                       "Matters for a VRT mosaic or an image folder with input features. 'Mosaicked': the images form "
                       "one raster (the folder's images must share CRS and bands) and every feature gets one label. "
                       "'Items separately': every feature is classified on each image it touches, one output row per "
                       "feature and image, with the image in an 'Image' field. A single raster is always one image.",
                       advanced=True)
        self.add_param(QgsProcessingParameterFile(self.IMAGE_FOLDER, self.tr("Image folder"),
                                                  behavior=QgsProcessingParameterFile.Folder, optional=True),
                       "Instead of an input raster: a folder of images (.tif, .png, .jpg, ...; not its sub-folders). "
                       "Without input features each image is classified as one object.", advanced=True)
        self.add_device_parameters()
        self.add_custom_code_parameter()
        self.add_param(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Classified objects"),
                                                         QgsProcessing.TypeVectorAnyGeometry),
                       "The input features (or one row per image) with the label, class value and confidence.")

    # ------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext, feedback) -> dict:  # noqa: N802, ANN001
        progress = FeedbackProgress(feedback)
        label_field = (self.parameterAsString(parameters, self.CLASS_LABEL_FIELD, context) or "").strip()
        if not label_field:
            raise QgsProcessingException(self.tr("The class label field name is empty: give a field name"))
        if label_field.lower() in ("classvalue", "confidence"):
            raise QgsProcessingException(
                self.tr(f"The class label field cannot be called '{label_field}': the tool writes that field itself"))
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context) if parameters.get(self.INPUT) else None
        folder = (self.parameterAsFile(parameters, self.IMAGE_FOLDER, context) or "").strip()
        if layer is not None and folder:
            raise QgsProcessingException(self.tr("Give either an input raster or an image folder, not both"))
        if layer is None and not folder:
            if parameters.get(self.INPUT):
                raise QgsProcessingException(self.tr(f"The input raster '{parameters.get(self.INPUT)}' cannot be loaded"))
            raise QgsProcessingException(self.tr("No imagery: give an input raster or an image folder"))
        raster_path = self.gdal_source(layer, "input") if layer is not None else None
        images = run_engine(list_images, folder) if folder else None
        separately = self.parameterAsEnum(parameters, self.PROCESSING_MODE, context) == 1

        self._refuse_output_over_inputs(parameters, context, raster_path)

        md = run_engine(load_model_definition, self.model_text(parameters, context))
        for w in md.warnings:
            progress.warning(w)
        arguments = self.parameterAsString(parameters, self.ARGUMENTS, context)
        device = self.device_request(parameters, context)
        classifier = run_engine(open_object_classifier, md, arguments, device, progress,
                                self.custom_code_allowed(parameters, context))
        try:
            has_features = parameters.get(self.FEATURES) not in (None, "")
            if has_features:
                source = self.parameterAsSource(parameters, self.FEATURES, context)
                if source is None:
                    raise QgsProcessingException(self.invalidSourceError(parameters, self.FEATURES))
                if separately:
                    items = images if images is not None else mosaic_items(raster_path)
                    if len(items) > 1:
                        dest = self._features_per_item(parameters, context, classifier, source, items, label_field,
                                                       progress, feedback)
                        return {self.OUTPUT: dest}
                    progress.info("The imagery is a single raster: it is processed as one image")
                if images is not None:
                    mosaic = run_engine(build_mosaic, images)
                    try:
                        dest = self._features_on_raster(parameters, context, classifier, source, mosaic, label_field,
                                                        progress, feedback)
                    finally:
                        release_mosaic(mosaic)
                else:
                    dest = self._features_on_raster(parameters, context, classifier, source, raster_path, label_field,
                                                    progress, feedback, layer.crs())
                return {self.OUTPUT: dest}
            if images is None:
                images = mosaic_items(raster_path) if separately else [raster_path]
            dest = self._images_as_objects(parameters, context, classifier, images, label_field, progress, feedback,
                                           layer.crs() if layer is not None and len(images) == 1 else None)
            return {self.OUTPUT: dest}
        finally:
            classifier.close()

    def _refuse_output_over_inputs(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: ANN001
                                   raster_path: str | None) -> None:
        """OUTPUT must not be the FEATURES file (writing it would wipe the input layer) nor the raster or model."""
        output = QgsProcessingParameters.parameterAsOutputLayer(self.parameterDefinition(self.OUTPUT),
                                                                parameters.get(self.OUTPUT), context)
        inputs: dict[str, Any] = {self.INPUT: raster_path}
        if parameters.get(self.FEATURES) not in (None, ""):
            layer = self.parameterAsVectorLayer(parameters, self.FEATURES, context)
            inputs[self.FEATURES] = layer.source() if layer is not None else None
        model = parameters.get(self.MODEL)
        if isinstance(model, str) and not model.strip().startswith("{"):
            inputs[self.MODEL] = model
        refuse_same_files({self.OUTPUT: output}, inputs)

    # ------------------------------------------------------------------------------------------------
    def _new_fields(self, existing: QgsFields, label_field: str, multilabel: bool, with_image: bool,
                    progress: FeedbackProgress) -> tuple[QgsFields, list[str]]:
        wanted = ([IMAGE_FIELD] if with_image else []) + [label_field, "ClassValue", "Confidence"]
        names, renamed = _unique_names([f.name() for f in existing], wanted)
        for old, new in renamed:
            progress.warning(f"The input already has a field '{old}': the new field is called '{new}'")
        fields = QgsFields(existing)
        i = 0
        if with_image:
            fields.append(QgsField(names[0], QVariant.String, len=254))
            i = 1
        fields.append(QgsField(names[i], QVariant.String, len=254))
        if multilabel:
            fields.append(QgsField(names[i + 1], QVariant.String, len=254))
            fields.append(QgsField(names[i + 2], QVariant.String, len=254))
        else:
            fields.append(QgsField(names[i + 1], QVariant.Int))
            fields.append(QgsField(names[i + 2], QVariant.Double))
        return fields, names

    def _add(self, sink: AtomicSink, feature: QgsFeature, parameters: dict[str, Any]) -> None:
        if not sink.add(feature, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(self.writeFeatureError(sink.sink, parameters, self.OUTPUT))

    @staticmethod
    def _result_values(result: ObjectResult) -> list:
        return [result.label, result.class_value, result.confidence]

    def _transform_to(self, source, crs: QgsCoordinateReferenceSystem, context: QgsProcessingContext,  # noqa: ANN001
                      progress: FeedbackProgress, raster_name: str) -> QgsCoordinateTransform | None:
        src_crs = source.sourceCrs()
        if not crs.isValid():
            progress.warning(f"Raster '{raster_name}' has no CRS: feature coordinates are used as they are")
            return None
        if not src_crs.isValid():
            progress.warning(f"Layer '{source.sourceName()}' has no CRS: its features are taken to be in the raster's "
                             f"CRS ({crs.authid() or crs.description()})")
            return None
        if src_crs == crs:
            return None
        progress.info(f"Features are transformed from {src_crs.authid() or src_crs.description()} to the raster's "
                      f"{crs.authid() or crs.description()}")
        return QgsCoordinateTransform(src_crs, crs, context.transformContext())

    def _chip_geometry(self, feature: QgsFeature, xform: QgsCoordinateTransform | None,
                       counters: dict[str, int]) -> tuple[bytes | None, str | None]:
        """The feature's geometry as WKB in the raster CRS, repaired; or (None, why)."""
        geom = feature.geometry()
        if geom is None or geom.isNull() or geom.isEmpty():
            return None, "it has no geometry"
        if not geom.isGeosValid():
            fixed = geom.makeValid()
            if fixed is None or fixed.isNull() or fixed.isEmpty():
                return None, "its geometry is invalid and could not be repaired"
            geom = fixed
            counters["repaired"] += 1
        else:
            geom = QgsGeometry(geom)
        if xform is not None:
            try:
                geom.transform(xform)
            except QgsCsException as exc:
                return None, f"its geometry cannot be transformed to the raster's CRS ({exc})"
        return bytes(geom.asWkb()), None

    def _features_on_raster(self, parameters, context, classifier: ObjectClassifier, source, raster: str,  # noqa: ANN001
                            label_field: str, progress: FeedbackProgress, feedback,  # noqa: ANN001
                            raster_crs: QgsCoordinateReferenceSystem | None = None) -> str:
        total = source.featureCount()
        if total == 0:
            raise QgsProcessingException(f"Layer '{source.sourceName()}' has no features: there is nothing to classify")
        if raster_crs is None:
            info = run_engine(image_info, raster)
            raster_crs = QgsCoordinateReferenceSystem.fromWkt(info.crs_wkt) if info.crs_wkt else \
                QgsCoordinateReferenceSystem()
        xform = self._transform_to(source, raster_crs, context, progress, os.path.basename(raster))
        fields, _ = self._new_fields(source.fields(), label_field, classifier.decoder.multilabel, False, progress)
        with AtomicSink(self, parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()) as sink:
            pending: dict[int, QgsFeature] = {}
            counters = {"repaired": 0}

            def items() -> Iterator[tuple[int, bytes | None, str | None]]:
                for feature in source.getFeatures(QgsFeatureRequest(), SKIP_VALIDITY):
                    if feedback.isCanceled():
                        break
                    pending[feature.id()] = feature
                    wkb, note = self._chip_geometry(feature, xform, counters)
                    yield feature.id(), wkb, note

            count = 0
            for result in engine_results(classifier.classify(raster, items(), total if total > 0 else None)):
                feature = pending.pop(result.key)
                out = QgsFeature(fields)
                out.setGeometry(feature.geometry())
                out.setAttributes(list(feature.attributes()) + self._result_values(result))
                self._add(sink, out, parameters)
                count += 1
            if feedback.isCanceled():
                raise QgsProcessingException("The run was cancelled.")
            if count == 0:
                raise QgsProcessingException(f"Layer '{source.sourceName()}' has no features: there is nothing to classify")
            if counters["repaired"]:
                progress.info(f"{counters['repaired']} invalid geometries were repaired (make valid) to cut their chips; "
                              "the output keeps the original geometries")
            for line in classifier.summary_lines("features"):
                progress.info(line)
        return sink.dest

    def _features_per_item(self, parameters, context, classifier: ObjectClassifier, source, items: list[str],  # noqa: ANN001
                           label_field: str, progress: FeedbackProgress, feedback) -> str:  # noqa: ANN001
        total = source.featureCount()
        if total == 0:
            raise QgsProcessingException(f"Layer '{source.sourceName()}' has no features: there is nothing to classify")
        # a feature may be written once per image: a field called 'fid' (a GeoPackage's unique key) becomes input_fid
        input_fields = QgsFields()
        taken = [f.name() for f in source.fields()]
        for f in source.fields():
            field = QgsField(f)
            if f.name().lower() == "fid":
                new_name = _unique_names(taken, ["input_fid"])[0][0]
                taken.append(new_name)
                field.setName(new_name)
                progress.info(f"A feature can be written once per image, so the input field '{f.name()}' is written "
                              f"as '{new_name}'")
            input_fields.append(field)
        fields, _ = self._new_fields(input_fields, label_field, classifier.decoder.multilabel, True, progress)
        with AtomicSink(self, parameters, self.OUTPUT, context, fields, source.wkbType(), source.sourceCrs()) as sink:
            matched: set[int] = set()
            all_ids: set[int] = set()
            counters = {"repaired": 0}
            for n, path in enumerate(items):
                info = run_engine(image_info, path)
                if info.error:
                    progress.warning(f"Image '{info.name}' is skipped: {info.error}")
                    continue
                crs = QgsCoordinateReferenceSystem.fromWkt(info.crs_wkt) if info.crs_wkt else QgsCoordinateReferenceSystem()
                xform = self._transform_to(source, crs, context, progress, info.name)
                rect = QgsGeometry.fromRect(QgsRectangle(*info.bounds))
                pending: dict[int, QgsFeature] = {}
                stem = os.path.splitext(info.name)[0]

                def items_on(xform=xform, rect=rect, pending=pending) -> Iterator[tuple[int, bytes | None]]:  # noqa: ANN001
                    for feature in source.getFeatures(QgsFeatureRequest(), SKIP_VALIDITY):
                        if feedback.isCanceled():
                            break
                        all_ids.add(feature.id())
                        wkb, _note = self._chip_geometry(feature, xform, counters)
                        if wkb is None:
                            continue
                        geom = QgsGeometry()
                        geom.fromWkb(wkb)
                        if not geom.boundingBox().intersects(rect.boundingBox()) or not geom.intersects(rect):
                            continue
                        pending[feature.id()] = feature
                        matched.add(feature.id())
                        yield feature.id(), wkb

                sub = SubProgress(progress, 100.0 * n / len(items), 100.0 * (n + 1) / len(items))
                results = classifier.classify(info.path, items_on(), None, describe=lambda k, s=info.name: f"Feature {k} "
                                              f"on '{s}'", chip_name=lambda k, s=stem: f"{s}_{k}", progress=sub)
                for result in engine_results(results):
                    feature = pending.pop(result.key)
                    out = QgsFeature(fields)
                    out.setGeometry(feature.geometry())
                    out.setAttributes(list(feature.attributes()) + [info.path] + self._result_values(result))
                    self._add(sink, out, parameters)
                sub.set_progress(100.0)
                if feedback.isCanceled():
                    raise QgsProcessingException("The run was cancelled.")
            unmatched = sorted(all_ids - matched)
            if unmatched:
                request = QgsFeatureRequest().setFilterFids(unmatched)
                for i, feature in enumerate(source.getFeatures(request, SKIP_VALIDITY)):
                    if i < 50:
                        progress.warning(f"Feature {feature.id()}: no label, it does not touch any image (or has no usable "
                                         "geometry)")
                    out = QgsFeature(fields)
                    out.setGeometry(feature.geometry())
                    out.setAttributes(list(feature.attributes()) + [None, None, None, None])
                    self._add(sink, out, parameters)
                progress.warning(f"{len(unmatched)} features touch no image and have no label")
            if counters["repaired"]:
                progress.info(f"Invalid geometries were repaired (make valid) {counters['repaired']} times to cut chips; "
                              "the output keeps the original geometries")
            for line in classifier.summary_lines("feature-image pairs"):
                progress.info(line)
        return sink.dest

    def _images_as_objects(self, parameters, context, classifier: ObjectClassifier, images: list[str],  # noqa: ANN001
                           label_field: str, progress: FeedbackProgress, feedback,  # noqa: ANN001
                           layer_crs: QgsCoordinateReferenceSystem | None) -> str:
        infos = [run_engine(image_info, p) for p in images]
        georef = [i for i in infos if i.georeferenced and not i.error]
        if georef:
            out_crs = layer_crs if layer_crs is not None and layer_crs.isValid() else (
                QgsCoordinateReferenceSystem.fromWkt(georef[0].crs_wkt) if georef[0].crs_wkt else
                QgsCoordinateReferenceSystem())
            wkb_type = QgsWkbTypes.Polygon
        else:
            out_crs, wkb_type = QgsCoordinateReferenceSystem(), QgsWkbTypes.NoGeometry
            progress.info("The images are not georeferenced: the output is a table of image paths and labels")
        fields, _ = self._new_fields(QgsFields(), label_field, classifier.decoder.multilabel, True, progress)
        with AtomicSink(self, parameters, self.OUTPUT, context, fields, wkb_type, out_crs) as sink:
            stems = [os.path.splitext(i.name)[0] for i in infos]
            entries = [(k, info.path, None if info.error else info.extent_wkb, info.error) for k, info in enumerate(infos)]
            results = classifier.classify_items(entries, len(entries), describe=lambda k: f"Image '{infos[k].name}'",
                                                chip_name=lambda k: stems[k])
            for result in engine_results(results):
                info = infos[result.key]
                out = QgsFeature(fields)
                if wkb_type != QgsWkbTypes.NoGeometry and info.georeferenced and not info.error:
                    geom = QgsGeometry.fromRect(QgsRectangle(*info.bounds))
                    crs = QgsCoordinateReferenceSystem.fromWkt(info.crs_wkt) if info.crs_wkt else out_crs
                    if crs.isValid() and out_crs.isValid() and crs != out_crs:
                        try:
                            geom.transform(QgsCoordinateTransform(crs, out_crs, context.transformContext()))
                        except QgsCsException:
                            progress.warning(f"Image '{info.name}': its extent cannot be transformed to the output CRS")
                            geom = QgsGeometry()
                    out.setGeometry(geom)
                out.setAttributes([info.path] + self._result_values(result))
                self._add(sink, out, parameters)
            for line in classifier.summary_lines("images"):
                progress.info(line)
        return sink.dest


_END = object()


def _reraise(exc: BaseException) -> None:
    raise exc


def engine_results(results: Iterator[ObjectResult]) -> Iterator[ObjectResult]:
    """Results one at a time, with engine errors raised while iterating turned into QgsProcessingException."""
    it = iter(results)
    while True:
        try:
            item = next(it, _END)
        except CancelledError as exc:  # the features written so far stay in the output: say only that it stopped
            raise QgsProcessingException(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - run_engine translates the engine's errors, re-raises the rest
            run_engine(_reraise, exc)
            raise
        if item is _END:
            return
        yield item

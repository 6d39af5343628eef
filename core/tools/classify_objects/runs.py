# SPDX-License-Identifier: GPL-2.0-or-later
"""Which Classify Objects run the inputs call for, in one place for every caller (the QGIS tool, scripts):
features on one raster, features on an image folder's mosaic, features on each item separately, or every image
as one object. A mosaic built for an image folder lives exactly as long as its run (hence a context manager:
the rows are read lazily, while the caller writes them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ...progress import Progress
from ...raster.gdal_io import build_mosaic, mosaic_items, release_mosaic
from .classifier import ObjectClassifier
from .pipeline import FeatureInput, FeaturesOnRaster, FeaturesPerItem, ImagesAsObjects

ObjectRun = FeaturesOnRaster | FeaturesPerItem | ImagesAsObjects


@contextmanager
def object_run(classifier: ObjectClassifier, label_field: str, progress: Progress, *,
               features: FeatureInput | None = None, raster: str | None = None,
               raster_crs: tuple[str, str] | None = None, images: list[str] | None = None, separately: bool = False,
               layer_crs_wkt: str | None = None) -> Iterator[ObjectRun]:
    """The run for these inputs: ``images`` (an image folder's files) stand in for ``raster``; ``separately``
    (processing mode "items separately") classifies each feature on every item it touches; without ``features``
    every image is one object, in ``layer_crs_wkt`` (the input layer's CRS) when there is one image."""
    if features is not None:
        if separately:
            items = images if images is not None else mosaic_items(raster)
            if len(items) > 1:
                yield FeaturesPerItem(classifier, features, items, label_field, progress)
                return
            progress.info("The imagery is a single raster: it is processed as one image")
        if images is None:
            yield FeaturesOnRaster(classifier, features, raster, label_field, progress, raster_crs)
            return
        mosaic = build_mosaic(images)
        try:
            yield FeaturesOnRaster(classifier, features, mosaic, label_field, progress)
        finally:
            release_mosaic(mosaic)
        return
    if images is None:
        images = mosaic_items(raster) if separately else [raster]
    yield ImagesAsObjects(classifier, images, label_field, progress, layer_crs_wkt if len(images) == 1 else None)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Classify Objects' rows into its OUTPUT sink: each input feature with its own geometry and attributes plus the
label fields, or one row per image (its extent, or no geometry when no image is georeferenced). The sink writes
under a temporary name and is renamed on success (outputs.AtomicSink)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingException,
    QgsRasterLayer,
    QgsWkbTypes,
)

from ..core.tools.classify_objects.pipeline import ObjectRow
from ..core.tools.classify_objects.runs import ObjectRun
from .feature_inputs import qgs_fields
from .outputs import AtomicSink
from .running import engine_results


def output_shape(run: ObjectRun, source: Any, layer: QgsRasterLayer | None) -> tuple[QgsFields, Any, Any]:
    """(fields, geometry type, CRS) of the output: the features' own with the new fields, or, for images as
    objects, polygons in the input layer's CRS (one image) or the first georeferenced image's, else a table."""
    if source is not None:
        return qgs_fields(source.fields(), run.fields, getattr(run, "input_names", None)), source.wkbType(), \
            source.sourceCrs()
    if run.crs_from_layer:
        crs = layer.crs()
    else:
        crs = QgsCoordinateReferenceSystem.fromWkt(run.crs_wkt) if run.crs_wkt else QgsCoordinateReferenceSystem()
    wkb_type = QgsWkbTypes.Polygon if run.has_geometry else QgsWkbTypes.NoGeometry
    return qgs_fields(QgsFields(), run.fields), wkb_type, crs


def write_objects(alg: Any, parameters: dict[str, Any], context: QgsProcessingContext, run: ObjectRun,
                  source: Any, layer: QgsRasterLayer | None, layer_name: str = "") -> str:
    """The run's rows into OUTPUT (a new GeoPackage's layer called ``layer_name``); returns the destination."""
    fields, wkb_type, crs = output_shape(run, source, layer)
    with AtomicSink(alg, parameters, alg.OUTPUT, context, fields, wkb_type, crs, layer_name=layer_name) as sink:
        for row in engine_results(run.rows()):
            if not sink.add(_feature(row, fields), QgsFeatureSink.FastInsert):
                raise QgsProcessingException(alg.writeFeatureError(sink.sink, parameters, alg.OUTPUT))
    return sink.dest


def _feature(row: ObjectRow, fields: QgsFields) -> QgsFeature:
    out = QgsFeature(fields)
    if row.payload is not None:
        out.setGeometry(row.payload.geometry())
        out.setAttributes(list(row.payload.attributes()) + row.values)
        return out
    if row.geometry_wkb:
        geom = QgsGeometry()
        geom.fromWkb(row.geometry_wkb)
        out.setGeometry(geom)
    out.setAttributes(row.values)
    return out

# SPDX-License-Identifier: GPL-2.0-or-later
"""QGIS layers as the engine's plain inputs, and the engine's field specs as QGIS fields.

``core/`` never sees a QGIS object: a feature source becomes (key, WKB in the layer's CRS, payload)
items plus the layer's name, CRS WKT and field names; the payload (the QgsFeature) comes back with
each result so the tool writes the feature's own attributes and geometry.
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsProcessingFeatureSource,
)
from qgis.PyQt.QtCore import QVariant

from ..core.tools.classify_objects.pipeline import FieldSpec

#: invalid geometries are repaired here (make valid), never skipped or refused by the context's setting
SKIP_VALIDITY = QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks
_FIELD_TYPES = {"text": (QVariant.String, 254), "int": (QVariant.Int, 0), "real": (QVariant.Double, 0)}


def qgs_fields(existing: QgsFields, added: list[FieldSpec], names: list[str] | None = None) -> QgsFields:
    """``existing`` (renamed to ``names`` where given) followed by the engine's new fields."""
    fields = QgsFields()
    for i, f in enumerate(existing):
        copy = QgsField(f)
        if names is not None:
            copy.setName(names[i])
        fields.append(copy)
    for spec in added:
        kind, length = _FIELD_TYPES[spec.kind]
        fields.append(QgsField(spec.name, kind, len=length) if length else QgsField(spec.name, kind))
    return fields


class LayerFeatures:
    """A QGIS feature source as the engine's plain input: WKB in the layer's CRS, the QgsFeature as payload."""

    def __init__(self, source, feedback, context) -> None:  # noqa: ANN001
        self.source, self.feedback, self.context = source, feedback, context
        crs = source.sourceCrs()
        self.name = source.sourceName()
        self.crs_wkt = crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else ""
        self.crs_name = crs.authid() or crs.description()
        self.field_names = [f.name() for f in source.fields()]

    def count(self) -> int:
        return self.source.featureCount()

    def operation(self, target_crs_wkt: str) -> str:
        """The PROJ pipeline the project's transform context picks (its datum transformations), "" for PROJ's own."""
        target = QgsCoordinateReferenceSystem.fromWkt(target_crs_wkt)
        return QgsCoordinateTransform(self.source.sourceCrs(), target, self.context.transformContext()) \
            .coordinateOperation()

    def features(self, keys=None):  # noqa: ANN001, ANN201 - (key, WKB, QgsFeature) items
        request = QgsFeatureRequest() if keys is None else QgsFeatureRequest().setFilterFids(list(keys))
        for feature in self.source.getFeatures(request, SKIP_VALIDITY):
            if self.feedback.isCanceled():
                break
            geom = feature.geometry()
            yield feature.id(), (None if geom is None or geom.isNull() else bytes(geom.asWkb())), feature


def crs_of(layer) -> tuple[str, str]:  # noqa: ANN001
    crs = layer.crs()
    return (crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else "",
            crs.authid() or crs.description())

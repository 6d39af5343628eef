# SPDX-License-Identifier: GPL-2.0-or-later
"""Tables without geometry (the accuracy tools' outputs) written through an :class:`~.outputs.AtomicSink`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .outputs import AtomicSink

_TYPES = {"text": QVariant.String, "int": QVariant.LongLong, "real": QVariant.Double}


def write_table(alg, parameters: Mapping[str, Any], name: str, context, columns: Sequence[tuple[str, str]],  # noqa: ANN001
                rows: Sequence[Sequence[Any]]) -> str:
    """Write ``rows`` (values in ``columns`` order; ``columns`` are (field name, 'text'|'int'|'real')) to the
    sink ``name``; returns its destination."""
    fields = QgsFields()
    for column, kind in columns:
        fields.append(QgsField(column, _TYPES[kind], len=254 if kind == "text" else 0))
    with AtomicSink(alg, parameters, name, context, fields, QgsWkbTypes.NoGeometry,
                    QgsCoordinateReferenceSystem()) as sink:
        for row in rows:
            feature = QgsFeature(fields)
            feature.setAttributes([None if v is None else v for v in row])
            if not sink.add(feature, QgsFeatureSink.FastInsert):
                raise QgsProcessingException(alg.writeFeatureError(sink.sink, parameters, name))
    return sink.dest

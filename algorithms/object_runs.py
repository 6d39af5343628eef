# SPDX-License-Identifier: GPL-2.0-or-later
"""Where a Classify Objects run happens: in a child process (the default, as for the raster tools) or here.

In a child, a model that crashes, loops or takes all the memory ends the run with a message and QGIS lives on
(``isolation``). The features cross as a file of keys and geometries and the rows come back as one
(``core/tools/classify_objects/separate.py``); each row is joined here, by key, to its input feature so the
output keeps that feature's own attributes and geometry, as the in-process run writes them. Runs on a Dask
scheduler and the in-process setting build the same run here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from qgis.core import QgsProcessingException

from ..core.errors import CancelledError
from ..core.tools.classify_objects.pipeline import ObjectRow
from ..core.tools.classify_objects.separate import (
    ClassifierOpening,
    ObjectRunPlan,
    RunOutline,
    read_rows,
    write_feature_file,
)
from .feature_inputs import LayerFeatures
from .isolation import run_tool, runs_in_child
from .running import FeedbackProgress, engine_errors, run_engine

#: Rows joined to their input features per request (one feature request per this many rows).
JOIN_BATCH = 500
#: ``write(run)`` opens the output for the run's outline, writes its rows and returns the destination.
Writer = Callable[[Any], str]


class ChildRows:
    """A run done by the child, read as the tool reads a run: its outline's attributes and ``rows()``, each row
    joined to its input feature."""

    def __init__(self, outline: RunOutline, rows_file: str, features: LayerFeatures | None,
                 progress: FeedbackProgress) -> None:
        self.fields, self.input_names = outline.fields, outline.input_names
        self.has_geometry, self.crs_from_layer, self.crs_wkt = outline.has_geometry, outline.crs_from_layer, \
            outline.crs_wkt
        self.rows_file, self.features, self.progress = rows_file, features, progress

    def rows(self) -> Iterator[ObjectRow]:
        return joined_rows(read_rows(self.rows_file), self.features, self.progress)


def run_objects(plan: ObjectRunPlan, opening: ClassifierOpening, features: LayerFeatures | None,
                progress: FeedbackProgress, write: Writer) -> str:
    """Run ``plan`` with the classifier ``opening`` describes and hand the run to ``write``."""
    if runs_in_child() and not opening.scheduler:
        with tempfile.TemporaryDirectory(prefix="dltools-objects-") as folder:
            feature_file = None
            if features is not None:
                feature_file = run_engine(write_feature_file, os.path.join(folder, "features.bin"), features,
                                          run_engine(plan.crs_targets), progress)
            rows_file = os.path.join(folder, "rows.jsonl")
            outline = run_tool("classify_objects", progress, plan, opening, feature_file, rows_file, progress)
            return write(ChildRows(outline, rows_file, features, progress))
    classifier = run_engine(opening.open, progress)
    try:
        with engine_errors(), plan.run(classifier, features, progress) as run:
            return write(run)
    finally:
        classifier.close()


def joined_rows(rows: Iterator[ObjectRow], features: LayerFeatures | None,
                progress: FeedbackProgress) -> Iterator[ObjectRow]:
    """Rows whose payload is a feature key, with the feature itself as payload (read again, a batch at a time)."""
    chunk: list[ObjectRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= JOIN_BATCH:
            yield from _join(chunk, features, progress)
            chunk = []
    yield from _join(chunk, features, progress)


def _join(chunk: list[ObjectRow], features: LayerFeatures | None, progress: FeedbackProgress) -> Iterator[ObjectRow]:
    keys = sorted({r.payload for r in chunk if r.payload is not None})
    found = {key: feature for key, _wkb, feature in features.features(keys)} if keys and features else {}
    for row in chunk:
        if row.payload is None:
            yield row
            continue
        feature = found.get(row.payload)
        if feature is None:
            if progress.is_canceled():
                run_engine(_raise, CancelledError("The run was cancelled."))
            raise QgsProcessingException(f"Input feature {row.payload} could not be read again to write its "
                                         "label: was the layer changed during the run?")
        yield ObjectRow(feature, row.values, row.geometry_wkb)


def _raise(exc: BaseException) -> None:
    raise exc

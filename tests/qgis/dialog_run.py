# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs an algorithm the way the Processing dialog does: a ``QgsProcessingAlgRunnerTask`` on QGIS's task manager,
then the results handler the dialog calls (``handleAlgorithmResults``), which loads every layer the run registered
to load on completion into the project and reports any it could not load as "not correctly generated"."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingUtils,
    QgsProject,
)


class _Feedback(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []
        self.infos: list[str] = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 - QGIS API
        self.errors.append(error)
        super().reportError(error, fatalError)

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.infos.append(info)
        super().pushInfo(info)


@dataclass
class DialogRun:
    ok: bool
    results: dict
    handled: bool  # what handleAlgorithmResults returned: False = the dialog shows the run in red
    errors: list[str]
    infos: list[str]
    load_entries: dict = field(default_factory=dict)  # load-on-completion id -> layer name QGIS gave it
    unresolved: list[str] = field(default_factory=list)  # entries that resolved to no layer
    layers: list = field(default_factory=list)  # the layers the handler added to the project
    cancel_to_end: float | None = None  # seconds from the Cancel click to the end of the run
    said_at_cancel: list[str] = field(default_factory=list)  # log lines present right after the click


def to_project(value: str) -> QgsProcessingOutputLayerDefinition:
    """An output destination with "Open output file after running algorithm" ticked, as the dialog passes it."""
    return QgsProcessingOutputLayerDefinition(value, QgsProject.instance())


def run_like_the_dialog(alg_id: str, parameters: dict, timeout: float = 120.0,
                        cancel_at: float | None = None) -> DialogRun:
    """``cancel_at``: click Cancel (from this, the dialog's thread) once the run reports that much progress."""
    from processing.gui.Postprocessing import handleAlgorithmResults

    project = QgsProject.instance()
    before = set(project.mapLayers())
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = _Feedback()
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    done: dict = {}
    task = QgsProcessingAlgRunnerTask(alg, parameters, context, feedback)
    task.executed.connect(lambda ok, res: done.update(ok=ok, results=res, end=time.time()))
    QgsApplication.taskManager().addTask(task)
    end = time.time() + timeout
    clicked, said = None, []
    while not done and time.time() < end:
        QgsApplication.processEvents()
        if cancel_at is not None and clicked is None and feedback.progress() >= cancel_at:
            clicked = time.time()
            feedback.cancel()
            said = list(feedback.infos)
        time.sleep(0.005)
    assert done, f"{alg_id} did not finish in {timeout} s"
    entries = context.layersToLoadOnCompletion()
    unresolved = [key for key, details in entries.items()
                  if QgsProcessingUtils.mapLayerFromString(key, context, typeHint=details.layerTypeHint) is None]
    handled = handleAlgorithmResults(alg, context, feedback, True, parameters) if done["ok"] else False
    added = [layer for lid, layer in project.mapLayers().items() if lid not in before]
    return DialogRun(ok=done["ok"], results=dict(done["results"] or {}), handled=handled, errors=feedback.errors,
                     infos=feedback.infos, load_entries={k: d.name for k, d in entries.items()},
                     unresolved=unresolved, layers=added,
                     cancel_to_end=None if clicked is None else done["end"] - clicked, said_at_cancel=said)

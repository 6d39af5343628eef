# SPDX-License-Identifier: GPL-2.0-or-later
"""The algorithms' side of the engine interface: ``QgsProcessingFeedback`` as the engine's progress,
and the engine's errors as ``QgsProcessingException`` messages written for the user."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import Qt

from ..core.errors import CancelledError, DependencyMissingError, DLToolsError, memory_advice

#: The tab of QGIS's Log Messages panel (View > Panels > Log Messages) where the plugin's warnings also go.
LOG_TAG = "Deep Learning Tools"


def log_message(message: str, level: Qgis.MessageLevel = Qgis.Warning) -> None:
    """Into the Log Messages panel under the plugin's own tab, as QGIS plugins do: the dialog's log is gone once
    the dialog is closed (and a script's run has none), the panel keeps it. Safe from a worker thread."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


#: What the log and the progress text say the moment Cancel is clicked.
CANCELLING = "Cancelling… the run stops after the model call under way; no output is kept"


def acknowledge_cancel(feedback: QgsProcessingFeedback) -> None:
    """Say "Cancelling…" the moment the user cancels, not when the engine next looks (a model call can take
    seconds): the canceled signal is emitted in the thread that cancels, the dialog's, so the line shows at once."""
    if getattr(feedback, "_dltools_acknowledges", False):
        return  # one line per run, however many adapters wrap the same feedback
    feedback._dltools_acknowledges = True
    # direct: connected from the worker thread, a queued slot would wait for that thread's (absent) event loop
    feedback.canceled.connect(functools.partial(_cancelling, feedback), Qt.DirectConnection)


#: The Processing dialog's feedback: it writes a progress text into the dialog's log itself.
_DIALOG_FEEDBACK = "QgsProcessingAlgorithmDialogFeedback"


def _cancelling(feedback: QgsProcessingFeedback) -> None:
    feedback.setProgressText(CANCELLING)
    if feedback.metaObject().className() != _DIALOG_FEEDBACK:  # once in the dialog's log, not twice
        feedback.pushInfo(CANCELLING)


class FeedbackProgress:
    """Adapts ``QgsProcessingFeedback`` to the engine's :class:`core.progress.Progress`; warnings also go to the
    Log Messages panel."""

    def __init__(self, feedback: QgsProcessingFeedback | None) -> None:
        self.feedback = feedback or QgsProcessingFeedback()
        acknowledge_cancel(self.feedback)

    def set_progress(self, percent: float) -> None:
        self.feedback.setProgress(percent)

    def is_canceled(self) -> bool:
        return self.feedback.isCanceled()

    def info(self, message: str) -> None:
        self.feedback.pushInfo(message)

    def warning(self, message: str) -> None:
        self.feedback.reportError(message, fatalError=False)
        log_message(message)

    def debug(self, message: str) -> None:
        self.feedback.pushDebugInfo(message)

    def set_text(self, text: str) -> None:
        self.feedback.setProgressText(text)


def run_engine(func, *args, **kwargs):  # noqa: ANN001, ANN201 - any engine call
    """Call into ``core`` and turn its errors into ``QgsProcessingException``."""
    try:
        return func(*args, **kwargs)
    except CancelledError as exc:
        raise QgsProcessingException(f"{exc} No output was kept.") from exc
    except DependencyMissingError as exc:
        raise QgsProcessingException(str(exc)) from exc
    except DLToolsError as exc:
        raise QgsProcessingException(str(exc)) from exc
    except OSError as exc:  # a file GDAL or Python could not read or write (disk full, permissions, ...)
        where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
        raise QgsProcessingException(f"Cannot read or write a file{where}: {exc.strerror or exc}") from exc
    except MemoryError as exc:  # the advice names the part that ran out (core.errors.memory_advice)
        raise QgsProcessingException(memory_advice(exc)) from exc


_END = object()


def _reraise(exc: BaseException) -> None:
    raise exc


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """``run_engine`` for a block: the engine's errors raised inside it (a context manager's entry, say) become
    QgsProcessingException; any other exception passes unchanged."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - run_engine translates the engine's errors, re-raises the rest
        run_engine(_reraise, exc)
        raise


def engine_results(results: Iterator[Any]) -> Iterator[Any]:
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

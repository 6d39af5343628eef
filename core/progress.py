# SPDX-License-Identifier: GPL-2.0-or-later
"""The small progress/cancellation interface between the engine and its caller.

The algorithms adapt ``QgsProcessingFeedback`` to it; notebooks and tests use
:class:`NullProgress` or :class:`PrintProgress`.  The engine calls
``check_canceled`` between batches, never inside a model call, so a cancel is
honoured within one batch.
"""

from __future__ import annotations

from typing import Protocol

from .errors import CancelledError


class Progress(Protocol):
    """What the engine needs from whoever runs it."""

    def set_progress(self, percent: float) -> None: ...

    def is_canceled(self) -> bool: ...

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def debug(self, message: str) -> None: ...


class NullProgress:
    """Silent progress: never cancelled, says nothing."""

    def set_progress(self, percent: float) -> None:
        pass

    def is_canceled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def debug(self, message: str) -> None:
        pass


class PrintProgress(NullProgress):
    """Prints info and warnings: handy in a notebook or a script."""

    def info(self, message: str) -> None:
        print(message, flush=True)

    def warning(self, message: str) -> None:
        print(f"WARNING: {message}", flush=True)


class SubProgress:
    """Maps 0-100 of a sub-task onto ``[start, end]`` of a parent's range."""

    def __init__(self, parent: Progress, start: float, end: float) -> None:
        self._parent = parent
        self._start = start
        self._span = end - start

    def set_progress(self, percent: float) -> None:
        self._parent.set_progress(self._start + self._span * max(0.0, min(100.0, percent)) / 100.0)

    def is_canceled(self) -> bool:
        return self._parent.is_canceled()

    def info(self, message: str) -> None:
        self._parent.info(message)

    def warning(self, message: str) -> None:
        self._parent.warning(message)

    def debug(self, message: str) -> None:
        self._parent.debug(message)

    def set_text(self, text: str) -> None:
        show_stage(self._parent, text)


def show_stage(progress: Progress, text: str) -> None:
    """Say what is going on over the progress bar ("Dask: 3 of 8 blocks done"), where the caller can show it (the
    QGIS dialog's progress text); an optional method, so a plain :class:`Progress` needs none."""
    set_text = getattr(progress, "set_text", None)
    if callable(set_text):
        set_text(text)


def check_canceled(progress: Progress) -> None:
    """Raise :class:`CancelledError` if the user asked to stop."""
    if progress.is_canceled():
        raise CancelledError("The run was cancelled.")

# SPDX-License-Identifier: GPL-2.0-or-later
"""A QgsProcessingFeedback that keeps what an algorithm logged, and can cancel the run at a given progress."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self, cancel_at: float | None = None, cancel_on_progress: bool = False) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.errors: list[str] = []
        self.progress_seen: list[float] = []
        self.cancel_at = 0.0 if cancel_on_progress else cancel_at
        self.progressChanged.connect(self._progress)

    def _progress(self, value: float) -> None:
        self.progress_seen.append(value)
        if self.cancel_at is not None and value >= self.cancel_at:
            self.cancel()

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.infos.append(info)
        super().pushInfo(info)

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 - QGIS API
        self.errors.append(error)
        super().reportError(error, fatalError)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Registers the Processing provider; works with and without ``iface`` (qgis_process, headless PyQGIS)."""

from __future__ import annotations

from qgis.core import QgsApplication


class DeepLearningToolsPlugin:
    def __init__(self, iface) -> None:  # noqa: ANN001 - QgisInterface or None
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Called by qgis_process (hasProcessingProvider=yes) and by initGui."""
        if self.provider is not None:
            return
        from .algorithms.provider import DeepLearningToolsProvider

        self.provider = DeepLearningToolsProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

# SPDX-License-Identifier: GPL-2.0-or-later
"""QGIS entry point: only ``classFactory``, importing the plugin lazily (no torch/onnxruntime here)."""


def classFactory(iface):  # noqa: N802 - name fixed by QGIS
    from .plugin import DeepLearningToolsPlugin

    return DeepLearningToolsPlugin(iface)

# SPDX-License-Identifier: GPL-2.0-or-later
"""QGIS entry point: only ``classFactory``, importing the plugin lazily (no torch/onnxruntime here).

It first puts the plugin's private library folder on ``sys.path`` (before any lazy import of onnxruntime, torch
or dask), so what Install Inference Libraries installed is found by every tool, in QGIS and in qgis_process."""


def classFactory(iface):  # noqa: N802 - name fixed by QGIS
    # the plugin's own libraries (Install Inference Libraries) go on sys.path before anything imports them
    from .algorithms.libraries import activate_private_libraries

    activate_private_libraries()
    from .plugin import DeepLearningToolsPlugin

    return DeepLearningToolsPlugin(iface)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Which dialog a parameter widget is built for: the tool's own dialog gets the plugin's widgets (model summary,
argument table, scheduler hint); batch mode and the Graphical Modeler keep QGIS's standard widgets, which take
model inputs, expressions and batch rows as before."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingParameterDefinition
from qgis.gui import QgsGui, QgsProcessingGui


def standard_wrapper(param: QgsProcessingParameterDefinition, dialog: Any) -> Any:
    """QGIS's own widget for ``param`` in batch and modeler dialogs (what it would use without ours)."""
    kind = dialog.__class__.__name__
    registry = QgsGui.processingGuiRegistry()
    if kind == "ModelerParametersDialog":
        wrapper = registry.createModelerParameterWidget(dialog.model, dialog.childId, param, dialog.context)
    else:
        wrapper = registry.createParameterWidgetWrapper(
            param, QgsProcessingGui.Batch if kind == "BatchAlgorithmDialog" else QgsProcessingGui.Standard)
    wrapper.setDialog(dialog)
    return wrapper


def is_standard(dialog: Any) -> bool:
    """True for the tool's own dialog (not a batch row, not a modeler child)."""
    return dialog.__class__.__name__ not in ("ModelerParametersDialog", "BatchAlgorithmDialog")

# SPDX-License-Identifier: GPL-2.0-or-later
"""The Dask scheduler field of the tools' dialogs: a text box with a short hint under it (what to type, with
examples) that turns into the reason when the value would be refused, so nobody has to find the tooltip.

Batch mode and the Graphical Modeler keep QGIS's own text box (the value is the same string)."""

from __future__ import annotations

import html
from typing import Any

from processing.gui.wrappers import WidgetWrapper
from qgis.core import QgsProcessingParameterDefinition
from qgis.PyQt.QtWidgets import QLabel, QLineEdit, QVBoxLayout, QWidget

from ..core.engine.cluster import parse_scheduler
from ..core.errors import DLToolsError
from .dialog_kind import is_standard, standard_wrapper

#: What the hint under the field says while the value is fine.
SCHEDULER_HINT = ("Empty: in this process. <b>local</b> or <b>local:2</b>: Dask workers on this computer. "
                  "<b>tcp://host:8786</b>: a running Dask scheduler.")


def scheduler_hint(text: str) -> tuple[str, bool]:
    """(the hint's rich text, whether the value is acceptable) for what the field holds."""
    try:
        parse_scheduler(text)
    except DLToolsError as exc:
        return f'<span style="color:#a00000">{html.escape(str(exc))}</span>', False
    return f"<small>{SCHEDULER_HINT}</small>", True


class SchedulerWidget(QWidget):
    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setObjectName("dltools_scheduler")
        self.edit.setPlaceholderText("empty: in this process")
        self.hint = QLabel()
        self.hint.setObjectName("dltools_scheduler_hint")
        self.hint.setWordWrap(True)
        layout.addWidget(self.edit)
        layout.addWidget(self.hint)
        self.edit.textChanged.connect(self.check)
        self.check()

    def check(self, *args: Any) -> bool:
        text, ok = scheduler_hint(self.edit.text())
        self.hint.setText(text)
        return ok


class SchedulerWrapper(WidgetWrapper):
    def createWidget(self, **kwargs: Any) -> QWidget:  # noqa: N802 - QGIS API
        widget = SchedulerWidget()
        widget.edit.textChanged.connect(lambda *_: self.widgetValueHasChanged.emit(self))
        return widget

    def setValue(self, value: Any) -> None:  # noqa: N802 - QGIS API
        self.widget.edit.setText("" if value is None else str(value))

    def value(self) -> str:
        return self.widget.edit.text().strip()


class SchedulerWidgetFactory:
    """Our SCHEDULER field in the tool's dialog; QGIS's standard one in batch mode and the modeler."""

    def __new__(cls, param: QgsProcessingParameterDefinition, dialog: Any, row: int = 0, col: int = 0,
                **kwargs: Any) -> Any:
        if not is_standard(dialog):
            return standard_wrapper(param, dialog)
        return SchedulerWrapper(param, dialog, row, col, **kwargs)

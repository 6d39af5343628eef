# SPDX-License-Identifier: GPL-2.0-or-later
"""The ARGUMENTS field of the tools' dialogs: an editable table filled from the model when MODEL changes (name,
value, default, description, what the run will use), a line with the selected argument in full and one saying
what is wrong. The value stays the ArcGIS string form (``padding 64;batch_size 4``): what ``processing.run`` and
``qgis_process`` take. Only the tool's own dialog gets the table; batch mode and the modeler keep QGIS's text box.
Imported only when a dialog is built (the parameter names the factory by its dotted path)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from processing.gui.wrappers import WidgetWrapper
from qgis.core import QgsProcessingParameterDefinition
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..core.arguments.specs import parse_arguments_text
from ..core.arguments.table import ArgumentRow, argument_rows, arguments_text, effective_arguments
from ..core.engine.contract import declared_fixed_batch
from .dialog_kind import is_standard, standard_wrapper
from .model_summary import table_definition

_INVALID = QColor(255, 200, 200)
_UNKNOWN = QColor(255, 240, 190)


#: How many rows of the arguments table the dialog shows without scrolling (about).
ROWS_SHOWN = 9


class ArgumentsWidget(QWidget):
    """The arguments table (name, value, default, description) and a line saying what is wrong, if anything."""

    COLUMNS = ("Name", "Value", "Default", "Description", "The run uses")

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("dltools_arguments_table")
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        # names and defaults fit their contents; values and what the run uses get a set width (a long path or a
        # reason is in full in the line under the table); the description takes the rest
        header = self.table.horizontalHeader()
        for col, mode in enumerate((QHeaderView.ResizeToContents, QHeaderView.Interactive,
                                    QHeaderView.ResizeToContents, QHeaderView.Stretch, QHeaderView.Interactive)):
            header.setSectionResizeMode(col, mode)
        self.table.setColumnWidth(1, 70)
        self.table.setColumnWidth(4, 100)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # every column in sight, never scrolled away
        self.table.verticalHeader().setVisible(False)
        # room for about nine one-line rows; a description too long for its cell is in full in its tooltip and in
        # the line under the table (wrapped cells made rows so tall that two filled the table)
        self.table.setMinimumHeight(ROWS_SHOWN * 32 + 30)  # rows and the header
        self.table.setWordWrap(False)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.currentCellChanged.connect(lambda row, *_: self._show_detail(row))
        self.detail = QLabel()  # the selected row in full: name, description, default, what the run uses
        self.detail.setObjectName("dltools_arguments_detail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setObjectName("dltools_arguments_note")
        self.note.setWordWrap(True)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addWidget(self.note)
        self.rows: list[ArgumentRow] = []
        self.source_note = ""
        #: the values a run will use for the table's values (name -> (value, why)); None: not known
        self.effective: Callable[[dict[str, str]], dict[str, tuple[str, str]]] | None = None

    def fill(self, rows: list[ArgumentRow], values: dict[str, str], note: str = "") -> None:
        """Rows for the model, with ``values`` (name -> text) over their defaults; unknown names kept, flagged."""
        self.table.blockSignals(True)
        self.rows = rows
        self.source_note = note
        known = {r.name.lower() for r in rows}
        extra = [(k, v) for k, v in values.items() if k.lower() not in known]
        lowered = {k.lower(): v for k, v in values.items()}
        self.table.setRowCount(len(rows) + len(extra))
        for i, row in enumerate(rows):
            self._set_row(i, row.name, lowered.get(row.name.lower(), row.default), row.default, row.description,
                          row.fixed)
        for j, (name, value) in enumerate(extra):
            self._set_row(len(rows) + j, name, value, "", "Not an argument of this model: it would be ignored",
                          False)
        self.table.blockSignals(False)
        self.validate()
        if self.table.rowCount():
            self.table.setCurrentCell(0, 1)
        self._show_detail(self.table.currentRow())

    def _set_row(self, i: int, name: str, value: str, default: str, description: str, fixed: bool) -> None:
        for col, text in enumerate((name, value, default, description, "")):
            item = QTableWidgetItem(text)
            if col != 1 or fixed:
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            if col == 3:
                item.setToolTip(description)
            self.table.setItem(i, col, item)

    def values(self) -> dict[str, str]:
        out = {}
        for i in range(self.table.rowCount()):
            name, value = self.table.item(i, 0), self.table.item(i, 1)
            if name is not None and value is not None:
                out[name.text()] = value.text()
        return out

    def text(self) -> str:
        return arguments_text(self.values(), self.rows)

    def validate(self) -> list[str]:
        """Colour invalid values red (and unknown names yellow); returns the problems."""
        problems = []
        by_name = {r.name: r for r in self.rows}
        self.table.blockSignals(True)
        for i in range(self.table.rowCount()):
            name, item = self.table.item(i, 0).text(), self.table.item(i, 1)
            row = by_name.get(name)
            problem = row.check(item.text()) if row is not None else ""
            colour = _INVALID if problem else (_UNKNOWN if row is None else None)
            for col in range(self.table.columnCount()):
                cell = self.table.item(i, col)
                cell.setBackground(colour if colour is not None else QColor(0, 0, 0, 0))
            item.setToolTip(problem or ("" if row is not None else "Not an argument of this model"))
            if problem:
                problems.append(problem)
            elif row is None and item.text().strip():
                problems.append(f"'{name}' is not an argument of this model and would be ignored")
        self._show_effective()
        self._show_detail(self.table.currentRow())
        self.table.blockSignals(False)
        notes = [f'<span style="color:#a00000">{html.escape(p)}</span>' for p in problems]
        if self.source_note:
            notes.append(f"<i>Arguments {html.escape(self.source_note)}.</i>")
        self.note.setText("<br>".join(notes))
        return problems

    def _show_detail(self, row: int) -> None:
        """The line under the table: the selected argument's whole description, its default and what the run
        uses, however narrow the dialog."""
        cells = [self.table.item(row, c) for c in range(self.table.columnCount())] if 0 <= row < \
            self.table.rowCount() else []
        if not cells or any(c is None for c in cells):
            self.detail.setText("<i>Select an argument to read about it.</i>" if self.table.rowCount() else "")
            return
        name, value, default, description, uses = (c.text() for c in cells)
        parts = [f"<b>{html.escape(name)}</b>: {html.escape(description)}"]
        if default:
            parts.append(f"Default: {html.escape(default)}.")
        if uses and uses != value:
            parts.append(f"The run uses {html.escape(uses)}.")
        self.detail.setText(" ".join(parts))

    def _show_effective(self) -> None:
        """The "run uses" column: each value as the run's contract will take it (batch_size after the square rule
        and the model's fixed batch dimension), and why where it differs from the value typed."""
        used = self.effective(self.values()) if self.effective is not None else {}
        for i in range(self.table.rowCount()):
            value, why = used.get(self.table.item(i, 0).text(), ("", ""))
            cell = self.table.item(i, 4)
            cell.setText(f"{value} ({why})" if why else value)
            cell.setToolTip(why)


class ArgumentsWrapper(WidgetWrapper):
    def createWidget(self, tool: str = "", **kwargs: Any) -> QWidget:  # noqa: N802 - QGIS API
        self.tool = tool
        self.model_text = ""
        self.pending = parse_arguments_text(self.parameterDefinition().defaultValue() or "")
        widget = ArgumentsWidget()
        widget.table.itemChanged.connect(self._edited)
        return widget

    def _edited(self, *args: Any) -> None:
        self.widget.validate()
        self.widgetValueHasChanged.emit(self)

    def postInitialize(self, wrappers: list) -> None:  # noqa: N802 - QGIS API
        for w in wrappers:
            if w.parameterDefinition().name() == "MODEL":
                w.widgetValueHasChanged.connect(lambda mw: self.model_changed(mw.parameterValue()))
                self.model_changed(w.parameterValue())

    def model_changed(self, text: Any) -> None:
        """Refill the table for the model ``text`` names, keeping the values the user typed."""
        values = self.widget.values() if self.widget.rows else dict(self.pending)
        self.model_text = str(text or "")
        rows = []
        md, note = table_definition(self.model_text)
        self.widget.effective = None
        if md is not None:
            tool = self.tool or {"ObjectClassification": "classify_objects", "ObjectDetection": "detect_objects",
                                 "InstanceDetection": "detect_objects"}.get(md.model_type, "classify_pixels")
            try:
                rows, note = argument_rows(md, tool)
                self.widget.effective = _effective(md, tool)
            except ValueError:
                rows, note = [], "for this tool are not known"
        # values equal to the old defaults follow the new model's defaults
        old_defaults = {r.name: r.default for r in self.widget.rows}
        values = {k: v for k, v in values.items() if v.strip() and v != old_defaults.get(k)}
        self.widget.fill(rows, values, note)
        self.widgetValueHasChanged.emit(self)

    def setValue(self, value: Any) -> None:  # noqa: N802 - QGIS API
        self.pending = parse_arguments_text(value or "")
        self.widget.fill(self.widget.rows, self.pending, self.widget.source_note)

    def value(self) -> str:
        return self.widget.text()


def _effective(md: Any, tool: str) -> Callable[[dict[str, str]], dict[str, tuple[str, str]]]:
    """What a run of ``tool`` with ``md`` will use for given values: the argument table's rule with the model's
    fixed batch dimension (read from an ONNX file's declared shapes, nothing run)."""
    fixed = declared_fixed_batch(md)

    def used(values: dict[str, str]) -> dict[str, tuple[str, str]]:
        rows = effective_arguments(md, tool, values, fixed)
        return {r["name"]: (r["value"], r["note"] if r["valid"] else "") for r in rows}

    return used


class ArgumentsWidgetFactory:
    """Our table in the tool's dialog; QGIS's text box in batch mode and the modeler."""

    def __new__(cls, param: QgsProcessingParameterDefinition, dialog: Any, row: int = 0, col: int = 0,
                **kwargs: Any) -> Any:
        if not is_standard(dialog):
            return standard_wrapper(param, dialog)
        return ArgumentsWrapper(param, dialog, row, col, **kwargs)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Dialog widgets that know the model: MODEL (a file, or the pasted .emd JSON, with a short summary of the model)
and ARGUMENTS (an editable table filled from the model when MODEL changes).

Only the tool's own dialog gets these; batch mode and the Graphical Modeler keep QGIS's standard widgets
(text for ARGUMENTS), so model inputs and batch rows work as before.  The value of ARGUMENTS stays the
ArcGIS string form (``padding 64;batch_size 4``): what ``processing.run`` and ``qgis_process`` take.
Nothing here runs a model's Python code or opens a program (TorchScript, .pt2) the user has not trusted; a
custom function's arguments are read from its source.
Imported only when a dialog is built (the parameters name these classes by their dotted path).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processing.gui.wrappers import WidgetWrapper
from qgis.core import QgsProcessingParameterDefinition
from qgis.gui import QgsFileWidget, QgsGui, QgsProcessingGui
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.arguments.specs import parse_arguments_text
from ..core.arguments.table import ArgumentRow, argument_rows, arguments_text, effective_arguments
from ..core.engine.contract import declared_fixed_batch
from ..core.errors import DLToolsError, UntrustedCodeError
from ..core.model.definition import ONNX_SUFFIXES, TORCH_EXPORT_SUFFIXES, TORCHSCRIPT_SUFFIXES, colours_from_palette, palette
from ..core.model.loader import load_model_definition
from ..core.tools.describe.device import device_summary
from ..core.tools.describe.report import bands_text
from ..core.trust import CODE_KINDS, file_sha256
from .isolation import probe_in_child, runs_in_child
from .trust import code_trust, trust_model

#: plain model files whose description needs the file opened (a backend): read in a child process
PLAIN_MODEL_SUFFIXES = ONNX_SUFFIXES + TORCHSCRIPT_SUFFIXES + TORCH_EXPORT_SUFFIXES

_INVALID = QColor(255, 200, 200)
_UNKNOWN = QColor(255, 240, 190)


def _standard_wrapper(param: QgsProcessingParameterDefinition, dialog: Any) -> Any:
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


def _is_standard(dialog: Any) -> bool:
    return dialog.__class__.__name__ not in ("ModelerParametersDialog", "BatchAlgorithmDialog")


_LAST: dict[tuple, tuple[Any, BaseException | None]] = {}


def dialog_definition(text: str) -> Any:
    """The definition MODEL names, for the dialog's summary and table (one reading for both, kept while the file,
    the trust and the settings stay the same). A plain model file that must be opened to be described (.onnx,
    a trusted TorchScript/.pt2) is read in a child process with a time limit: a hostile file cannot freeze QGIS."""
    trust = code_trust()
    path = Path(text.strip()) if not text.strip().startswith("{") else None
    try:
        stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path is not None else None
    except OSError:
        stamp = None
    key = (text, stamp, trust, runs_in_child())
    if key not in _LAST:
        opened = path is not None and path.suffix.lower() in PLAIN_MODEL_SUFFIXES
        try:
            md = probe_in_child("load_model_definition", text, trust=trust) if opened else \
                load_model_definition(text, trust=trust)
            _LAST.clear()
            _LAST[key] = (md, None)
        except (DLToolsError, OSError, ValueError) as exc:
            _LAST.clear()
            _LAST[key] = (None, exc)
    md, error = _LAST[key]
    if error is not None:
        raise error
    return md


def untrusted_code(md: Any) -> tuple[str, str] | None:
    """(file, SHA-256) when ``md`` names a code-bearing model file (TorchScript, .pt2) the user has not trusted."""
    if md is None or md.model_format_kind not in CODE_KINDS or md.model_file is None or not md.model_file.is_file():
        return None
    if md.code_trust is not None and md.code_trust.allows(md.model_file):
        return None
    try:
        return str(md.model_file), file_sha256(md.model_file)
    except OSError:
        return None


def model_summary(text: str, device_kind: str = "auto", gpu_id: int = 0) -> tuple[str, Any, tuple[str, str] | None]:
    """(rich text summary, the ModelDefinition or None, (file, SHA-256) of an untrusted code-bearing model or None)
    for what MODEL holds; never raises, and never opens a program the user has not trusted."""
    if not str(text or "").strip():
        return "<i>Choose a model (.emd, .dlpk, .onnx, .pt) or paste the .emd JSON.</i>", None, None
    try:
        md = dialog_definition(text)
    except UntrustedCodeError as exc:
        return f'<span style="color:#9a3b00">{html.escape(str(exc))}</span>', None, (exc.path, exc.sha256)
    except (DLToolsError, OSError, ValueError) as exc:
        return f'<span style="color:#a00000">{html.escape(str(exc))}</span>', None, None
    summary = _summary_lines(md, device_kind, gpu_id)
    untrusted = untrusted_code(md)
    if untrusted:
        summary += ('<br><span style="color:#9a3b00">This model contains code (a TorchScript or torch.export '
                    "program). It runs only if you trust it.</span>")
    return summary, md, untrusted


def model_summary_html(text: str, device_kind: str = "auto", gpu_id: int = 0) -> tuple[str, Any]:
    """(rich text summary, the ModelDefinition or None) for what MODEL holds; never raises."""
    summary, md, _ = model_summary(text, device_kind, gpu_id)
    return summary, md


def _summary_lines(md: Any, device_kind: str, gpu_id: int) -> str:
    """Type, tile, bands, classes with their colours, the device, and the definition's warnings."""
    parts = [f"<b>{html.escape(md.model_type)}</b>", f"tile {md.image_width}x{md.image_height}",
             html.escape(bands_text(md))]
    fill = palette(len(md.classes))  # what the output uses for a class without a colour
    classes = " ".join(
        f'<span style="background-color:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}">&nbsp;&nbsp;&nbsp;</span>'
        f"&nbsp;{html.escape(str(c.value))} {html.escape(c.name)}"
        for c, rgb in ((c, c.color or fill[i]) for i, c in enumerate(md.classes[:24])))
    if len(md.classes) > 24:
        classes += f" … ({len(md.classes)} classes)"
    lines = [" · ".join(parts), f"Classes: {classes or 'none listed'}"]
    if colours_from_palette(md.classes):
        lines.append("<i>The model gives no class colours: the output uses a fixed colour-blind-safe palette.</i>")
    lines.append(f"Runs on: {html.escape(device_summary(md, device_kind, gpu_id))}")
    lines += [f'<span style="color:#9a3b00">{html.escape(w)}</span>' for w in md.warnings]
    return "<br>".join(lines)


def table_definition(text: str) -> tuple[Any, str]:
    """(the ModelDefinition or None, a note) for the argument table; never raises, and never opens a program the
    user has not trusted (a plain TorchScript file without a stored definition would need a probe run)."""
    if not str(text or "").strip():
        return None, ""
    try:
        return dialog_definition(text), ""
    except UntrustedCodeError:
        return None, "are read from the model once you trust its code"
    except (DLToolsError, OSError, ValueError):
        return None, ""


# ------------------------------------------------------------------------------------------------ MODEL
class ModelWidget(QWidget):
    """A file chooser, a box for the pasted .emd JSON (shown with the {…} button), and the model summary."""

    def __init__(self, file_filter: str) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.file = QgsFileWidget()
        self.file.setFilter(file_filter)
        self.paste = QToolButton()
        self.paste.setText("{…}")
        self.paste.setCheckable(True)
        self.paste.setToolTip("Paste the .emd JSON text instead of choosing a file")
        row.addWidget(self.file, 1)
        row.addWidget(self.paste)
        layout.addLayout(row)
        self.json = QPlainTextEdit()
        self.json.setPlaceholderText('{"ModelType": "ImageClassification", "ModelFile": "/path/model.onnx", ...}')
        self.json.setMaximumHeight(120)
        self.json.setVisible(False)
        layout.addWidget(self.json)
        self.summary = QLabel()
        self.summary.setObjectName("dltools_model_summary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        layout.addWidget(self.summary)
        #: "This model contains code. Run it?": trusts the file's exact bytes (SHA-256), kept in QGIS settings
        self.trust = QPushButton("This model contains code. Run it (trust this file)")
        self.trust.setObjectName("dltools_trust_model")
        self.trust.setVisible(False)
        layout.addWidget(self.trust, 0, Qt.AlignLeft)
        self.untrusted: tuple[str, str] | None = None
        self.paste.toggled.connect(self.json.setVisible)

    def show_trust(self, untrusted: tuple[str, str] | None) -> None:
        """Offer to trust the code-bearing model file ``(path, sha256)``, or hide the offer (None)."""
        self.untrusted = untrusted
        self.trust.setVisible(bool(untrusted and untrusted[1]))
        if untrusted:
            self.trust.setToolTip(f"Trust '{untrusted[0]}' (SHA-256 {untrusted[1]}): its code will run in this and "
                                  "later runs. A changed file is not trusted. Only for models from people you trust")

    def value(self) -> str:
        if self.paste.isChecked() and self.json.toPlainText().strip():
            return self.json.toPlainText().strip()
        return self.file.filePath()

    def set_value(self, value: Any) -> None:
        text = "" if value is None else str(value)
        if text.strip().startswith("{"):
            self.json.setPlainText(text)
            self.paste.setChecked(True)
        else:
            self.file.setFilePath(text)


class ModelWrapper(WidgetWrapper):
    def createWidget(self, **kwargs: Any) -> QWidget:  # noqa: N802 - QGIS API
        self.device = ("auto", 0)
        widget = ModelWidget(self.parameterDefinition().fileFilter())
        widget.file.fileChanged.connect(self._changed)
        widget.json.textChanged.connect(self._changed)
        widget.paste.toggled.connect(self._changed)
        widget.trust.clicked.connect(self._trust_clicked)
        return widget

    def _trust_clicked(self) -> None:
        """The user answered "Run it": trust this file's SHA-256 from now on, then show the model."""
        if self.widget.untrusted and self.widget.untrusted[1]:
            trust_model(self.widget.untrusted[1])
        self._changed()

    def _changed(self, *args: Any) -> None:
        self.refresh_summary()
        self.widgetValueHasChanged.emit(self)

    def refresh_summary(self) -> None:
        text, _, untrusted = model_summary(self.value(), *self.device)
        self.widget.summary.setText(text)
        self.widget.show_trust(untrusted)

    def postInitialize(self, wrappers: list) -> None:  # noqa: N802 - QGIS API
        for w in wrappers:
            if w.parameterDefinition().name() in ("DEVICE", "GPU_ID"):
                w.widgetValueHasChanged.connect(lambda _w, ws=wrappers: self._device_changed(ws))
        self._device_changed(wrappers)

    def _device_changed(self, wrappers: list) -> None:
        values = {w.parameterDefinition().name(): w.parameterValue() for w in wrappers
                  if w.parameterDefinition().name() in ("DEVICE", "GPU_ID")}
        kind = ["auto", "cpu", "gpu"][int(values.get("DEVICE") or 0)] if str(values.get("DEVICE", 0)).isdigit() \
            else "auto"
        self.device = (kind, int(values.get("GPU_ID") or 0))
        self.refresh_summary()

    def setValue(self, value: Any) -> None:  # noqa: N802 - QGIS API
        self.widget.set_value(value)
        self.refresh_summary()

    def value(self) -> str:
        return self.widget.value()


class ModelWidgetFactory:
    """Our MODEL widget in the tool's dialog; QGIS's standard one in batch mode and the modeler."""

    def __new__(cls, param: QgsProcessingParameterDefinition, dialog: Any, row: int = 0, col: int = 0,
                **kwargs: Any) -> Any:
        if not _is_standard(dialog):
            return _standard_wrapper(param, dialog)
        return ModelWrapper(param, dialog, row, col, **kwargs)


# ------------------------------------------------------------------------------------------------ ARGUMENTS
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
        if not _is_standard(dialog):
            return _standard_wrapper(param, dialog)
        return ArgumentsWrapper(param, dialog, row, col, **kwargs)

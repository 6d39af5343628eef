# SPDX-License-Identifier: GPL-2.0-or-later
"""The MODEL field of the tools' dialogs: a file chooser, a box for the pasted .emd JSON, the model's summary and
the offer to trust a code-bearing model file (only the tool's own dialog; batch mode and the modeler keep QGIS's
file widget). Imported only when a dialog is built (the parameter names the factory by its dotted path)."""

from __future__ import annotations

from typing import Any

from processing.gui.wrappers import WidgetWrapper
from qgis.core import QgsProcessingParameterDefinition
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout, QWidget

from .dialog_kind import is_standard, standard_wrapper
from .model_summary import model_summary
from .trust import trust_model


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
        if not is_standard(dialog):
            return standard_wrapper(param, dialog)
        return ModelWrapper(param, dialog, row, col, **kwargs)

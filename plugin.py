# SPDX-License-Identifier: GPL-2.0-or-later
"""Registers the Processing provider; works with and without ``iface`` (qgis_process, headless PyQGIS).

In the desktop, when ONNX Runtime is missing, a message bar offers the installer (once per QGIS session, not
again after a plugin reload; never with ``iface`` None, never blocking the start: it only looks the module up).

It also installs the plugin's translation for the QGIS locale when ``i18n/dltools_<locale>.qm`` exists
(``make translations`` builds the .qm files from the translators' ``i18n/dltools_<locale>.ts``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication, QTranslator

I18N_DIR = Path(__file__).resolve().parent / "i18n"
#: a property of the QGIS application: the installer was offered in this session (survives plugin reloads)
OFFERED_PROPERTY = "dltools_installer_offered"
INSTALLER_ID = "dltools:installlibraries"


def onnxruntime_missing() -> bool:
    """Whether ``import onnxruntime`` would fail, without importing it (a look-up on sys.path only)."""
    try:
        return importlib.util.find_spec("onnxruntime") is None
    except (ImportError, ValueError):
        return True


def qgis_locale() -> str:
    """The locale QGIS runs in ("de", "pt_BR"; "C" or "" when none is set)."""
    return QgsApplication.locale() or ""


def translation_file(i18n_dir: Path, locale: str) -> Path | None:
    """``dltools_<locale>.qm``, else the one of the language alone (pt_BR -> pt); None when neither exists."""
    locale = locale.replace("-", "_")
    for name in dict.fromkeys((locale, locale.split("_")[0])):
        if name:
            path = Path(i18n_dir) / f"dltools_{name}.qm"
            if path.is_file():
                return path
    return None


def install_translator(i18n_dir: Path, locale: str) -> QTranslator | None:
    """Install the translation for ``locale``; None (English) when there is none or it cannot be read."""
    path = translation_file(i18n_dir, locale)
    if path is None:
        return None
    translator = QTranslator()
    if not translator.load(str(path)):
        QgsMessageLog.logMessage(f"Deep Learning Tools: cannot read the translation {path}", "Plugins", Qgis.Warning)
        return None
    QCoreApplication.installTranslator(translator)
    return translator


class DeepLearningToolsPlugin:
    def __init__(self, iface) -> None:  # noqa: ANN001 - QgisInterface or None
        self.iface = iface
        self.provider = None
        self.install_message = None
        self.installer_dialog = None
        # before the provider exists, so tool names and help are translated from the first look
        self.translator = install_translator(I18N_DIR, qgis_locale())

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Called by qgis_process (hasProcessingProvider=yes) and by initGui."""
        if self.provider is not None:
            return
        from .algorithms.provider import DeepLearningToolsProvider

        self.provider = DeepLearningToolsProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()
        self.offer_installer()

    def offer_installer(self) -> bool:
        """The message bar "ONNX Runtime is not installed … Install…"; True when it was shown now."""
        app = QCoreApplication.instance()
        if self.iface is None or app is None or app.property(OFFERED_PROPERTY) or not onnxruntime_missing():
            return False
        app.setProperty(OFFERED_PROPERTY, True)
        from qgis.PyQt.QtWidgets import QPushButton

        bar = self.iface.messageBar()
        item = bar.createMessage(
            "Deep Learning Tools",
            QCoreApplication.translate("DeepLearningToolsPlugin",
                                       "ONNX Runtime is not installed: the tools cannot run models yet."))
        button = QPushButton(QCoreApplication.translate("DeepLearningToolsPlugin", "Install…"), item)
        button.setObjectName("dltoolsInstallButton")
        button.clicked.connect(self.open_installer)
        item.layout().addWidget(button)
        bar.pushWidget(item, Qgis.Warning, 0)
        self.install_message = item
        return True

    def open_installer(self) -> None:
        """The installer's dialog (not modal: QGIS stays usable while pip works)."""
        from processing import createAlgorithmDialog

        if self.install_message is not None and self.iface is not None:
            self.iface.messageBar().popWidget(self.install_message)
            self.install_message = None
        self.installer_dialog = createAlgorithmDialog(INSTALLER_ID, {})
        if self.installer_dialog is not None:
            self.installer_dialog.show()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None

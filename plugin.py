# SPDX-License-Identifier: GPL-2.0-or-later
"""Registers the Processing provider; works with and without ``iface`` (qgis_process, headless PyQGIS).

It also installs the plugin's translation for the QGIS locale when ``i18n/dltools_<locale>.qm`` exists
(``make translations`` builds the .qm files from the translators' ``i18n/dltools_<locale>.ts``).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication, QTranslator

I18N_DIR = Path(__file__).resolve().parent / "i18n"


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

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None

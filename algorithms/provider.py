# SPDX-License-Identifier: GPL-2.0-or-later
"""The "Deep Learning Tools" Processing provider (id ``dltools``: a public, stable id)."""

from __future__ import annotations

import configparser
import os

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .base import ALLOW_CUSTOM_CODE_SETTING, ICON_PATH
from .outputs import GEOTIFF_EXTENSIONS


def _plugin_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "metadata.txt"), encoding="utf-8")
    return parser.get("general", "version", fallback="")


def _algorithm_classes() -> list:
    """Every algorithm class; one that fails to import is logged and skipped, never breaking the others."""
    import importlib

    names = [
        ("describe_model", "DescribeModelAlgorithm"),
        ("classify_pixels", "ClassifyPixelsAlgorithm"),
        ("classify_objects", "ClassifyObjectsAlgorithm"),
        ("detect_change", "DetectChangeAlgorithm"),
        ("detect_objects", "DetectObjectsAlgorithm"),
        ("non_maximum_suppression", "NonMaximumSuppressionAlgorithm"),
        ("model_to_ecd", "ModelToEcdAlgorithm"),
        ("package_model", "PackageModelAlgorithm"),
        ("extract_package", "ExtractPackageAlgorithm"),
    ]
    classes = []
    for module, cls in names:
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f".{module}"):
                continue  # this tool is not part of this build
            QgsMessageLog.logMessage(f"Deep Learning Tools: cannot load {module}: {exc}", "Processing", Qgis.Warning)
            continue
        except Exception as exc:  # noqa: BLE001 - one broken tool must not hide the others
            QgsMessageLog.logMessage(f"Deep Learning Tools: cannot load {module}: {exc}", "Processing", Qgis.Warning)
            continue
        classes.append(getattr(mod, cls))
    return classes


class DeepLearningToolsProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "dltools"

    def name(self) -> str:
        return "Deep Learning Tools"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return f"Deep Learning Tools {_plugin_version()}".strip()

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def svgIconPath(self) -> str:  # noqa: N802 - QGIS API
        return ICON_PATH

    def versionInfo(self) -> str:  # noqa: N802 - QGIS API
        return _plugin_version()

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802 - QGIS API
        """GeoTIFF only: every raster output is written by core's BlockWriter. The dialogs' file filters, the
        default extension and TEMPORARY_OUTPUT follow this (a user default of, say, .img falls back to .tif)."""
        return list(GEOTIFF_EXTENSIONS)

    def load(self) -> bool:
        """Registers the provider's settings (Processing > Options > Providers > Deep Learning Tools)."""
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:  # no Processing framework (e.g. a bare script): defaults apply
            pass
        else:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), ALLOW_CUSTOM_CODE_SETTING,
                "Allow custom Python inference functions (model code): run the .py a model brings "
                "(InferenceFunction). Only for models from people you trust", False))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
        except ImportError:
            return
        ProcessingConfig.removeSetting(ALLOW_CUSTOM_CODE_SETTING)

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        for cls in _algorithm_classes():
            self.addAlgorithm(cls())

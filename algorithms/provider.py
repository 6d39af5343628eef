# SPDX-License-Identifier: GPL-2.0-or-later
"""The "Deep Learning Tools" Processing provider (id ``dltools``: a public, stable id)."""

from __future__ import annotations

import configparser
import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.runner import spare
from .base import ICON_PATH
from .check_libraries import CheckLibrariesAlgorithm
from .classify_objects import ClassifyObjectsAlgorithm
from .classify_pixels import ClassifyPixelsAlgorithm
from .compute_accuracy_objects import ComputeAccuracyObjectsAlgorithm
from .compute_accuracy_pixels import ComputeAccuracyPixelsAlgorithm
from .describe_model import DescribeModelAlgorithm
from .detect_change import DetectChangeAlgorithm
from .detect_objects import DetectObjectsAlgorithm
from .export_training_data import ExportTrainingDataAlgorithm
from .extract_package import ExtractPackageAlgorithm
from .install_libraries import InstallLibrariesAlgorithm
from .isolation import SETTINGS as ISOLATION_SETTINGS
from .model_to_ecd import ModelToEcdAlgorithm
from .non_maximum_suppression import NonMaximumSuppressionAlgorithm
from .outputs import GEOTIFF_EXTENSIONS
from .package_model import PackageModelAlgorithm
from .train_model import TrainModelAlgorithm
from .trust import ALLOW_CUSTOM_CODE_SETTING


def _plugin_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "metadata.txt"), encoding="utf-8")
    return parser.get("general", "version", fallback="")


def algorithms() -> list:
    """A new instance of every tool, listed by hand (as QGIS's own ``QgisAlgorithmProvider.getAlgs()``).

    Nothing is skipped: a tool whose module fails to import breaks the provider loudly (the plugin manager
    shows the traceback), instead of vanishing from the toolbox and from every saved model that uses it.
    """
    return [
        DescribeModelAlgorithm(),
        ClassifyPixelsAlgorithm(),
        ClassifyObjectsAlgorithm(),
        DetectChangeAlgorithm(),
        DetectObjectsAlgorithm(),
        NonMaximumSuppressionAlgorithm(),
        ModelToEcdAlgorithm(),
        PackageModelAlgorithm(),
        ExtractPackageAlgorithm(),
        ExportTrainingDataAlgorithm(),
        InstallLibrariesAlgorithm(),
        CheckLibrariesAlgorithm(),
        ComputeAccuracyObjectsAlgorithm(),
        ComputeAccuracyPixelsAlgorithm(),
        TrainModelAlgorithm(),
    ]


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
                "Allow every model's own code (Python or TorchScript): open TorchScript/.pt2 programs and run the "
                ".py a model brings (InferenceFunction). Only if every model you use comes from people you trust; "
                "one file can be trusted in the tool's dialog instead", False))
            for name, description, default in ISOLATION_SETTINGS:
                ProcessingConfig.addSetting(Setting(self.name(), name, description, default))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        spare.discard()  # the process kept ready for the next run holds this plugin's code as loaded now
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
        except ImportError:
            return
        for name in [ALLOW_CUSTOM_CODE_SETTING] + [setting[0] for setting in ISOLATION_SETTINGS]:
            ProcessingConfig.removeSetting(name)

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        for algorithm in algorithms():
            self.addAlgorithm(algorithm)

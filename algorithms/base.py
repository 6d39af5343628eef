# SPDX-License-Identifier: GPL-2.0-or-later
"""What every Deep Learning Tools algorithm shares: its identity in the toolbox, the model parameters and the
output checks; the run parameters (device, extent, mask, cluster, permission for code, raster inputs) are
:mod:`.run_parameters`.

The algorithms' side of the engine interface (the feedback adapter, engine errors as messages for the
user) is :mod:`.running`."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProperty,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.model.definition import ModelDefinition
from ..core.model.loader import load_model_definition
from ..core.progress import Progress
from .outputs import geotiff_problem
from .run_parameters import DEVICE_OPTIONS, MOSAIC_MODES, RunParameters
from .running import run_engine
from .trust import ALLOW_CUSTOM_CODE_SETTING, custom_code_allowed_by_setting

__all__ = ["ALLOW_CUSTOM_CODE_SETTING", "DEVICE_OPTIONS", "DLToolsAlgorithm", "MOSAIC_MODES",
           "custom_code_allowed_by_setting"]

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icons", "dltools.svg")
MODEL_FILTER = ("Model definitions and models (*.emd *.dlpk *.ecd *.onnx *.pt *.pth *.pt2 *.torchscript *.json);;"
                "All files (*)")  # "(*)": the pasted .emd JSON text passes the dialog's own check


def _static_value(value: Any) -> Any:
    """A destination's file name when it is given as is (a string, or a static sink); None for an expression,
    which only processAlgorithm can resolve."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        return value.staticValue() if value.propertyType() == QgsProperty.StaticProperty else None
    return value


def check_with_stand_in(algorithm: QgsProcessingAlgorithm, name: str, parameters: dict[str, Any],
                        context: QgsProcessingContext, check) -> tuple[bool, str]:  # noqa: ANN001
    """QGIS's parameter check, with the required parameter ``name`` allowed empty for this check only.

    For a required input another input can stand in for (Classify Objects' raster or an image folder; Create
    Package's definition or a bare model file): the dialog shows it required and preselects a layer, while
    processAlgorithm says clearly when neither is given.  ``check`` is the base class's checkParameterValues.
    """
    definition = algorithm.parameterDefinition(name)
    if parameters.get(name) not in (None, "") or definition is None:
        return check(parameters, context)
    flags = definition.flags()
    definition.setFlags(flags | QgsProcessingParameterDefinition.FlagOptional)
    try:
        return check(parameters, context)
    finally:
        definition.setFlags(flags)


class DLToolsAlgorithm(RunParameters, QgsProcessingAlgorithm):
    """Small base in the style of QGIS's own Python algorithms: the model parameters, the output checks and
    the tool's identity; the run parameters the tools share are :class:`.run_parameters.RunParameters`."""

    MODEL = "MODEL"
    ARGUMENTS = "ARGUMENTS"

    def tr(self, text: str) -> str:
        """``text`` in the user's language. pylupdate5 files a string under the class whose code calls tr(), so a
        string of a base class (``DLToolsAlgorithm``, ``RunParameters``) is looked up under its name after the
        tool's own class name."""
        for cls in type(self).__mro__:
            if cls is QgsProcessingAlgorithm:
                break
            translated = QCoreApplication.translate(cls.__name__, text)
            if translated != text:
                return translated
        return text

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    # The tools sit directly under "Deep Learning Tools" in the toolbox: no group level.
    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return ""

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    #: The README heading this tool's Help button opens. In English here, never through tr(): the help page is the
    #: English README, and a translated display name would miss its anchor.
    HELP_SECTION = ""

    def helpUrl(self) -> str:  # noqa: N802 - QGIS API
        """The tool's section of the local help page (the README, shipped with the plugin)."""
        from .help_page import help_url, slug

        return help_url(slug(self.HELP_SECTION or self.displayName()))

    # -- common parameters -------------------------------------------------------------------
    def add_param(self, param: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False) -> None:
        param.setHelp(self.tr(help_text))
        if advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(param)

    #: The engine's name for this tool's argument set (core.arguments.specs.TOOLS); "" picks it from the model type.
    ARGUMENT_TOOL = ""

    def add_model_parameters(self, arguments_help: str) -> None:
        # In the tool's dialog MODEL and ARGUMENTS get widgets that know the model (algorithms/model_widget.py and
        # arguments_widget.py, imported only when a dialog is built); batch mode and the modeler keep QGIS's own.
        model = QgsProcessingParameterFile(self.MODEL, self.tr("Model definition"), fileFilter=MODEL_FILTER)
        model.setMetadata({"widget_wrapper": {"class": f"{__package__}.model_widget.ModelWidgetFactory"}})
        self.add_param(
            model,
            "The model: an Esri model definition (.emd), a deep learning package (.dlpk), an .ecd from Deep Learning "
            "Model To Ecd, a plain .onnx or TorchScript (.pt) file, or the .emd JSON text pasted here (the {…} "
            "button in the dialog). The dialog shows what it is: type, tile size, bands, classes and device.")
        arguments = QgsProcessingParameterString(self.ARGUMENTS, self.tr("Model arguments"), defaultValue="",
                                                 optional=True)
        arguments.setMetadata({"widget_wrapper": {"class": f"{__package__}.arguments_widget.ArgumentsWidgetFactory",
                                                  "tool": self.ARGUMENT_TOOL}})
        self.add_param(arguments, arguments_help + " In the dialog, a table lists the model's arguments with their "
                       "defaults; values that would be refused are shown in red.")

    def checkParameterValues(self, parameters: dict[str, Any], context) -> tuple[bool, str]:  # noqa: N802, ANN001
        """Raster outputs must be GeoTIFF names (processing.run and qgis_process do not check the extension, the
        dialog does); MODEL may be the .emd JSON text, which the file parameter's extension check alone would
        refuse."""
        from .online_inputs import with_online_uris_loadable

        parameters = with_online_uris_loadable(self, parameters)
        for definition in self.parameterDefinitions():
            if isinstance(definition, QgsProcessingParameterRasterDestination):
                problem = geotiff_problem(definition.name(), _static_value(parameters.get(definition.name())))
                if problem:
                    return False, problem
        value = parameters.get(self.MODEL)
        if self.parameterDefinition(self.MODEL) is not None and isinstance(value, str) and \
                value.strip().startswith("{"):
            parameters = dict(parameters)
            parameters[self.MODEL] = "model-definition-text.emd"  # stands in for the text in that check only
        return super().checkParameterValues(parameters, context)

    def geotiff_output(self, parameters: dict[str, Any], name: str, context) -> str:  # noqa: ANN001
        """The raster destination ``name`` resolved (TEMPORARY_OUTPUT becomes a ``.tif``: the provider offers
        GeoTIFF only), refused unless it is a GeoTIFF name: the check that holds for every caller (a model's
        expression-built path too), before anything is written."""
        output = self.parameterAsOutputLayer(parameters, name, context)
        problem = geotiff_problem(name, output)
        if problem:
            raise QgsProcessingException(problem)
        return output

    def model_definition(self, parameters: dict[str, Any], context, progress: Progress) -> ModelDefinition:  # noqa: ANN001
        """The MODEL parameter's model definition (file, package or JSON text), its warnings logged; it carries
        the run's trust in code-bearing models, which the backend checks before opening the file."""
        md = run_engine(load_model_definition, self.model_text(parameters, context),
                        trust=self.code_trust(parameters, context))
        for w in md.warnings:
            progress.warning(w)
        return md

    def model_text(self, parameters: dict[str, Any], context) -> str:  # noqa: ANN001
        value = parameters.get(self.MODEL)
        text = value if isinstance(value, str) and value.strip().startswith("{") else \
            self.parameterAsFile(parameters, self.MODEL, context)
        if not text or not str(text).strip():
            raise QgsProcessingException(self.tr("No model given: choose an .emd, .dlpk, .onnx or .pt file"))
        return str(text)

    @staticmethod
    def gdal_source(layer: QgsRasterLayer | None, what: str) -> str:
        """The GDAL-readable path of a raster layer, or a clear error."""
        if layer is None or not layer.isValid():
            raise QgsProcessingException(f"The {what} raster layer could not be loaded")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"Layer '{layer.name()}' comes from the '{layer.providerType()}' provider; these tools read rasters "
                "through GDAL. Save it as a GeoTIFF first (Raster > Conversion > Translate) and use that")
        return layer.source()

# SPDX-License-Identifier: GPL-2.0-or-later
"""What every Deep Learning Tools algorithm shares: the common parameters and how they are read.

The algorithms' side of the engine interface (the feedback adapter, engine errors as messages for the
user) is :mod:`.engine`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProperty,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.backends.base import DeviceRequest
from ..core.model.definition import ModelDefinition
from ..core.model.loader import load_model_definition
from ..core.progress import Progress
from .outputs import geotiff_problem
from .running import run_engine
from .trust import ALLOW_CUSTOM_CODE_SETTING, code_trust, custom_code_allowed_by_setting

__all__ = ["ALLOW_CUSTOM_CODE_SETTING", "DLToolsAlgorithm", "custom_code_allowed_by_setting"]

if TYPE_CHECKING:
    from ..core.raster.mask import ProcessingMask
    from ..core.raster.request import RasterRequest
    from ..core.trust import CodeTrust
    from .online_inputs import RasterInput

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icons", "dltools.svg")
MODEL_FILTER = ("Model definitions and models (*.emd *.dlpk *.ecd *.onnx *.pt *.pth *.pt2 *.torchscript *.json);;"
                "All files (*)")  # "(*)": the pasted .emd JSON text passes the dialog's own check
DEVICE_OPTIONS = ["Auto", "CPU", "GPU"]
#: PROCESSING_MODE's options (a VRT mosaic as one image, or item by item), as in ArcGIS.
MOSAIC_MODES = ["Process as mosaicked image", "Process all raster items separately"]


def _static_value(value: Any) -> Any:
    """A destination's file name when it is given as is (a string, or a static sink); None for an expression,
    which only processAlgorithm can resolve."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        return value.staticValue() if value.propertyType() == QgsProperty.StaticProperty else None
    return value


class DLToolsAlgorithm(QgsProcessingAlgorithm):
    """Small base in the style of QGIS's own Python algorithms."""

    MODEL = "MODEL"
    ARGUMENTS = "ARGUMENTS"
    DEVICE = "DEVICE"
    GPU_ID = "GPU_ID"

    def tr(self, text: str) -> str:
        """``text`` in the user's language. pylupdate5 files a string under the class whose code calls tr(), so a
        string of this base class is looked up under ``DLToolsAlgorithm`` after the tool's own class name."""
        for cls in type(self).__mro__:
            if issubclass(cls, DLToolsAlgorithm):
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
        # In the tool's dialog MODEL and ARGUMENTS get widgets that know the model (algorithms/widgets.py,
        # imported only when a dialog is built); batch mode and the modeler keep QGIS's own widgets.
        widgets = f"{__package__}.widgets"
        model = QgsProcessingParameterFile(self.MODEL, self.tr("Model definition"), fileFilter=MODEL_FILTER)
        model.setMetadata({"widget_wrapper": {"class": f"{widgets}.ModelWidgetFactory"}})
        self.add_param(
            model,
            "The model: an Esri model definition (.emd), a deep learning package (.dlpk), an .ecd from Deep Learning "
            "Model To Ecd, a plain .onnx or TorchScript (.pt) file, or the .emd JSON text pasted here (the {…} "
            "button in the dialog). The dialog shows what it is: type, tile size, bands, classes and device.")
        arguments = QgsProcessingParameterString(self.ARGUMENTS, self.tr("Model arguments"), defaultValue="",
                                                 optional=True)
        arguments.setMetadata({"widget_wrapper": {"class": f"{widgets}.ArgumentsWidgetFactory",
                                                  "tool": self.ARGUMENT_TOOL}})
        self.add_param(arguments, arguments_help + " In the dialog, a table lists the model's arguments with their "
                       "defaults; values that would be refused are shown in red.")

    def add_device_parameters(self) -> None:
        self.add_param(
            QgsProcessingParameterEnum(self.DEVICE, self.tr("Processor type"), options=DEVICE_OPTIONS, defaultValue=0),
            "Auto uses an NVIDIA GPU when ONNX Runtime or PyTorch can reach one, else the CPU; the log says which "
            "ran. GPU fails if there is none. (ArcGIS's 'Processor Type' environment.)")
        self.add_param(
            QgsProcessingParameterNumber(self.GPU_ID, self.tr("GPU ID"), QgsProcessingParameterNumber.Integer,
                                         defaultValue=0, minValue=0),
            "Which GPU to use when several are present, numbered from 0. (ArcGIS's 'GPU ID' environment.)",
            advanced=True)

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

    EXTENT = "EXTENT"
    MASK = "MASK"
    CELL_SIZE = "CELL_SIZE"
    PROCESSING_MODE = "PROCESSING_MODE"

    def add_raster_run_parameters(self, extent_help: str, cell_size_help: str, mode_help: str = "") -> None:
        """What the raster tools (Classify Pixels, Detect Change, Detect Objects) share, in their dialog order:
        EXTENT, CELL_SIZE (advanced), the device, the Dask scheduler and retries, ALLOW_CUSTOM_CODE and, with
        ``mode_help``, PROCESSING_MODE (advanced). The help texts are the tool's own."""
        self.add_param(QgsProcessingParameterExtent(self.EXTENT, self.tr("Processing extent"), optional=True),
                       extent_help)
        self.add_param(
            QgsProcessingParameterFeatureSource(self.MASK, self.tr("Processing mask (polygons)"),
                                                [QgsProcessing.TypeVectorPolygon], optional=True),
            "Only the tiles that touch these polygons (any CRS) are read and run; output pixels outside them are "
            "NoData and objects whose centre lies outside are dropped. Without a processing extent, the polygons' "
            "bounding box is the extent. (Deepness's 'processed area from polygons', ArcGIS's mask environment.)")
        self.add_param(QgsProcessingParameterNumber(self.CELL_SIZE, self.tr("Cell size"),
                                                    QgsProcessingParameterNumber.Double, optional=True, minValue=0.0),
                       cell_size_help, advanced=True)
        self.add_device_parameters()
        self.add_cluster_parameters()
        self.add_custom_code_parameter()
        if mode_help:
            self.add_processing_mode_parameter(mode_help)

    def add_processing_mode_parameter(self, help_text: str) -> None:
        self.add_param(QgsProcessingParameterEnum(self.PROCESSING_MODE, self.tr("Processing mode"),
                                                  options=MOSAIC_MODES, defaultValue=0), help_text, advanced=True)

    def raster_request(self, parameters: dict[str, Any], context, crs) -> RasterRequest:  # noqa: ANN001
        """EXTENT (in ``crs``, the raster's) and CELL_SIZE as the engine's request; empty ones mean the raster's own."""
        from ..core.raster.request import RasterRequest

        extent = self.extent_of(parameters, self.EXTENT, context, crs)
        cell = parameters.get(self.CELL_SIZE)
        cell_size = self.parameterAsDouble(parameters, self.CELL_SIZE, context) if cell not in (None, "") else None
        return RasterRequest(extent=extent, cell_size=cell_size or None, mask=self.processing_mask(parameters, context))

    def processing_mask(self, parameters: dict[str, Any], context) -> ProcessingMask | None:  # noqa: ANN001
        """MASK's polygons as the engine's plain input (WKB in the layer's CRS); None when MASK is empty."""
        from ..core.raster.mask import ProcessingMask

        if self.parameterDefinition(self.MASK) is None or parameters.get(self.MASK) in (None, ""):
            return None
        source = self.parameterAsSource(parameters, self.MASK, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.MASK))
        crs = source.sourceCrs()
        wkbs = [bytes(f.geometry().asWkb()) for f in source.getFeatures() if f.hasGeometry()]
        return ProcessingMask(wkbs, crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else "",
                              source.sourceName() or self.MASK)

    SCHEDULER = "SCHEDULER"
    RETRIES = "RETRIES"

    def add_cluster_parameters(self) -> None:
        self.add_param(
            QgsProcessingParameterString(self.SCHEDULER, self.tr("Dask scheduler"), defaultValue="", optional=True),
            "Where the blocks of work run: empty = in this process (the default); 'local' or 'local:N' = a Dask "
            "cluster of N worker processes on this computer, started for this run and closed after; "
            "'tcp://host:8786' = a running Dask scheduler, whose workers must reach the input raster at the same "
            "path. Needs dask[distributed]. (ArcGIS's 'Parallel processing factor'.)", advanced=True)
        self.add_param(
            QgsProcessingParameterNumber(self.RETRIES, self.tr("Retries on failures"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=2, minValue=0),
            "With a Dask scheduler: how many times a block that failed is run again before the run fails. "
            "(ArcGIS's 'Number of retries on failures'.)", advanced=True)

    def cluster_options(self, parameters: dict[str, Any], context) -> dict[str, Any]:  # noqa: ANN001
        """``scheduler`` and ``retries`` for the core call."""
        return {"scheduler": (self.parameterAsString(parameters, self.SCHEDULER, context) or "").strip(),
                "retries": self.parameterAsInt(parameters, self.RETRIES, context)}

    ALLOW_CUSTOM_CODE = "ALLOW_CUSTOM_CODE"

    def add_custom_code_parameter(self) -> None:
        self.add_param(
            QgsProcessingParameterBoolean(self.ALLOW_CUSTOM_CODE,
                                          self.tr("Allow the model's own code (Python or TorchScript)"),
                                          defaultValue=False),
            "Some models are programs: TorchScript (.pt, .pth, .torchscript) and torch.export (.pt2) files, and "
            "models that bring their own Python inference function (InferenceFunction in the .emd). Such a file is "
            "someone else's program and can do anything you can do, so it is opened only if you allow it: here for "
            "this run, for this very file in the tool's dialog (kept by its SHA-256), or for every model in "
            "Processing > Options > Providers > Deep Learning Tools. ONNX files and arcgis.learn weights are data "
            "and need no permission. The log names the file and its SHA-256.", advanced=True)

    def custom_code_allowed(self, parameters: dict[str, Any], context) -> bool:  # noqa: ANN001
        """The per-run parameter, or the plugin setting."""
        if self.parameterDefinition(self.ALLOW_CUSTOM_CODE) is not None and \
                self.parameterAsBoolean(parameters, self.ALLOW_CUSTOM_CODE, context):
            return True
        return custom_code_allowed_by_setting()

    def code_trust(self, parameters: dict[str, Any], context) -> CodeTrust:  # noqa: ANN001
        """The user's trust in code-bearing models for this run: ALLOW_CUSTOM_CODE, the provider setting, or the
        files trusted one by one in the dialog."""
        allowed = self.parameterDefinition(self.ALLOW_CUSTOM_CODE) is not None and \
            self.parameterAsBoolean(parameters, self.ALLOW_CUSTOM_CODE, context)
        return code_trust(allowed)

    def model_definition(self, parameters: dict[str, Any], context, progress: Progress) -> ModelDefinition:  # noqa: ANN001
        """The MODEL parameter's model definition (file, package or JSON text), its warnings logged; it carries
        the run's trust in code-bearing models, which the backend checks before opening the file."""
        md = run_engine(load_model_definition, self.model_text(parameters, context),
                        trust=self.code_trust(parameters, context))
        for w in md.warnings:
            progress.warning(w)
        return md

    def device_request(self, parameters: dict[str, Any], context, threads: int = 0) -> DeviceRequest:  # noqa: ANN001
        kind = DEVICE_OPTIONS[self.parameterAsEnum(parameters, self.DEVICE, context)].lower()
        return DeviceRequest(kind, self.parameterAsInt(parameters, self.GPU_ID, context), threads)

    def model_text(self, parameters: dict[str, Any], context) -> str:  # noqa: ANN001
        value = parameters.get(self.MODEL)
        text = value if isinstance(value, str) and value.strip().startswith("{") else \
            self.parameterAsFile(parameters, self.MODEL, context)
        if not text or not str(text).strip():
            raise QgsProcessingException(self.tr("No model given: choose an .emd, .dlpk, .onnx or .pt file"))
        return str(text)

    def extent_of(self, parameters: dict[str, Any], name: str, context, crs) -> tuple[float, float, float, float] | None:  # noqa: ANN001
        """The EXTENT rectangle (xmin, ymin, xmax, ymax) in ``crs``, None when not given; a zero-width or zero-height
        (or unreadable) rectangle is an error, never "the whole raster"."""
        if parameters.get(name) in (None, ""):
            return None
        rect = self.parameterAsExtent(parameters, name, context, crs) if crs is not None else \
            self.parameterAsExtent(parameters, name, context)  # in its own CRS (online layers)
        if rect.isNull() or not rect.width() > 0 or not rect.height() > 0:
            raise QgsProcessingException(
                f"{name} has zero width or height ({rect.width():g} x {rect.height():g} map units): give a rectangle "
                "with an area, or leave it empty to process the whole raster")
        return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())

    def raster_input(self, parameters: dict[str, Any], name: str, context, what: str) -> RasterInput:  # noqa: ANN001
        """A raster parameter as the engine's input: a GDAL file, or an online layer (a layer of QGIS's ``wms`` or
        ``arcgismapserver`` provider, or such a layer's source string, ``wms://`` prefixed or not)."""
        from .online_inputs import raster_input

        return raster_input(self, parameters, name, context, what)

    def input_request(self, parameters: dict[str, Any], context, raster: RasterInput) -> RasterRequest:  # noqa: ANN001
        """EXTENT, CELL_SIZE and MASK for ``raster``: in the raster's CRS for a file; for an online layer the extent
        stays in its own CRS (the engine reprojects it into the layer's)."""
        if raster.online is None:
            return self.raster_request(parameters, context, raster.crs)
        request = self.raster_request(parameters, context, None)
        if parameters.get(self.EXTENT) not in (None, ""):
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            request.extent_crs_wkt = crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else None
        return request

    def engine_input(self, raster: RasterInput, md: ModelDefinition, request: RasterRequest,
                     progress: Progress) -> tuple[str, RasterRequest]:
        """(what the engine reads, the request): a file as it is; an online layer as its GDAL description at the
        resolution chosen for this run (core.raster.online)."""
        if raster.online is None:
            return raster.path, request
        from ..core.raster.online import plan_online_raster
        from .online_inputs import use_qgis_proxy

        use_qgis_proxy(raster.online.url, progress)
        return run_engine(plan_online_raster, raster.online, md, request, progress)

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

# SPDX-License-Identifier: GPL-2.0-or-later
"""The run parameters the tools share (device, processing extent, mask and cell size, the Dask cluster, permission
for a model's own code), declared and read in one place: a mixin of :class:`.base.DLToolsAlgorithm`, which stays the
small base QGIS's own Python algorithms have."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.backends.base import DeviceRequest
from ..core.model.definition import ModelDefinition
from ..core.progress import Progress
from .running import run_engine
from .trust import code_trust, custom_code_allowed_by_setting

if TYPE_CHECKING:
    from ..core.raster.mask import ProcessingMask
    from ..core.raster.request import RasterRequest
    from ..core.trust import CodeTrust
    from .online_inputs import RasterInput

DEVICE_OPTIONS = ["Auto", "CPU", "GPU"]
#: PROCESSING_MODE's options (a VRT mosaic as one image, or item by item), as in ArcGIS.
MOSAIC_MODES = ["Process as mosaicked image", "Process all raster items separately"]


class RunParameters:
    """Declares and reads the parameters of a run (mixed into :class:`.base.DLToolsAlgorithm`: ``self`` is a
    QgsProcessingAlgorithm with ``add_param`` and ``tr``)."""

    DEVICE = "DEVICE"
    GPU_ID = "GPU_ID"

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
        scheduler = QgsProcessingParameterString(self.SCHEDULER, self.tr("Dask scheduler"), defaultValue="",
                                                 optional=True)
        # in the tool's dialog: a hint under the field (what to type, or why the value would be refused)
        scheduler.setMetadata({"widget_wrapper": {"class": f"{__package__}.scheduler_widget.SchedulerWidgetFactory"}})
        self.add_param(
            scheduler,
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

    def device_request(self, parameters: dict[str, Any], context, threads: int = 0) -> DeviceRequest:  # noqa: ANN001
        kind = DEVICE_OPTIONS[self.parameterAsEnum(parameters, self.DEVICE, context)].lower()
        return DeviceRequest(kind, self.parameterAsInt(parameters, self.GPU_ID, context), threads)

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

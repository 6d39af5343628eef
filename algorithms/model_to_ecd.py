# SPDX-License-Identifier: GPL-2.0-or-later
"""Deep Learning Model To Ecd: the legacy ArcGIS tool that pairs a model file with its class info."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingParameterFile, QgsProcessingParameterFileDestination

from ..core.errors import ModelDefinitionError
from ..core.model.ecd_writer import write_ecd
from ..core.model.loader import load_model_definition
from .base import DLToolsAlgorithm
from .running import run_engine

MODEL_FILE_FILTER = ("Model files (*.onnx *.pt *.pth *.pt2 *.torchscript *.pb *.h5 *.model *.dnn);;All files (*.*)")


class ModelToEcdAlgorithm(DLToolsAlgorithm):
    MODEL_FILE = "MODEL_FILE"
    CLASS_INFO = "CLASS_INFO"
    OUTPUT = "OUTPUT"

    HELP_SECTION = "Deep Learning Model To Ecd (legacy)"

    def name(self) -> str:
        return "modeltoecd"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Deep Learning Model To Ecd")

    def tags(self) -> list[str]:
        return self.tr("ecd,classifier definition,class info,esri,arcgis,legacy").split(",")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Writes an Esri classifier definition (.ecd) that pairs a trained model file with an \"Esri Extra Info\" "
            "class info JSON: the framework (Classifier), the number of raster bands, the batch size and the classes "
            "with their values, names and colours.\n\n"
            "This re-creates ArcGIS's Deep Learning Model To Ecd, which ArcGIS has deprecated (replaced by Export "
            "Training Data For Deep Learning and .emd model definitions). Use it for old workflows that start from a "
            "model file and a class info JSON; for new work write an .emd.\n\n"
            "The .ecd written here works as the model in this plugin's inference tools (Classify Pixels ...). Since "
            "Esri never published its deep learning .ecd layout, the file is plugin-defined: it stores the tile size, "
            "model type and bands with .emd key names. The tile size is read from an ONNX model; for other files (or "
            "models that take any tile size) add \"ImageHeight\" and \"ImageWidth\" to the class info. Optional class "
            "info keys \"ModelType\", \"DataRange\" and \"ModelPadding\" are copied too.\n\n"
            "Class info example: {\"ImportDeepLearningModelToEsriExtraInfo\": 0, \"Version\": 1, \"Classifier\": "
            "\"ONNX\", \"NumberRasterBands\": 4, \"MiniBatchSize\": 16, \"Classes\": [{\"Value\": 100, \"Name\": "
            "\"Impervious\", \"Color\": [204, 204, 204]}]}")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(
            QgsProcessingParameterFile(self.MODEL_FILE, self.tr("Input deep learning model"),
                                       QgsProcessingParameterFile.File, fileFilter=MODEL_FILE_FILTER),
            "The trained model file (.onnx, TorchScript .pt, or .pb/.h5/.model from other frameworks). The .ecd "
            "refers to it by a path relative to the .ecd, so keep the two together when moving them.")
        self.add_param(
            QgsProcessingParameterFile(self.CLASS_INFO, self.tr("Input classification info (JSON)"),
                                       QgsProcessingParameterFile.File, fileFilter="JSON files (*.json);;All files (*.*)"),
            "The \"Esri Extra Info\" JSON: ImportDeepLearningModelToEsriExtraInfo, Classifier (the framework), "
            "NumberRasterBands, MiniBatchSize and Classes (Value, Name, Color [r, g, b]); optionally ImageHeight and "
            "ImageWidth (needed when the model file does not fix them), ModelType, DataRange and ModelPadding.")
        self.add_param(
            QgsProcessingParameterFileDestination(self.OUTPUT, self.tr("Output classifier definition"),
                                                  fileFilter="Esri classifier definition (*.ecd)"),
            "The .ecd file to write. It can be given as the model to this plugin's inference tools.")

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        model_file = self.parameterAsFile(parameters, self.MODEL_FILE, context)
        class_info = self.parameterAsFile(parameters, self.CLASS_INFO, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not model_file:
            raise QgsProcessingException(self.tr("No model file given"))
        if not class_info:
            raise QgsProcessingException(self.tr("No class info JSON given"))
        if not output:
            raise QgsProcessingException(self.tr("No output .ecd file given"))
        written = run_engine(write_ecd, model_file, class_info, output)
        feedback.setProgress(80)
        feedback.pushInfo(f"Wrote {written}")
        try:
            md = load_model_definition(written)
        except ModelDefinitionError as exc:
            feedback.reportError(
                f"The .ecd was written, but this plugin's inference tools cannot use it as a model: {exc}",
                fatalError=False)
        else:
            feedback.pushInfo(
                f"{md.model_type}, {md.framework} model {md.model_file_text}, {md.image_width}x{md.image_height} tiles, "
                f"{len(md.extract_bands or [])} bands, {len(md.classes)} classes: "
                + ", ".join(f"{c.value} {c.name}" for c in md.classes))
            for warning in md.warnings:
                feedback.reportError(warning, fatalError=False)
        feedback.setProgress(100)
        return {self.OUTPUT: str(written)}

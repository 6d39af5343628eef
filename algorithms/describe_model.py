# SPDX-License-Identifier: GPL-2.0-or-later
"""Describe Model: report what the plugin reads from a model definition, without running it on data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessing, QgsProcessingException, QgsProcessingParameterFileDestination, QgsProcessingUtils

from ..core.safe_output import write_texts
from ..core.tools.describe.report import describe_model, render_html, report_lines
from .base import DLToolsAlgorithm
from .isolation import read_model_in_child, run_tool
from .outputs import refuse_same_files
from .running import FeedbackProgress, run_engine


class DescribeModelAlgorithm(DLToolsAlgorithm):
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_JSON = "OUTPUT_JSON"

    HELP_SECTION = "Describe Model"

    def name(self) -> str:
        return "describemodel"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Describe Model")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Reports what Deep Learning Tools reads from a model: its type, framework and origin, the model file and the "
            "backend and device that would run it, the inputs and outputs with their shapes, the tile size, the bands "
            "it reads, the input normalisation, the classes with their colours, the model arguments each tool accepts "
            "with their defaults, and any warnings. Nothing is run on imagery. The report is written to the log, to an "
            "HTML page and to a JSON file.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_model_parameters(
            "The model arguments a run would be given ('padding 64;batch_size 4'): the report says what each tool "
            "would really use with them (batch_size after ArcGIS's square rule and the model's own fixed batch). "
            "Empty: the defaults.")
        self.add_device_parameters()
        self.add_param(
            QgsProcessingParameterFileDestination(self.OUTPUT_HTML, self.tr("Model description (HTML)"),
                                                  fileFilter="HTML files (*.html)",
                                                  defaultValue=QgsProcessing.TEMPORARY_OUTPUT, optional=True),
            "The report as an HTML page, with a colour swatch for each class (a temporary file if not given).")
        self.add_param(
            QgsProcessingParameterFileDestination(self.OUTPUT_JSON, self.tr("Model description (JSON)"),
                                                  fileFilter="JSON files (*.json)",
                                                  defaultValue=QgsProcessing.TEMPORARY_OUTPUT, optional=True),
            "The report as JSON, for scripts: the same content as the HTML page (a temporary file if not given).")

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        progress = FeedbackProgress(feedback)
        model = self.model_text(parameters, context)
        device = self.device_request(parameters, context)
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context) or \
            QgsProcessingUtils.generateTempFilename("model_description.html")
        json_path = self.parameterAsFileOutput(parameters, self.OUTPUT_JSON, context) or \
            QgsProcessingUtils.generateTempFilename("model_description.json")

        model_path = None if model.strip().startswith("{") else model
        refuse_same_files({self.OUTPUT_HTML: html_path, self.OUTPUT_JSON: json_path}, {self.MODEL: model_path})
        md = read_model_in_child("describe_load", progress, model, trust=self.code_trust(parameters, context))
        if md.model_file is not None:
            refuse_same_files({self.OUTPUT_HTML: html_path, self.OUTPUT_JSON: json_path},
                              {f"{self.MODEL}'s model file": str(md.model_file)})
        feedback.setProgress(30)
        info = run_tool("describe_backend", progress, md, device, progress)
        feedback.setProgress(70)
        report = run_engine(describe_model, md, info, self.parameterAsString(parameters, self.ARGUMENTS, context))
        for line in report_lines(report):
            feedback.pushInfo(line)
        for path in (html_path, json_path):
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise QgsProcessingException(f"Cannot write '{path}': {exc.strerror or exc}") from exc
        run_engine(write_texts, {html_path: render_html(report), json_path: json.dumps(report, indent=2) + "\n"})
        feedback.setProgress(100)
        return {self.OUTPUT_HTML: html_path, self.OUTPUT_JSON: json_path}

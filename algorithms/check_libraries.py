# SPDX-License-Identifier: GPL-2.0-or-later
"""Check Inference Libraries: each library's version, where it was loaded from, and the devices it sees."""

from __future__ import annotations

import json
from typing import Any

from qgis.core import QgsProcessing, QgsProcessingOutputString, QgsProcessingParameterFileDestination

from ..core.errors import DependencyMissingError
from ..core.installer.folder import site_dir
from ..core.installer.interpreter import locate_python
from ..core.installer.report import check_libraries, report_lines
from ..core.safe_output import write_texts
from .base import DLToolsAlgorithm
from .libraries import private_base
from .running import run_engine


class CheckLibrariesAlgorithm(DLToolsAlgorithm):
    OUTPUT_JSON = "OUTPUT_JSON"
    REPORT = "REPORT"

    HELP_SECTION = "Check Inference Libraries"

    def name(self) -> str:
        return "checklibraries"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Check Inference Libraries")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Reports the inference libraries QGIS's Python has: ONNX Runtime, PyTorch, torchvision, Dask and numpy, "
            "each with its version, the folder it was loaded from (QGIS's Python or the plugin's own folder) and the "
            "devices it sees (ONNX Runtime's execution providers, the GPUs torch.cuda sees). Install Inference "
            "Libraries installs what is missing.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterFileDestination(
            self.OUTPUT_JSON, self.tr("Report (JSON)"), fileFilter="JSON files (*.json)",
            defaultValue=QgsProcessing.TEMPORARY_OUTPUT, optional=True),
            "The report as JSON, for scripts (a temporary file if not given).")
        self.addOutput(QgsProcessingOutputString(self.REPORT, self.tr("Report")))

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        try:
            base = private_base()
            site = site_dir(base) if site_dir(base).is_dir() else None
        except ValueError:
            base, site = None, None
        try:
            python = str(locate_python())
        except DependencyMissingError as exc:
            python = f"not found ({exc})"
        rows = check_libraries(site)
        lines = report_lines(rows, python, site)
        for line in lines:
            feedback.pushInfo(line)
        result: dict[str, Any] = {self.REPORT: "\n".join(lines)}
        path = self.parameterAsFileOutput(parameters, self.OUTPUT_JSON, context)
        if path:
            report = {"python": python, "folder": str(base) if base else None, "libraries": rows}
            run_engine(write_texts, {path: json.dumps(report, indent=2) + "\n"})
            result[self.OUTPUT_JSON] = path
        return result

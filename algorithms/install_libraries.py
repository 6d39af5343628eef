# SPDX-License-Identifier: GPL-2.0-or-later
"""Install Inference Libraries: ONNX Runtime, PyTorch, Dask into the plugin's own folder, without a terminal."""

from __future__ import annotations

import sys
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFolder,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ..core.installer.catalogue import LIBRARIES
from ..core.installer.folder import activate, site_dir
from ..core.installer.install import ACTIONS, change_libraries
from ..core.installer.pip_run import PipOptions
from ..core.runner import spare
from .base import DLToolsAlgorithm
from .libraries import private_base, qgis_proxy_url
from .running import FeedbackProgress, run_engine

ACTION_OPTIONS = ["Install", "Upgrade", "Remove what the plugin installed"]


class InstallLibrariesAlgorithm(DLToolsAlgorithm):
    ACTION = "ACTION"
    LIBRARY = "LIBRARY"
    INDEX_URL = "INDEX_URL"
    WHEELS = "WHEELS"
    FOLDER = "FOLDER"
    INSTALLED = "INSTALLED"

    HELP_SECTION = "Install Inference Libraries"

    def name(self) -> str:
        return "installlibraries"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Install Inference Libraries")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Installs the libraries the tools run models with into a folder of the plugin's own, for QGIS's Python "
            "(no terminal, no administrator rights): ONNX Runtime for the CPU (needed for .emd/.onnx models), ONNX "
            "Runtime for NVIDIA GPUs, PyTorch + torchvision (TorchScript and arcgis.learn models: a large download) or "
            "Dask (clusters). QGIS's own packages, numpy above all, are never changed. Upgrade brings the newest "
            "versions; Remove deletes everything the plugin installed. A failed or cancelled install leaves the "
            "previous state working. Offline: give a folder of wheel files (pip download on another machine).")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(QgsProcessingParameterEnum(self.ACTION, self.tr("Action"), options=ACTION_OPTIONS,
                                                  defaultValue=0),
                       "Install the chosen libraries, upgrade them to their newest versions, or remove everything "
                       "the plugin installed (libraries that came with QGIS stay).")
        self.add_param(QgsProcessingParameterEnum(
            self.LIBRARY, self.tr("Library"), options=[f"{lib.label}, {lib.size}" for lib in LIBRARIES],
            defaultValue=0),
            "What to install or upgrade (Remove ignores it): " + "; ".join(f"{i}: {lib.label}, {lib.download}"
                                                      for i, lib in enumerate(LIBRARIES)) + ".")
        self.add_param(QgsProcessingParameterString(self.INDEX_URL, self.tr("Package index URL"), defaultValue="",
                                                    optional=True),
                       "A mirror of the Python package index (https://host/simple); empty: pip's own setting "
                       "(https://pypi.org/simple). QGIS's proxy (Settings › Options › Network) is passed to pip.",
                       advanced=True)
        self.add_param(QgsProcessingParameterFile(self.WHEELS, self.tr("Folder of wheel files (offline)"),
                                                  behavior=QgsProcessingParameterFile.Folder, optional=True),
                       "Install without network from wheel files made on a connected machine with the same system "
                       "and Python: python3 -m pip download onnxruntime -d wheels.", advanced=True)
        self.addOutput(QgsProcessingOutputFolder(self.FOLDER, self.tr("Library folder")))
        self.addOutput(QgsProcessingOutputString(self.INSTALLED, self.tr("Installed versions")))

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        action = ACTIONS[self.parameterAsEnum(parameters, self.ACTION, context)]
        chosen = [LIBRARIES[self.parameterAsEnum(parameters, self.LIBRARY, context)]]
        wheels = self.parameterAsFile(parameters, self.WHEELS, context) or ""
        proxy, note = qgis_proxy_url()
        if note:
            feedback.pushInfo(note)
        options = PipOptions(index_url=self.parameterAsString(parameters, self.INDEX_URL, context).strip(),
                             wheels=wheels, proxy=proxy)
        try:
            base = private_base()
        except ValueError as exc:
            raise QgsProcessingException(f"The plugin's library folder is not known: {exc}") from exc
        feedback.pushInfo(f"Library folder: {base}")
        outcome = run_engine(change_libraries, base, action, chosen, options, FeedbackProgress(feedback),
                             imported=set(sys.modules))
        spare.discard()  # a process kept ready for the next run has imported the libraries as they were
        if action != "remove" and outcome.active_now:
            activate(base)
        for name, version in sorted(outcome.versions.items()):
            feedback.pushInfo(f"  {name} {version}")
        installed = {n.lower().replace("_", "-") for n in outcome.versions}
        for lib in chosen if action != "remove" else []:
            if not any(r.split("[")[0].lower() in installed for r in lib.requirements):
                feedback.pushInfo(f"{lib.label}: QGIS's Python already has it, so pip added nothing (Check Inference "
                                  "Libraries says where it is loaded from)")
        if not outcome.active_now:
            feedback.reportError(f"The folder is in use: the change is applied the next time QGIS starts ({base})",
                                 fatalError=False)
        if outcome.restart_needed:
            feedback.reportError("A library this changes is already loaded in this QGIS session: restart QGIS to "
                                 "use the new state", fatalError=False)
        feedback.pushInfo("Removed what the plugin had installed" if action == "remove" else
                          f"Done: {', '.join(outcome.libraries)} in {site_dir(base)}")
        installed = ", ".join(f"{n} {v}" for n, v in sorted(outcome.versions.items()))
        return {self.FOLDER: str(base), self.INSTALLED: installed}

# SPDX-License-Identifier: GPL-2.0-or-later
"""Extract Deep Learning Package: unpack a .dlpk safely and report what it holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
)

from ..core.errors import ModelDefinitionError
from ..core.model.loader import load_model_definition
from ..core.model.packages import check_package_references, extract_package, package_properties
from ..core.progress import SubProgress
from .base import DLToolsAlgorithm
from .running import FeedbackProgress, run_engine


class ExtractPackageAlgorithm(DLToolsAlgorithm):
    INPUT = "INPUT"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    EMD = "EMD"
    MODEL_FILE = "MODEL_FILE"
    FRAMEWORK = "FRAMEWORK"
    MODEL_TYPE = "MODEL_TYPE"
    DESCRIPTION = "DESCRIPTION"
    SUMMARY = "SUMMARY"
    TAGS = "TAGS"

    HELP_SECTION = "Deep learning packages"

    def name(self) -> str:
        return "extractpackage"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Extract Deep Learning Package")

    def tags(self) -> list[str]:
        return self.tr("dlpk,package,unzip,extract,emd,model").split(",")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Unpacks a deep learning package (.dlpk) into a folder and reports its model definition (.emd): framework, "
            "model type, description and tags. Packages are untrusted input: a package with absolute paths, paths "
            "leaving the folder (../), symbolic links or a suspicious compression ratio (zip bomb) is refused and "
            "nothing is written. The folder must be new or empty; the files appear in it only once all are extracted.\n\n"
            "The inference tools read .dlpk files directly, so extracting is only needed to inspect or edit a package.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(
            QgsProcessingParameterFile(self.INPUT, self.tr("Deep learning package"), QgsProcessingParameterFile.File,
                                       fileFilter="Deep learning packages (*.dlpk);;All files (*.*)"),
            "The .dlpk file (a zip archive with an .emd at its root) to extract.")
        self.add_param(
            QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")),
            "Where to extract the package: a new or empty folder (a temporary one if not given).")
        self.addOutput(QgsProcessingOutputFile(self.EMD, self.tr("Model definition (.emd)")))
        self.addOutput(QgsProcessingOutputFile(self.MODEL_FILE, self.tr("Model file")))
        self.addOutput(QgsProcessingOutputString(self.FRAMEWORK, self.tr("Framework")))
        self.addOutput(QgsProcessingOutputString(self.MODEL_TYPE, self.tr("Model type")))
        self.addOutput(QgsProcessingOutputString(self.DESCRIPTION, self.tr("Description")))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, self.tr("Summary")))
        self.addOutput(QgsProcessingOutputString(self.TAGS, self.tr("Tags")))

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        package = self.parameterAsFile(parameters, self.INPUT, context)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context)
        if not package:
            raise QgsProcessingException(self.tr("No deep learning package given"))
        if not folder:
            raise QgsProcessingException(self.tr("No output folder given"))
        target = Path(folder)
        if target.exists() and not target.is_dir():
            raise QgsProcessingException(f"Output folder '{target}' is a file: choose a folder")
        feedback.pushInfo(f"Extracting {package} to {target}")
        existed = target.exists()
        emd = run_engine(extract_package, package, destination=target,
                         progress=SubProgress(FeedbackProgress(feedback), 0, 80))
        feedback.setProgress(80)

        try:
            try:
                data = json.loads(emd.read_text(encoding="utf-8-sig"))
            except (OSError, ValueError) as exc:
                raise QgsProcessingException(
                    f"The package's model definition '{emd.name}' is not valid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise QgsProcessingException(f"The package's model definition '{emd.name}' is not a JSON object")
            # files the package names must be inside it: nothing outside is returned or opened
            run_engine(check_package_references, data, emd, Path(package).name, target)
        except QgsProcessingException:
            _remove_extraction(target, existed)
            raise
        props = package_properties(data)
        model_file = ""
        ref = data.get("ModelFile")
        if isinstance(ref, str) and ref:
            candidate = Path(ref.replace("\\", "/"))
            candidate = candidate if candidate.is_absolute() else (emd.parent / candidate).resolve()
            if candidate.is_file():
                model_file = str(candidate)
            else:
                feedback.reportError(f"The package's ModelFile '{ref}' is not in the package", fatalError=False)
        files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
        feedback.pushInfo(f"Extracted {len(files)} files: {', '.join(files)}")
        feedback.pushInfo(f"Model definition: {emd}")
        for label, key in (("Framework", "framework"), ("Model type", "model_type"), ("Model name", "model_name"),
                           ("Description", "description"), ("Summary", "summary"), ("Tags", "tags")):
            if props[key]:
                feedback.pushInfo(f"{label}: {props[key]}")
        try:
            md = load_model_definition(emd)
        except ModelDefinitionError as exc:
            feedback.reportError(f"This plugin's inference tools cannot run this model: {exc}", fatalError=False)
        else:
            for warning in md.warnings:
                feedback.reportError(warning, fatalError=False)
        feedback.setProgress(100)
        return {
            self.OUTPUT_FOLDER: str(target), self.EMD: str(emd), self.MODEL_FILE: model_file,
            self.FRAMEWORK: props["framework"], self.MODEL_TYPE: props["model_type"],
            self.DESCRIPTION: props["description"], self.SUMMARY: props["summary"], self.TAGS: props["tags"],
        }


def _remove_extraction(target: Path, existed: bool) -> None:
    """Undo a refused extraction: the folder was new or empty before, and is again."""
    if not existed:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)

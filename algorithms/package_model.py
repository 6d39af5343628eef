# SPDX-License-Identifier: GPL-2.0-or-later
"""Create Deep Learning Package: a .dlpk (zip) holding an .emd and every file it needs."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)

from ..core.errors import ModelDefinitionError, PackageError
from ..core.model.ecd import EXTRA_INFO_KEY, emd_data_from_ecd_file
from ..core.model.ecd_writer import emd_data_from_class_info
from ..core.model.emd import definition_from_emd_data
from ..core.model.packages import create_package
from ..core.progress import SubProgress
from .base import DLToolsAlgorithm, check_with_stand_in
from .model_to_ecd import MODEL_FILE_FILTER
from .running import FeedbackProgress, run_engine

#: What makes MODEL_DEFINITION a definition; any other file there is a bare model file.
DEFINITION_SUFFIXES = (".emd", ".ecd", ".json")
MODEL_OR_DEFINITION_FILTER = ("Model definitions and model files (*.emd *.ecd *.json *.onnx *.pt *.pth *.pt2 "
                              "*.torchscript *.pb *.h5 *.model *.dnn);;All files (*.*)")


def split_file_list(values: list[str]) -> list[str]:
    """Paths from a multiple-file parameter; an entry that is no file itself may be ';'-separated paths."""
    out: list[str] = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        if os.path.exists(text) or ";" not in text:
            out.append(text)
        else:
            out.extend(part.strip() for part in text.split(";") if part.strip())
    return out


class PackageModelAlgorithm(DLToolsAlgorithm):
    MODEL_DEFINITION = "MODEL_DEFINITION"
    MODEL_FILE = "MODEL_FILE"
    CLASS_INFO = "CLASS_INFO"
    EXTRA_FILES = "EXTRA_FILES"
    DESCRIPTION = "DESCRIPTION"
    SUMMARY = "SUMMARY"
    TAGS = "TAGS"
    OUTPUT = "OUTPUT"

    HELP_SECTION = "Deep learning packages"

    def name(self) -> str:
        return "packagemodel"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Create Deep Learning Package")

    def tags(self) -> list[str]:
        return self.tr("dlpk,package,emd,zip,share,model").split(",")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Choose the model: its model definition (.emd, or an .ecd from Deep Learning Model To Ecd), or a bare "
            "model file (.onnx, .pt, ...) together with its class info JSON, from which the .emd is built the way "
            "Deep Learning Model To Ecd does it.\n\n"
            "Writes a deep learning package (.dlpk): a zip archive with the Esri model definition (.emd) at its root, "
            "the model file and every other file the .emd refers to (InferenceFunction .py, ModelConfigurationFile, "
            "TorchScript files), plus any extra files. Paths inside the packaged .emd are made relative, so the package "
            "works wherever it is extracted, in this plugin and in ArcGIS Pro. The tool refuses a definition whose "
            "referenced files are missing, so a package is never incomplete. The description, summary and tags are "
            "stored in the .emd under \"QGISPlugin\" (ArcGIS ignores that key) and shown by Extract Deep Learning "
            "Package.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        # One choice in the dialog: MODEL_DEFINITION takes a definition or a model file, CLASS_INFO goes with a
        # model file only. MODEL_FILE (the earlier way to give a model file) stays for scripts and saved models,
        # hidden from the dialog.
        self.add_param(
            QgsProcessingParameterFile(self.MODEL_DEFINITION,
                                       self.tr("Model: its definition (.emd, .ecd) or a model file (.onnx, .pt, …)"),
                                       QgsProcessingParameterFile.File, fileFilter=MODEL_OR_DEFINITION_FILTER),
            "The Esri model definition (.emd) to package; its ModelFile and other referenced files are found relative "
            "to it. An .ecd written by Deep Learning Model To Ecd works too. Or a bare model file (.onnx, TorchScript "
            ".pt ...): then give its class info JSON below.")
        self.add_param(
            QgsProcessingParameterFile(self.CLASS_INFO, self.tr("Class info JSON (only with a model file)"),
                                       QgsProcessingParameterFile.File, optional=True,
                                       fileFilter="JSON files (*.json);;All files (*.*)"),
            "Only with a model file: the \"Esri Extra Info\" class info of Deep Learning Model To Ecd (Classifier, "
            "NumberRasterBands, Classes; ImageHeight/ImageWidth when the model file does not fix them).")
        model_file = QgsProcessingParameterFile(self.MODEL_FILE, self.tr("Model file (scripts: instead of the model)"),
                                                QgsProcessingParameterFile.File, optional=True,
                                                fileFilter=MODEL_FILE_FILTER)
        model_file.setFlags(model_file.flags() | QgsProcessingParameterDefinition.FlagHidden)
        self.add_param(model_file, "For scripts and saved models: a model file given here instead of in "
                                   "MODEL_DEFINITION (with CLASS_INFO). The dialog takes it in the Model field.")
        self.add_param(
            QgsProcessingParameterMultipleLayers(self.EXTRA_FILES, self.tr("Extra files"), QgsProcessing.TypeFile,
                                                 optional=True),
            "More files or folders to include (documentation, sample images, metrics ...); a folder is stored with its "
            "contents under its own name. In the dialog use the '...' button to add files; from qgis_process repeat "
            "--EXTRA_FILES=path; from Python pass a list of paths. An entry holding several paths separated by ';' is "
            "split.")
        self.add_param(
            QgsProcessingParameterString(self.DESCRIPTION, self.tr("Description"), optional=True, multiLine=True),
            "What the model does and how it was trained; shown when the package is extracted.")
        self.add_param(
            QgsProcessingParameterString(self.SUMMARY, self.tr("Summary"), optional=True),
            "A one-line summary of the model.")
        self.add_param(
            QgsProcessingParameterString(self.TAGS, self.tr("Tags"), optional=True),
            "Comma-separated keywords, e.g. 'land cover, sentinel-2'.")
        self.add_param(
            QgsProcessingParameterFileDestination(self.OUTPUT, self.tr("Output deep learning package"),
                                                  fileFilter="Deep learning packages (*.dlpk)"),
            "The .dlpk file to write. It is written under a temporary name and renamed when complete.")

    def checkParameterValues(self, parameters: dict[str, Any], context) -> tuple[bool, str]:  # noqa: N802, ANN001
        """MODEL_DEFINITION may be empty for a script that gives MODEL_FILE (the earlier way); processAlgorithm says
        clearly what is missing when neither is given."""
        return check_with_stand_in(self, self.MODEL_DEFINITION, parameters, context, super().checkParameterValues)

    def _model_emd(self, parameters: dict[str, Any], context, workdir: Path) -> tuple[Path, str]:  # noqa: ANN001
        """The .emd to package (written into ``workdir`` when it comes from an .ecd or class info) and its origin."""
        definition = self.parameterAsFile(parameters, self.MODEL_DEFINITION, context)
        model_file = self.parameterAsFile(parameters, self.MODEL_FILE, context)
        class_info = self.parameterAsFile(parameters, self.CLASS_INFO, context)
        if definition and not model_file and Path(definition).suffix.lower() not in DEFINITION_SUFFIXES:
            definition, model_file = "", definition  # the dialog's Model field holds a bare model file
        if definition:
            if model_file or class_info:
                raise QgsProcessingException(self.tr(
                    "Give either a model definition, or a model file with its class info JSON, not both: the model "
                    "definition already names its model file"))
            path = Path(definition)
            if not path.is_file():
                raise QgsProcessingException(f"Model definition '{path}' does not exist")
            suffix = path.suffix.lower()
            if suffix in (".emd", ".json"):
                try:
                    peek = json.loads(path.read_text(encoding="utf-8-sig"))
                except (OSError, ValueError):
                    peek = None  # create_package reports it
                if isinstance(peek, dict) and EXTRA_INFO_KEY in peek:
                    raise QgsProcessingException(
                        f"'{path.name}' is a class info JSON, not a model definition: leave the model definition empty "
                        "and give it as the class info JSON, with the model file")
                return path, f"model definition {path.name}"
            if suffix == ".ecd":
                data = run_engine(emd_data_from_ecd_file, path)
                origin = f"classifier definition {path.name}"
            else:
                raise QgsProcessingException(
                    f"Model definition '{path.name}' is not an .emd or .ecd file: a package needs an .emd; to package a "
                    "bare model file, leave the model definition empty and give the model file and its class info JSON")
        else:
            if not model_file or not class_info:
                if model_file:
                    raise QgsProcessingException(
                        f"No class info JSON given: the model file '{Path(model_file).name}' needs one (CLASS_INFO) "
                        "for the package's model definition; or give the model's .emd instead")
                missing = "model file" if class_info else \
                    "model definition (.emd), or a model file with its class info JSON"
                raise QgsProcessingException(f"No {missing} given: the package needs a model definition")
            data = run_engine(emd_data_from_class_info, model_file, class_info)
            origin = f"model file {Path(model_file).name} and class info {Path(class_info).name}"
        emd = workdir / "model.emd"
        emd.write_text(json.dumps(data, indent=4), encoding="utf-8")
        return emd, origin

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output:
            raise QgsProcessingException(self.tr("No output .dlpk file given"))
        extra = split_file_list(self.parameterAsFileList(parameters, self.EXTRA_FILES, context))
        description = self.parameterAsString(parameters, self.DESCRIPTION, context).strip()
        summary = self.parameterAsString(parameters, self.SUMMARY, context).strip()
        tags = self.parameterAsString(parameters, self.TAGS, context).strip()

        with tempfile.TemporaryDirectory(prefix="dltools-package-") as tmp:
            emd, origin = self._model_emd(parameters, context, Path(tmp))
            feedback.pushInfo(f"Packaging {origin}")
            feedback.setProgress(10)
            written = run_engine(create_package, emd, output, extra_files=extra, description=description,
                                 summary=summary, tags=tags, progress=SubProgress(FeedbackProgress(feedback), 10, 90))
            feedback.setProgress(90)
            try:
                data = json.loads(emd.read_text(encoding="utf-8-sig"))
                definition_from_emd_data(data, source=str(emd), origin="emd", base_dir=emd.parent.resolve())
            except (ModelDefinitionError, ValueError) as exc:
                feedback.reportError(
                    f"The package was written, but this plugin's inference tools cannot run its model: {exc}",
                    fatalError=False)
        try:
            with zipfile.ZipFile(written) as zf:
                infos = zf.infolist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise QgsProcessingException(str(PackageError(f"The package '{written}' cannot be read back: {exc}"))) from exc
        feedback.pushInfo(f"Wrote {written} ({written.stat().st_size} bytes) with {len(infos)} files:")
        for info in infos:
            feedback.pushInfo(f"  {info.filename} ({info.file_size} bytes)")
        feedback.setProgress(100)
        return {self.OUTPUT: str(written)}

# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model: an arcgis.learn family trained on a training-data folder, written as a model folder
that this plugin's tools and ArcGIS Pro both run (the engine: ``core/tools/train``)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.tools.train.loop import TrainSettings
from ..core.tools.train.pipeline import TrainRequest, train_model
from .base import DLToolsAlgorithm
from .running import FeedbackProgress, run_engine

#: MODEL_TYPE's options, by index (public: saved models and scripts use the index); new families go at the end.
MODEL_TYPES = ["UnetClassifier", "DeepLab", "FeatureClassifier", "FasterRCNN", "MaskRCNN", "SingleShotDetector",
               "RetinaNet"]
BACKBONES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


class TrainModelAlgorithm(DLToolsAlgorithm):
    INPUT_FOLDER = "INPUT_FOLDER"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    MODEL_TYPE = "MODEL_TYPE"
    BACKBONE = "BACKBONE"
    MAX_EPOCHS = "MAX_EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    VALIDATION_PERCENT = "VALIDATION_PERCENT"
    STOP_TRAINING = "STOP_TRAINING"
    FREEZE = "FREEZE"
    AUGMENTATION = "AUGMENTATION"
    PRETRAINED_MODEL = "PRETRAINED_MODEL"
    PRETRAINED_BACKBONE = "PRETRAINED_BACKBONE"
    DOWNLOAD_BACKBONE = "DOWNLOAD_BACKBONE"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_PACKAGE = "OUTPUT_PACKAGE"

    HELP_SECTION = "Train Deep Learning Model"

    def name(self) -> str:
        return "trainmodel"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Train Deep Learning Model")

    def tags(self) -> list[str]:
        return self.tr("train,training,arcgis.learn,unet,emd,dlpk,model").split(",")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Trains an arcgis.learn model (UnetClassifier or DeepLab on Classified_Tiles chips, FeatureClassifier on "
            "Labeled_Tiles chips, FasterRCNN, SingleShotDetector or RetinaNet on PASCAL_VOC_rectangles chips, MaskRCNN on "
            "RCNN_Masks chips) "
            "on a training-data folder written by Export Training Data For Deep Learning (this "
            "plugin's or ArcGIS's), and writes the folder arcgis.learn writes: <name>.pth with arcgis.learn's own "
            "weight names, <name>.emd, model_metrics.html, ModelCharacteristics/loss_graph.png and show_results.png, "
            "training_validation_loss.json, <name>.dlpk and, for FasterRCNN, the ModelConfiguration.py ArcGIS Pro builds "
            "its network from. Classify Pixels / Classify Objects run it, and so does "
            "ArcGIS Pro (the detectors: Detect Objects).\n\nAfter each epoch the log shows the training and validation "
            "loss and the validation metrics (detectors: average precision per class and mAP at IoU 0.5), and a "
            "checkpoint is written to OUTPUT_FOLDER/checkpoints: running again with the same settings "
            "and folder resumes from it. The model kept is the epoch with the lowest validation loss; a cancelled "
            "training still writes it from the best finished epoch.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802 - QGIS API
        self.add_param(
            QgsProcessingParameterFile(self.INPUT_FOLDER, self.tr("Input training data (folder)"),
                                       QgsProcessingParameterFile.Folder),
            "The training-data folder: map.txt, images/, labels/, esri_model_definition.emd and "
            "esri_accumulated_stats.json (its MetaDataMode: Classified_Tiles, Labeled_Tiles, PASCAL_VOC_rectangles or "
            "RCNN_Masks).")
        self.add_param(
            QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output model (folder)")),
            "The model folder; the model files are named after it (<folder>/<folder>.emd). Its checkpoints/ "
            "sub-folder lets a stopped training resume.")
        self.add_param(
            QgsProcessingParameterEnum(self.MODEL_TYPE, self.tr("Model type"), options=MODEL_TYPES, defaultValue=0),
            "UnetClassifier or DeepLab (pixel classification, Classified_Tiles), FeatureClassifier (object "
            "classification, Labeled_Tiles), FasterRCNN (object detection, PASCAL_VOC_rectangles), MaskRCNN (instance "
            "segmentation, RCNN_Masks).")
        self.add_param(
            QgsProcessingParameterEnum(self.BACKBONE, self.tr("Backbone model"), options=BACKBONES, defaultValue=1),
            "The ResNet the network is built on: UnetClassifier and FeatureClassifier take resnet18/34/50, DeepLab "
            "resnet101, FasterRCNN and MaskRCNN resnet18/34 (one feature map, the fastest) and resnet50/101/152 (FPN).")
        self.add_param(
            QgsProcessingParameterNumber(self.MAX_EPOCHS, self.tr("Max epochs"), QgsProcessingParameterNumber.Integer,
                                         defaultValue=20, minValue=1),
            "How many times every training chip is seen, at most.")
        self.add_param(
            QgsProcessingParameterNumber(self.BATCH_SIZE, self.tr("Batch size"), QgsProcessingParameterNumber.Integer,
                                         defaultValue=8, minValue=1),
            "Chips per training step; memory grows with it (chips are read from the folder one batch at a time).")
        self.add_param(
            QgsProcessingParameterNumber(self.LEARNING_RATE, self.tr("Learning rate"),
                                         QgsProcessingParameterNumber.Double, optional=True, minValue=0.0),
            "The highest rate of the one-cycle schedule. Empty: found automatically by trying growing rates on a few "
            "batches (the log says which).")
        self.add_param(
            QgsProcessingParameterNumber(self.VALIDATION_PERCENT, self.tr("Validation %"),
                                         QgsProcessingParameterNumber.Double, defaultValue=10.0, minValue=0.0,
                                         maxValue=90.0),
            "The share of the chips kept aside to validate (at least one chip).")
        self.add_param(
            QgsProcessingParameterBoolean(self.STOP_TRAINING, self.tr("Stop when model stops improving"),
                                          defaultValue=True),
            "Stop when the validation loss has not improved for 5 epochs.")
        self.add_param(
            QgsProcessingParameterBoolean(self.FREEZE, self.tr("Freeze model"), defaultValue=False),
            "Train the head only: the backbone keeps the weights of PRETRAINED_BACKBONE or PRETRAINED_MODEL.")
        self.add_param(
            QgsProcessingParameterBoolean(self.AUGMENTATION, self.tr("Data augmentation"), defaultValue=True),
            "Turn each training chip by a random multiple of 90 degrees and mirror it at random.")
        self.add_param(
            QgsProcessingParameterFile(self.PRETRAINED_MODEL, self.tr("Pre-trained model"), optional=True,
                                       fileFilter="Models (*.emd *.dlpk);;All files (*)"),
            "An .emd or .dlpk of the same model type and backbone to fine-tune (the last layers start afresh when "
            "the classes differ).", advanced=True)
        self.add_param(
            QgsProcessingParameterFile(self.PRETRAINED_BACKBONE, self.tr("Pre-trained backbone weights"),
                                       optional=True, fileFilter="PyTorch weights (*.pth *.pt);;All files (*)"),
            "A torchvision ResNet state_dict (e.g. resnet34-b627a593.pth, saved on a machine that is online) for "
            "the backbone. Empty: DOWNLOAD_BACKBONE, else random weights (the log says so).", advanced=True)
        self.add_param(
            QgsProcessingParameterBoolean(self.DOWNLOAD_BACKBONE, self.tr("Download ImageNet backbone weights"),
                                          defaultValue=False),
            "Without PRETRAINED_BACKBONE: torchvision's ImageNet weights for the backbone, from torchvision's cache "
            "or downloaded from download.pytorch.org (needs network once).", advanced=True)
        self.add_param(
            QgsProcessingParameterString(self.ARGUMENTS, self.tr("Model arguments"), defaultValue="", optional=True),
            "'name value' pairs separated by ';': seed (random seed, default 0), lr_finder_steps (batches tried "
            "when the learning rate is found, default 30), threads (CPU threads, default all cores); UnetClassifier "
            "and DeepLab also class_balancing (true/false), focal_loss (true/false) and ignore_classes (class "
            "values, e.g. [3, 4]); FasterRCNN and MaskRCNN box_batch_size_per_image (regions the box head learns "
            "from per chip, default 512) and box_positive_fraction (default 0.25); SingleShotDetector grids (e.g. "
            "[4, 2]), zooms ([1.0]), ratios ([[1.0, 1.0]]), focal_loss and location_loss_factor; RetinaNet scales "
            "([1, 0.79, 0.63]) and ratios ([0.5, 1, 2]); detectors monitor (valid_loss, the default, or "
            "average_precision: which epoch is kept).", advanced=True)
        self.add_device_parameters()
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_MODEL, self.tr("Model definition (.emd)")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_PACKAGE, self.tr("Deep learning package (.dlpk)")))

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        rate = parameters.get(self.LEARNING_RATE)
        settings = TrainSettings(
            model_type=MODEL_TYPES[self.parameterAsEnum(parameters, self.MODEL_TYPE, context)],
            backbone=BACKBONES[self.parameterAsEnum(parameters, self.BACKBONE, context)],
            max_epochs=self.parameterAsInt(parameters, self.MAX_EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context)
            if rate not in (None, "") else None,
            validation_percent=self.parameterAsDouble(parameters, self.VALIDATION_PERCENT, context),
            stop_training=self.parameterAsBoolean(parameters, self.STOP_TRAINING, context),
            freeze=self.parameterAsBoolean(parameters, self.FREEZE, context),
            augmentation=self.parameterAsBoolean(parameters, self.AUGMENTATION, context))
        request = TrainRequest(
            input_folder=self.parameterAsFile(parameters, self.INPUT_FOLDER, context),
            output_folder=self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context),
            settings=settings,
            pretrained_model=self.parameterAsFile(parameters, self.PRETRAINED_MODEL, context) or "",
            pretrained_backbone=self.parameterAsFile(parameters, self.PRETRAINED_BACKBONE, context) or "",
            download_backbone=self.parameterAsBoolean(parameters, self.DOWNLOAD_BACKBONE, context),
            arguments=self.parameterAsString(parameters, self.ARGUMENTS, context) or "",
            device=self.device_request(parameters, context))
        result = run_engine(train_model, request, FeedbackProgress(feedback))
        return {self.OUTPUT_FOLDER: str(result.folder), self.OUTPUT_MODEL: str(result.files["emd"]),
                self.OUTPUT_PACKAGE: str(result.files["dlpk"])}

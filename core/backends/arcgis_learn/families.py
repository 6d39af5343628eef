# SPDX-License-Identifier: GPL-2.0-or-later
"""Which network an arcgis.learn ``.emd`` describes, chosen by ``ModelName`` and backbone.

Pure data (no torch): the model definition loader calls :func:`resolve_family` so that a
model the plugin cannot rebuild is refused when it is opened, with the model's name, the
reason and what would work instead, before any weights are read.  The facts (key layouts,
defaults) are in ``../shared/reference/arcgis-learn-models.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import ModelDefinitionError
from ...flags import is_true

#: What to do instead, for every refusal.
EXPORT_HINT = ("export the model from arcgis.learn to TorchScript or ONNX (e.g. torch.jit.save of the trained "
               "network) and write a model definition for that file")

#: task -> the tool that runs it
TOOL_OF_TASK = {
    "pixels": "Classify Pixels Using Deep Learning",
    "objects": "Classify Objects Using Deep Learning",
    "detection": "Detect Objects Using Deep Learning",
}


@dataclass(frozen=True)
class Family:
    """One arcgis.learn architecture the plugin rebuilds, with the defaults arcgis.learn uses."""

    model_name: str  # the .emd ModelName, e.g. "MaskRCNN"
    backbone: str  # "resnet50"
    task: str  # "pixels", "objects" or "detection"
    title: str  # "arcgis.learn MaskRCNN, resnet50 FPN, rebuilt with torchvision"
    num_classes: int  # len(Classes): background excluded
    in_channels: int  # len(ExtractBands), 3 by default
    needs_torchvision: bool
    #: "rcnn": the network gets x/255 (or the NormalizationStats min-max scaling) and normalises itself
    #: (torchvision's transform); "arcgis": ImageNet or NormalizationStats as for every arcgis.learn model
    input_rule: str = "arcgis"
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def tool(self) -> str:
        return TOOL_OF_TASK[self.task]

    def defaults_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.defaults.items())


#: R-CNN backbones: resnet18/34 without FPN (one feature map), resnet50/101/152 with FPN
_RCNN_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

#: ModelName -> (task, allowed backbones, default backbone, how the title names the backbone)
_SUPPORTED: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "MaskRCNN": ("detection", _RCNN_BACKBONES, "resnet50", "{b}{fpn}, rebuilt with torchvision"),
    "FasterRCNN": ("detection", _RCNN_BACKBONES, "resnet50", "{b}{fpn}, rebuilt with torchvision"),
    "DeepLab": ("pixels", ("resnet101",), "resnet101", "{b} DeepLabV3, rebuilt with torchvision"),
    "UnetClassifier": ("pixels", ("resnet18", "resnet34", "resnet50"), "resnet34",
                       "{b} fastai-v1 DynamicUnet, rebuilt with torchvision and the plugin's fastai-v1 modules"),
    "FeatureClassifier": ("objects", ("resnet18", "resnet34", "resnet50"), "resnet34",
                          "{b} with a fastai-v1 head, rebuilt with torchvision and the plugin's fastai-v1 modules"),
    "SingleShotDetector": ("detection", ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"), "resnet34",
                           "{b} with an SSD head, rebuilt with torchvision and the plugin's fastai-v1 modules"),
    "RetinaNet": ("detection", ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"), "resnet50",
                  "{b} with a fastai-v1 RetinaNet FPN, rebuilt with torchvision and the plugin's fastai-v1 modules"),
}

#: ModelName -> why it is refused (what would work is appended)
_REFUSED: dict[str, str] = {
    "MMDetection": "it is built by MMDetection, which needs mmcv and the package's own configuration code",
    "MMSegmentation": "it is built by MMSegmentation, which needs mmcv and the package's own configuration code",
    "ChangeDetector": "its STANet network (a Siamese ResNet18 with attention) is not rebuilt by this plugin yet",
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "MaskRCNN": {"threshold": 0.9, "nms_overlap": 0.5, "mask_threshold": 0.5, "batch_size": 4,
                 "exclude_pad_detections": True},
    "FasterRCNN": {"threshold": 0.5, "nms_overlap": 0.1, "batch_size": 4, "exclude_pad_detections": True},
    "SingleShotDetector": {"threshold": 0.5, "nms_overlap": 0.1, "batch_size": 4, "exclude_pad_detections": True},
    "RetinaNet": {"threshold": 0.5, "nms_overlap": 0.1, "batch_size": 4, "exclude_pad_detections": True},
    "DeepLab": {"predict_background": True, "batch_size": 4},
    "UnetClassifier": {"predict_background": True, "batch_size": 4},
    "FeatureClassifier": {"batch_size": 4},
}

#: task -> the ModelType values arcgis.learn writes for it (first: the usual one)
_MODEL_TYPES = {
    "pixels": ("ImageClassification",),
    "objects": ("ObjectClassification",),
    "detection": ("ObjectDetection", "InstanceDetection", "ObjectionDetection"),
}
_TASK_WORDS = {"pixels": "a pixel classifier", "objects": "an object classifier", "detection": "an object detector"}

_VIT_WORDS = ("vit", "swin", "convnext", "efficientnet", "mobilenet", "densenet", "vgg", "mit_", "segformer",
              "hrnet", "xception", "inception", "resnext", "wide_resnet")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def supported_backbones(name: str) -> tuple[str, ...]:
    """The backbones this plugin rebuilds for the arcgis.learn family ``name`` (empty when it rebuilds none)."""
    return _SUPPORTED[name][1] if name in _SUPPORTED else ()


def backbone_of(data: dict[str, Any]) -> str | None:
    """``ModelParameters.backbone`` (SSD also writes a top-level ``backbone``), as written."""
    params = data.get("ModelParameters") if isinstance(data.get("ModelParameters"), dict) else {}
    for value in (params.get("backbone"), data.get("backbone"), data.get("Backbone")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _plain_backbone(name: str) -> str:
    low = name.strip().lower()
    for prefix in ("torchvision.models.", "models.", "torchvision."):
        if low.startswith(prefix):
            low = low[len(prefix):]
    return low


def model_parameters(data: dict[str, Any]) -> dict[str, Any]:
    return data.get("ModelParameters") if isinstance(data.get("ModelParameters"), dict) else {}


def _configuration_name(data: dict[str, Any]) -> str:
    config = data.get("ModelConfiguration")
    return _text(config.get("Name") if isinstance(config, dict) else config)


def family_name(data: dict[str, Any]) -> str:
    """The arcgis.learn class that built the model: ``ModelName``, or (older .emd files, whose ModelName is the
    user's own) a ``ModelConfiguration`` that names a class."""
    name = _text(data.get("ModelName"))
    config = _configuration_name(data)
    if name not in _SUPPORTED and name not in _REFUSED and config in _SUPPORTED:
        return config
    return name


def names_a_family(data: dict[str, Any]) -> bool:
    """Whether the definition names an arcgis.learn class (supported or refused)."""
    name = family_name(data)
    return name in _SUPPORTED or name in _REFUSED


def resolve_family(data: dict[str, Any]) -> Family:
    """The family an arcgis.learn ``.emd`` describes, or a :class:`ModelDefinitionError` saying why none fits."""
    name = family_name(data)
    if not name:
        raise ModelDefinitionError(
            "The model definition holds arcgis.learn weights (.pth) but no ModelName, so the network to rebuild is "
            f"unknown; add the ModelName arcgis.learn wrote (e.g. \"MaskRCNN\"), or {EXPORT_HINT}")
    supported = ", ".join(_SUPPORTED)
    if name in _REFUSED:
        raise ModelDefinitionError(f"arcgis.learn model '{name}' cannot be run: {_REFUSED[name]}. To run it, "
                                   f"{EXPORT_HINT}. Rebuilt families: {supported}")
    if name not in _SUPPORTED:
        raise ModelDefinitionError(
            f"arcgis.learn model '{name}' is not one of the families this plugin rebuilds ({supported}), and its "
            f"network would need the arcgis.learn code or the package's own Python, which the plugin never runs. "
            f"To run it, {EXPORT_HINT}")
    task, allowed, default, title_pattern = _SUPPORTED[name]
    params = model_parameters(data)
    written = backbone_of(data)
    backbone = _plain_backbone(written) if written else default
    if backbone.startswith(("timm:", "timm.", "hf:", "hf-hub:", "hf_hub:")) or ":" in backbone or \
            any(w in backbone for w in _VIT_WORDS):
        raise ModelDefinitionError(
            f"arcgis.learn {name} with backbone '{written}' cannot be run: timm, Hugging Face and transformer (ViT) "
            f"backbones are not rebuilt by this plugin (only torchvision ResNets: {', '.join(allowed)}). To run it, "
            f"{EXPORT_HINT}")
    if as_flag(params.get("pointrend")) or as_flag(data.get("pointrend")):
        raise ModelDefinitionError(
            f"arcgis.learn {name} with pointrend true cannot be run: the PointRend mask head is not rebuilt by this "
            f"plugin (MaskRCNN without pointrend is). To run it, {EXPORT_HINT}")
    if backbone not in allowed:
        raise ModelDefinitionError(
            f"arcgis.learn {name} with backbone '{written}' cannot be run: this plugin rebuilds {name} on "
            f"{', '.join(allowed)}. To run it, {EXPORT_HINT}")
    model_type = data.get("ModelType")
    if isinstance(model_type, str) and model_type not in _MODEL_TYPES[task]:
        raise ModelDefinitionError(
            f"arcgis.learn {name} is {_TASK_WORDS[task]}, but the model definition says ModelType '{model_type}': "
            f"set ModelType to {' or '.join(_MODEL_TYPES[task][:2])} (arcgis.learn writes "
            f"{_MODEL_TYPES[task][0]}) and run it with {TOOL_OF_TASK[task]}")
    classes = data.get("Classes") if isinstance(data.get("Classes"), list) else []
    if not classes:
        raise ModelDefinitionError(f"arcgis.learn {name}: the model definition lists no Classes, so the size of the "
                                   "network's last layer is unknown; add the Classes arcgis.learn wrote")
    bands = data.get("ExtractBands")
    in_channels = len(bands) if isinstance(bands, list) and bands else 3
    defaults = dict(_DEFAULTS[name])
    if data.get("Threshold") is not None and task == "detection":
        defaults["threshold"] = data["Threshold"]
    return Family(
        model_name=name, backbone=backbone, task=task,
        title=f"arcgis.learn {name}, " + title_pattern.format(
            b=backbone, fpn=" (one feature map, no FPN)" if backbone in ("resnet18", "resnet34") else " FPN"),
        num_classes=len(classes), in_channels=in_channels,
        needs_torchvision=True,
        input_rule="rcnn" if name in ("MaskRCNN", "FasterRCNN") else "arcgis",
        defaults=defaults,
    )


def as_flag(value: Any) -> bool:
    """A flag in an arcgis.learn definition (``pointrend``): true only when it says so."""
    return is_true(value) if isinstance(value, str) else bool(value)


def describe_family(family: Family) -> str:
    """One line for Describe Model and the run log."""
    background = "" if family.model_name in ("FeatureClassifier", "RetinaNet") else " + background"
    return (f"{family.title}; {family.num_classes} classes{background}, {family.in_channels} bands; runs in "
            f"{family.tool}; defaults: {family.defaults_text()}")

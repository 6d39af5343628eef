# SPDX-License-Identifier: GPL-2.0-or-later
"""Reference arcgis.learn networks, built in the tests, and packages written the way arcgis.learn writes them.

The torchvision families (MaskRCNN, FasterRCNN, DeepLab) and FeatureClassifier are rebuilt here directly
from torchvision, independently of the plugin's code, following arcgis-learn-models.md; the fastai-v1
DynamicUnet, SSD and RetinaNet references use the plugin's own fastai-v1 modules (their key layout is
checked against the documented fastai layout in the tests).  Weights are random from a seed, batch-norm
statistics included, so that a layer loaded in the wrong place changes the output.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255.0
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255.0

#: An ArcGIS*.py raster function that proves it was imported by writing a marker file next to itself
DUMMY_INFERENCE = '''# needs arcpy; the plugin must never import this
from pathlib import Path
Path(__file__).with_name("IMPORTED_ARCGIS_PY").write_text("imported")
import arcpy  # noqa
'''


def randomise(module, seed: int):  # noqa: ANN001, ANN201
    """Seeded random weights and batch-norm statistics (eval mode)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) / max(fan, 1) ** 0.5)
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return module.eval()


def classes(n: int, values: list[int] | None = None) -> list[dict[str, Any]]:
    values = values or list(range(1, n + 1))
    palette = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]]
    return [{"Value": v, "Name": f"class{v}", "Color": palette[i % len(palette)]} for i, v in enumerate(values)]


def arcgis_emd(model_name: str, backbone: str, n_classes: int, chip: int, *, model_type: str,
               config: str, values: list[int] | None = None, bands: list[int] | None = None,
               **extra: Any) -> dict[str, Any]:
    """The keys arcgis.learn writes (arcgis-learn-models.md, ".emd fields written by arcgis.learn")."""
    emd = {
        "Framework": "arcgis.learn.models._inferencing",
        "ModelConfiguration": config,
        "InferenceFunction": "ArcGISImageClassifier.py" if model_type == "ImageClassification" else
        ("ArcGISObjectClassifier.py" if model_type == "ObjectClassification" else "ArcGISObjectDetector.py"),
        "ModelType": model_type,
        "ModelName": model_name,
        "ModelFile": f"{model_name}.pth",
        "ModelFormat": "NCHW",
        "ImageHeight": chip,
        "ImageWidth": chip,
        "ExtractBands": bands if bands is not None else [0, 1, 2],
        "Classes": classes(n_classes, values),
        "ModelParameters": {"backbone": backbone, "pointrend": False} if model_name == "MaskRCNN" else
        {"backbone": backbone},
        "IsImageNetNormalization": True,
        "SupportsVariableTileSize": False,
        "ArcGISLearnVersion": "2.4.4",
        "ImageSpaceUsed": "MAP_SPACE",
    }
    emd.update(extra)
    return emd


def write_package(folder: Path, emd: dict[str, Any], state: dict, *, form: str = "bare",
                  extra_files: dict[str, str] | None = None, name: str | None = None) -> Path:
    """The model folder (.emd, .pth, ArcGIS*.py, extras) zipped as ``<name>.dlpk``; returns the .dlpk."""
    import torch

    name = name or emd["ModelName"]
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = folder / f"{name}_model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / f"{name}.emd").write_text(json.dumps(emd, indent=4), encoding="utf-8")
    torch.save(state if form == "bare" else {"model": state, "opt": {"state": {}, "param_groups": []}},
               model_dir / emd["ModelFile"])
    (model_dir / emd["InferenceFunction"]).write_text(DUMMY_INFERENCE, encoding="utf-8")
    for rel, text in (extra_files or {}).items():
        (model_dir / rel).write_text(text, encoding="utf-8")
    dlpk = folder / f"{name}.dlpk"
    with zipfile.ZipFile(dlpk, "w") as zf:
        for f in sorted(model_dir.iterdir()):
            zf.write(f, f.name)
    return dlpk


def decoded_detections(backend, x: np.ndarray, threshold: float, nms_overlap: float = 1.0) -> list[dict]:  # noqa: ANN001
    """SSD/RetinaNet: the head's raw per-anchor outputs through the shared detection decoder (what Detect Objects
    runs), as torchvision-style dicts (labels 1-based) for comparing with an independent decoding."""
    from dltools.core.detection.decode import anchor_outputs, decode_anchors

    raw = backend.detect(x)
    assert anchor_outputs(raw) is not None, "the head did not return raw anchor outputs"
    out = []
    for d in raw:
        det = decode_anchors(d, threshold, nms_overlap)
        out.append({"boxes": det.boxes, "scores": det.scores, "labels": det.classes + 1})
    return out


def imagenet_normalise(chips: np.ndarray) -> np.ndarray:
    """arcgis.learn's RGB rule on 0-255 chips [B, 3, H, W]."""
    return ((chips.astype(np.float64) - IMAGENET_MEAN[None, :, None, None]) /
            IMAGENET_STD[None, :, None, None]).astype(np.float32)


# ------------------------------------------------------------------------------------------ references
def reference_unet(backbone: str, n_classes: int, chip: int, in_channels: int = 3, seed: int = 0):  # noqa: ANN201
    import torchvision
    from dltools.core.backends.arcgis_learn.fastai_layers import create_body
    from dltools.core.backends.arcgis_learn.unet import DynamicUnet

    return randomise(DynamicUnet(create_body(torchvision, backbone, in_channels), n_classes + 1, (chip, chip),
                                 in_channels), seed)


def reference_deeplab(n_classes: int, seed: int = 0):  # noqa: ANN201
    import torchvision
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead
    from torchvision.models.segmentation.fcn import FCNHead

    model = torchvision.models.segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21,
                                                                aux_loss=True)
    model.classifier = DeepLabHead(2048, n_classes + 1)
    model.aux_classifier = FCNHead(1024, n_classes + 1)
    return randomise(model, seed)


def reference_feature_classifier(backbone: str, n_classes: int, seed: int = 0):  # noqa: ANN201
    import torch
    import torchvision
    from torch import nn

    class ConcatPool(nn.Module):
        def forward(self, x):  # noqa: ANN001, ANN202
            return torch.cat([torch.amax(x, dim=(2, 3), keepdim=True), x.mean(dim=(2, 3), keepdim=True)], 1)

    class Flat(nn.Module):
        def forward(self, x):  # noqa: ANN001, ANN202
            return x.flatten(1)

    resnet = getattr(torchvision.models, backbone)(weights=None)
    nf = 2 * resnet.fc.in_features
    body = nn.Sequential(*list(resnet.children())[:-2])
    head = nn.Sequential(ConcatPool(), Flat(), nn.BatchNorm1d(nf), nn.Dropout(0.25), nn.Linear(nf, 512),
                         nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, n_classes))
    return randomise(nn.Sequential(body, head), seed)


def reference_rcnn(name: str, backbone: str, n_classes: int, chip: int, seed: int = 0, in_channels: int = 3,
                   mean: list[float] | None = None, std: list[float] | None = None):  # noqa: ANN201
    import torch
    import torchvision
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    det = torchvision.models.detection
    kw: dict[str, Any] = {"min_size": int(1.5 * chip), "max_size": 2 * chip}
    if mean is not None:
        kw.update(image_mean=mean, image_std=std)
    if backbone == "resnet50":
        factory = det.maskrcnn_resnet50_fpn if name == "MaskRCNN" else det.fasterrcnn_resnet50_fpn
        model = factory(weights=None, weights_backbone=None, **kw)
    elif backbone in ("resnet18", "resnet34"):
        model = _small_rcnn(name, backbone, in_channels, kw)
    else:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        model = (det.MaskRCNN if name == "MaskRCNN" else det.FasterRCNN)(
            resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=3), 91, **kw)
    model.roi_heads.box_predictor = FastRCNNPredictor(1024, n_classes + 1)
    if name == "MaskRCNN":
        model.roi_heads.mask_predictor = MaskRCNNPredictor(256, 256, n_classes + 1)
    if in_channels != 3 and hasattr(model.backbone, "body"):
        model.backbone.body.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return randomise(model, seed)


def _unchecked_grid_anchors(generator, grid_sizes, strides):  # noqa: ANN001, ANN202
    """torchvision's ``AnchorGenerator.grid_anchors`` without its check that there are as many anchor levels as
    feature maps: the patch arcgis.learn applies to its resnet18/34 R-CNNs (zip keeps the first level's anchors)."""
    import torch

    out = []
    for (rows, cols), (step_y, step_x), base in zip(grid_sizes, strides, generator.cell_anchors):
        ys = torch.arange(0, rows, dtype=torch.float32, device=base.device) * step_y
        xs = torch.arange(0, cols, dtype=torch.float32, device=base.device) * step_x
        shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack((shift_x.reshape(-1), shift_y.reshape(-1), shift_x.reshape(-1), shift_y.reshape(-1)), 1)
        out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
    return out


def _small_rcnn(name: str, backbone: str, in_channels: int, kw: dict[str, Any]):  # noqa: ANN202
    """arcgis.learn's resnet18/34 R-CNN: fastai's ``create_body`` (the ResNet's children but pooling and fc, in a
    Sequential) with ``out_channels`` 512, torchvision's default (five-level) anchor generator with the patched
    ``grid_anchors``."""
    import types

    import torch
    import torchvision

    resnet = getattr(torchvision.models, backbone)(weights=None)
    if in_channels != 3:
        resnet.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    body = torch.nn.Sequential(*list(resnet.children())[:-2])
    body.out_channels = 512
    det = torchvision.models.detection
    model = (det.MaskRCNN if name == "MaskRCNN" else det.FasterRCNN)(body, 91, **kw)
    generator = model.rpn.anchor_generator
    generator.grid_anchors = types.MethodType(_unchecked_grid_anchors, generator)
    return model


def reference_ssd(backbone: str, n_classes: int, chip: int, emd: dict, seed: int = 0):  # noqa: ANN201
    import torchvision
    from dltools.core.backends.arcgis_learn.ssd import build_ssd

    return randomise(build_ssd(torchvision, backbone, n_classes, chip, 3, emd), seed)


def reference_retinanet(backbone: str, n_classes: int, emd: dict, seed: int = 0):  # noqa: ANN201
    import torchvision
    from dltools.core.backends.arcgis_learn.retinanet import build_retinanet

    return randomise(build_retinanet(torchvision, backbone, n_classes, 3, emd), seed)

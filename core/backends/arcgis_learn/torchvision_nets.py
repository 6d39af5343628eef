# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn's torchvision networks: MaskRCNN, FasterRCNN (ResNet FPN) and DeepLab (DeepLabV3 ResNet101).

Built exactly as arcgis.learn builds them (see arcgis-learn-models.md), never with pretrained
weights (``weights=None, weights_backbone=None``: nothing is downloaded):

* MaskRCNN / FasterRCNN resnet50: torchvision's ``*_resnet50_fpn`` with ``min_size`` 1.5 x chip and
  ``max_size`` 2 x chip, the box (and mask) predictor replaced for N + 1 classes;
  resnet101/152: ``resnet_fpn_backbone`` + ``MaskRCNN``/``FasterRCNN``, same layout;
  resnet18/34: no FPN: fastai's ``create_body`` (keys ``backbone.0`` .. ``backbone.7``, 512 channels out at
  stride 32) + ``MaskRCNN``/``FasterRCNN``.  arcgis.learn keeps torchvision's five-level anchor generator and
  patches its ``grid_anchors`` so that the one feature map takes the first level's anchors only (32 pixels, ratios
  0.5, 1, 2); :func:`single_map_anchors` builds those very anchors without patching anything.
* DeepLab: ``deeplabv3_resnet101(num_classes=21, aux_loss=True)`` with ``DeepLabHead(2048, N+1)``
  and ``FCNHead(1024, N+1)``.

Multispectral models change only the first convolution's input channels; R-CNN models also
take the transform's mean/std from ``NormalizationStats.scaled_mean/std_values``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .fastai_layers import first_conv_for

#: the anchors of a one-map (non-FPN) R-CNN: what arcgis.learn's patched ``grid_anchors`` keeps of torchvision's
#: default generator (its first level)
SINGLE_MAP_SIZES, SINGLE_MAP_RATIOS = (32,), (0.5, 1.0, 2.0)


def single_map_anchors():  # noqa: ANN201 - torchvision's AnchorGenerator
    """The anchor generator of arcgis.learn's resnet18/34 R-CNNs: 3 anchors of 32 pixels per cell of the one map."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    return AnchorGenerator(sizes=(SINGLE_MAP_SIZES,), aspect_ratios=(SINGLE_MAP_RATIOS,))


def build_rcnn(torchvision, name: str, backbone: str, num_classes: int, chip: int, in_channels: int,  # noqa: ANN001
               image_mean: list[float] | None = None, image_std: list[float] | None = None) -> nn.Module:
    """MaskRCNN or FasterRCNN for ``num_classes`` classes (+ background), in eval mode."""
    det = torchvision.models.detection
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    size: dict[str, Any] = {"min_size": int(1.5 * chip), "max_size": int(2 * chip)}
    if image_mean is not None and image_std is not None:
        size.update(image_mean=list(image_mean), image_std=list(image_std))
    cls = det.MaskRCNN if name == "MaskRCNN" else det.FasterRCNN
    if backbone == "resnet50":
        factory = det.maskrcnn_resnet50_fpn if name == "MaskRCNN" else det.fasterrcnn_resnet50_fpn
        model = factory(weights=None, weights_backbone=None, **size)
    elif backbone in ("resnet18", "resnet34"):
        from .fastai_layers import body_channels, create_body

        small = create_body(torchvision, backbone, in_channels)
        small.out_channels = body_channels(backbone)
        model = cls(small, 91, rpn_anchor_generator=single_map_anchors(), **size)
    else:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        body = resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=3)
        model = cls(body, 91, **size)
    model.roi_heads.box_predictor = FastRCNNPredictor(1024, num_classes + 1)
    if name == "MaskRCNN":
        model.roi_heads.mask_predictor = MaskRCNNPredictor(256, 256, num_classes + 1)
    body = getattr(model.backbone, "body", None)
    if body is not None:  # FPN bodies (create_body took the bands already)
        body.conv1 = first_conv_for(body.conv1, in_channels)
    return model.eval()


def build_deeplab(torchvision, num_classes: int, in_channels: int) -> nn.Module:  # noqa: ANN001
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead
    from torchvision.models.segmentation.fcn import FCNHead

    model = torchvision.models.segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21,
                                                                aux_loss=True)
    model.classifier = DeepLabHead(2048, num_classes + 1)
    model.aux_classifier = FCNHead(1024, num_classes + 1)
    model.backbone.conv1 = first_conv_for(model.backbone.conv1, in_channels)
    return model.eval()

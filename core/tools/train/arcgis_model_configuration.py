# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``ModelConfiguration.py`` of a FasterRCNN model folder trained by Deep Learning Tools for QGIS.

Why this file exists: arcgis.learn's FasterRCNN is a "model extension".  Its ``.emd`` says ``ModelConfiguration``
``_model_extension_inferencing``, ``ModelConfigurationFile`` ``ModelConfiguration.py`` and
``ModelFileConfigurationClass`` ``MyFasterRCNN``, and ArcGIS Pro's object detector builds the network by importing
that file from the model folder (``ModelExtension.from_model``), creating the class and calling:

* ``get_model(data, backbone, **kwargs)``: the network, before the ``.pth`` is loaded into it (strictly).  ``data``
  carries ``chip_size`` (the ``.emd``'s ImageWidth), ``classes`` (background first), ``_is_multispectral``,
  ``_is_non8bit_rgb`` and, for those two, ``_extract_bands``; ``kwargs`` are the ``.emd``'s ``Kwargs`` plus
  ``ArcGISLearnVersion`` and ``pretrained_backbone``;
* ``transform_input(xb, thresh, nms_overlap)`` (8-bit RGB: ``xb`` standardised with ImageNet's mean and deviation
  of 0..255 pixels) or ``transform_input_multispectral`` (an ``.emd`` with ``NormalizationStats``: ``xb`` min-max
  scaled, then standardised with ``scaled_mean_values``/``scaled_std_values``): the list of chips the network takes;
* ``post_process(pred, nms_overlap, thres, chip_size, device)``: per chip ``(boxes, labels, scores)``, the boxes as
  ``y1, x1, y2, x2`` from -1 to 1 over the chip, the labels 1-based positions in ``Classes``;
* ``loss`` and ``on_batch_begin``, which the fastai Learner is built with (training in ArcGIS goes through
  arcgis.learn's own FasterRCNN class; they are here for the Learner and for a model-extension training).

The network is the one this plugin trains and rebuilds (``core.backends.arcgis_learn.torchvision_nets``): so the
folder's ``.pth`` loads into it with ``strict=True``.  The file is self-contained (it travels alone inside the model
folder and the ``.dlpk``): it imports torch and torchvision only, inside the methods, and never downloads weights
(they come from the ``.pth``).  It needs torchvision 0.13 or later (the ``weights=`` arguments), as arcgis.learn
2.x does.  The plugin never executes it: its own Detect Objects rebuilds the network from ``ModelName``.
"""

from __future__ import annotations

from typing import Any

#: ImageNet's per-channel mean and deviation of 0..1 pixels (what arcgis.learn standardises 8-bit RGB chips with)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the backbones built here; resnet18/34 are arcgis.learn's one-feature-map (no FPN) R-CNN
FPN_BACKBONES = ("resnet50", "resnet101", "resnet152")
SINGLE_MAP_BACKBONES = ("resnet18", "resnet34")
#: the anchors of the one-map R-CNN: the first level of torchvision's default generator (32 pixels, three ratios),
#: all that arcgis.learn's patched ``grid_anchors`` uses of it
SINGLE_MAP_SIZES = ((32,),)
SINGLE_MAP_RATIOS = ((0.5, 1.0, 2.0),)
#: arguments this class sets itself (a ``Kwargs`` entry of the same name is not passed on)
OWN_ARGUMENTS = ("self", "backbone", "num_classes", "min_size", "max_size", "rpn_anchor_generator", "kwargs")


def _first_conv(conv: Any, in_channels: int) -> Any:  # noqa: ANN401 - torch.nn.Conv2d
    """The same first convolution taking ``in_channels`` bands (same key, other shape; its weights come from the
    ``.pth``)."""
    from torch import nn

    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                     padding=conv.padding, bias=conv.bias is not None)


def _single_map_body(torchvision: Any, name: str, in_channels: int) -> Any:  # noqa: ANN401
    """fastai's ``create_body`` of a ResNet: its children up to the pooling (keys ``0`` to ``7``), 512 channels out."""
    from torch import nn

    resnet = getattr(torchvision.models, name)(weights=None)
    resnet.conv1 = _first_conv(resnet.conv1, in_channels)
    body = nn.Sequential(*list(resnet.children())[:-2])
    body.out_channels = 512
    return body


def _detector_arguments(torchvision: Any, kwargs: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
    """The ``Kwargs`` torchvision's FasterRCNN takes (e.g. ``box_batch_size_per_image``), as arcgis.learn passes
    them on; the rest (``ArcGISLearnVersion``, ``pretrained_backbone``, ...) is not the network's."""
    import inspect

    accepted = set(inspect.signature(torchvision.models.detection.FasterRCNN.__init__).parameters)
    return {k: v for k, v in kwargs.items() if k in accepted and k not in OWN_ARGUMENTS}


def build_faster_rcnn(backbone: str, num_classes: int, chip_size: float, in_channels: int,
                      kwargs: dict[str, Any]) -> Any:  # noqa: ANN401 - torchvision's FasterRCNN
    """torchvision's FasterRCNN as arcgis.learn builds it: ``num_classes`` includes the background; the transform
    resizes the chip to 1.5 x ``chip_size`` (at most 2 x), in whole pixels as the plugin trained it (arcgis.learn
    passes 1.5 x chip unrounded: the same for the even chip sizes, half a pixel apart for odd ones)."""
    import torchvision
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    size = {"min_size": int(1.5 * chip_size), "max_size": int(2 * chip_size),
            **_detector_arguments(torchvision, kwargs)}
    if backbone == "resnet50":
        model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **size)
    elif backbone in FPN_BACKBONES:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        model = FasterRCNN(resnet_fpn_backbone(backbone_name=backbone, weights=None), 91, **size)
    elif backbone in SINGLE_MAP_BACKBONES:
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        anchors = AnchorGenerator(sizes=SINGLE_MAP_SIZES, aspect_ratios=SINGLE_MAP_RATIOS)
        model = FasterRCNN(_single_map_body(torchvision, backbone, in_channels), 91, rpn_anchor_generator=anchors,
                           **size)
    else:
        raise ValueError(f"backbone '{backbone}' is not one of {', '.join(FPN_BACKBONES + SINGLE_MAP_BACKBONES)}")
    body = getattr(model.backbone, "body", None)
    if body is not None:  # FPN: the ResNet's first convolution takes the bands
        body.conv1 = _first_conv(body.conv1, in_channels)
    model.roi_heads.box_predictor = FastRCNNPredictor(model.roi_heads.box_predictor.cls_score.in_features,
                                                      num_classes)
    return model


class MyFasterRCNN:
    """arcgis.learn's FasterRCNN model-extension class (the methods and signatures ArcGIS Pro's loader calls)."""

    def get_model(self, data: Any, backbone: Any = None, **kwargs: Any) -> Any:  # noqa: ANN401
        """The network for ``data``'s chip size, classes and bands (random weights: the ``.pth`` follows)."""
        name = getattr(backbone, "__name__", backbone) or "resnet50"
        self._is_multispectral = bool(getattr(data, "_is_multispectral", False))
        self._is_non8bit_rgb = bool(getattr(data, "_is_non8bit_rgb", False))
        self._chip_size = data.chip_size
        bands = getattr(data, "_extract_bands", None)
        in_channels = len(bands) if self._is_multispectral and bands else 3
        model = build_faster_rcnn(str(name), len(data.classes), data.chip_size, in_channels, kwargs)
        if self._is_multispectral or self._is_non8bit_rgb:  # the chips come standardised already
            model.transform.image_mean = [0.0] * in_channels
            model.transform.image_std = [1.0] * in_channels
        model.roi_heads.nms_thresh = 0.1
        model.roi_heads.score_thresh = 0.2
        self.model = model
        return model

    def _set_thresholds(self, thresh: float, nms_overlap: float) -> None:
        """The detection threshold and NMS overlap of this run, in the heads (restored by :meth:`post_process`)."""
        heads = self.model.roi_heads
        self._kept_thresholds = (heads.score_thresh, heads.nms_thresh)
        heads.score_thresh = float(thresh)
        heads.nms_thresh = float(nms_overlap)

    def _undo_imagenet(self, xb: Any) -> Any:  # noqa: ANN401 - a [N, 3, H, W] tensor
        """Chips standardised with ImageNet's mean and deviation back to 0..1: the network standardises itself."""
        import torch

        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=xb.device).view(1, -1, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=xb.device).view(1, -1, 1, 1)
        return xb * std + mean

    def transform_input(self, xb: Any, thresh: float = 0.5, nms_overlap: float = 0.1) -> list:  # noqa: ANN401
        """Inference on 8-bit RGB chips ``[N, 3, H, W]`` standardised with ImageNet's statistics."""
        self._set_thresholds(thresh, nms_overlap)
        if not self._is_non8bit_rgb:
            xb = self._undo_imagenet(xb)
        return list(xb)

    def transform_input_multispectral(self, xb: Any, thresh: float = 0.5,  # noqa: ANN401
                                      nms_overlap: float = 0.1) -> list:
        """Inference on chips normalised with the ``.emd``'s NormalizationStats: the network takes them as they are."""
        self._set_thresholds(thresh, nms_overlap)
        return list(xb)

    def post_process(self, pred: list, nms_overlap: float, thres: float, chip_size: float,
                     device: Any) -> list:  # noqa: ANN401
        """Per chip ``(boxes [K, 4] as y1, x1, y2, x2 from -1 to 1, labels [K], scores [K])`` on ``device``.

        The threshold and overlap were applied inside the network (set by the transform); the heads get back the
        values they had before it."""
        import torch

        kept = getattr(self, "_kept_thresholds", None)
        if kept is not None:
            self.model.roi_heads.score_thresh, self.model.roi_heads.nms_thresh = kept
            self._kept_thresholds = None
        out = []
        for p in pred:
            boxes = p["boxes"] / (chip_size / 2.0) - 1.0
            boxes = torch.index_select(boxes, 1, torch.tensor([1, 0, 3, 2], device=boxes.device))
            out.append((boxes.detach().to(device), p["labels"].to(device), p["scores"].to(device)))
        return out

    def loss(self, model_output: Any, *model_target: Any) -> Any:  # noqa: ANN401
        """The sum of torchvision's training losses (a NaN or infinite part counts as 0)."""
        import torch

        if isinstance(model_output, tuple):
            model_output = model_output[1]
        total = 0.0
        for part in model_output.values():
            total = total + torch.nan_to_num(part, nan=0.0, posinf=0.0, neginf=0.0)
        return total

    def on_batch_begin(self, learn: Any, model_input_batch: Any, model_target_batch: Any,  # noqa: ANN401
                       **kwargs: Any) -> tuple:
        """fastai's batch (chips; boxes ``y1, x1, y2, x2`` from -1 to 1 and classes, padded) as torchvision's
        training input: ``[chips, targets]`` with boxes ``x1, y1, x2, y2`` in chip pixels.  The network stays in
        training mode (torchvision gives losses only there); for validation its batch norms keep their statistics."""
        import torch

        self.model.train()
        if not kwargs.get("train", True):
            for sub in self.model.modules():
                if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                    sub.eval()
        if not (self._is_multispectral or self._is_non8bit_rgb):
            model_input_batch = self._undo_imagenet(model_input_batch)
        targets = []
        for boxes, labels in zip(*model_target_batch):
            boxes = (boxes + 1.0) / 2.0 * self._chip_size
            keep = (boxes[:, 2:] >= boxes[:, :2] + 1.0).all(1)
            boxes = torch.index_select(boxes[keep], 1, torch.tensor([1, 0, 3, 2], device=boxes.device))
            targets.append({"boxes": boxes, "labels": labels[keep]})
        if model_input_batch.shape[0] < 2:  # a batch of one: torchvision's batch norms want two
            model_input_batch = torch.cat((model_input_batch, model_input_batch))
            targets.append(targets[0])
        return [list(model_input_batch), targets], model_target_batch

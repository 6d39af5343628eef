# SPDX-License-Identifier: GPL-2.0-or-later
"""The network a training run trains: the very module the inference side rebuilds for the family.

:func:`build_network` goes through ``core.backends.arcgis_learn`` (``resolve_family`` + ``build_module``), so the
saved state_dict has arcgis.learn's keys by construction and loads strictly into the rebuilt network.  Backbone
weights come from a local file (a torchvision ResNet state_dict, loaded with ``weights_only=True``), from a model to
fine-tune, or not at all (random initialisation, said in the log): nothing is downloaded here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...backends.arcgis_learn.families import resolve_family
from ...backends.arcgis_learn.weights import read_state_dict
from ...errors import BackendError, InputDataError
from ...progress import Progress

#: torchvision ResNet attribute -> index in fastai's ``create_body`` Sequential
_SEQUENTIAL_BODY = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def build_network(emd: dict[str, Any], seed: int, torch, torchvision):  # noqa: ANN001, ANN201
    """The family's network for this ``.emd``, initialised from ``seed`` (train mode)."""
    from ...backends.arcgis_learn.network import build_module

    family = resolve_family(emd)
    torch.manual_seed(seed)
    return build_module(family, emd, torchvision).train()


def backbone_body(module, model_type: str):  # noqa: ANN001, ANN201
    """(the ResNet body inside the network, whether its children are numbered as fastai's create_body numbers them)."""
    if model_type == "UnetClassifier":
        return module.layers[0], True
    if model_type in ("FeatureClassifier", "SingleShotDetector"):
        return module[0], True
    if model_type == "RetinaNet":
        return module.encoder, True
    if model_type == "DeepLab":
        return module.backbone, False
    body = getattr(module.backbone, "body", None)  # MaskRCNN, FasterRCNN: FPN body, or resnet18/34's create_body
    return (module.backbone, True) if body is None else (body, False)


def _body_state(state: dict[str, Any], numbered: bool) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        top, _, rest = key.partition(".")
        if top not in _SEQUENTIAL_BODY:
            continue  # fc: the classifier the body does without
        out[(_SEQUENTIAL_BODY[top] if numbered else top) + "." + rest] = value
    return out


def imagenet_state(torchvision, backbone: str) -> tuple[dict[str, Any], str]:  # noqa: ANN001
    """torchvision's ImageNet weights of ``backbone`` (its cache first, then download.pytorch.org), read with
    ``weights_only=True``; a machine without network is told to give a local file."""
    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    try:
        return weights.get_state_dict(progress=False, weights_only=True), weights.url.rsplit("/", 1)[-1]
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, a damaged cache file: one message
        raise InputDataError(
            f"DOWNLOAD_BACKBONE: torchvision's ImageNet weights for {backbone} ({weights.url}) could not be fetched "
            f"({exc}). Offline, download that file on a machine with network and give it as PRETRAINED_BACKBONE") \
            from exc


def load_backbone_weights(module, model_type: str, path: Path, torch, progress: Progress,  # noqa: ANN001
                          state: dict[str, Any] | None = None) -> None:
    """A torchvision ResNet state_dict (the file ``path``, or ``state`` already read from it) into the backbone."""
    if state is None:
        try:
            state = read_state_dict(torch, path)
        except BackendError as exc:
            raise InputDataError(f"PRETRAINED_BACKBONE: {exc}") from exc
    body, numbered = backbone_body(module, model_type)
    wanted = _body_state(state, numbered)
    own = body.state_dict()
    fitting = {k: v for k, v in wanted.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not wanted or len(fitting) < len(own) // 2:
        raise InputDataError(f"PRETRAINED_BACKBONE '{path}' is not the state_dict of the backbone's ResNet "
                             f"({len(fitting)} of the body's {len(own)} tensors fit): give the torchvision weights of "
                             "the same ResNet (e.g. resnet34-*.pth for resnet34)")
    body.load_state_dict(fitting, strict=False)
    skipped = [k for k in own if k not in fitting and not k.endswith("num_batches_tracked")]
    note = f"; not taken: {', '.join(skipped[:3])} (another shape: the chips' band count)" if skipped else ""
    progress.info(f"Backbone weights from '{path.name}': {len(fitting)} tensors{note}")


def load_pretrained_model(module, state: dict[str, Any], name: str, progress: Progress) -> None:  # noqa: ANN001
    """Fine-tuning: every tensor of an earlier model that fits; the last layers differ when the classes do."""
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if len(fitting) < len(own) // 2:
        raise InputDataError(f"PRETRAINED_MODEL '{name}' does not fit this network ({len(fitting)} of {len(own)} "
                             "tensors): choose a model of the same model type and backbone")
    module.load_state_dict(fitting, strict=False)
    left = len([k for k in own if k not in fitting])
    progress.info(f"Fine-tuning '{name}': {len(fitting)} tensors taken" +
                  (f", {left} left to train afresh (the classes differ)" if left else ""))


def freeze_backbone(module, model_type: str) -> int:  # noqa: ANN001
    """FREEZE: the backbone's weights stay as loaded (its batch norms still adapt, as fastai's freeze does)."""
    body, _ = backbone_body(module, model_type)
    frozen = 0
    for sub in body.modules():
        if "BatchNorm" in type(sub).__name__:
            continue
        for p in sub.parameters(recurse=False):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen

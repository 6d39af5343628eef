# SPDX-License-Identifier: GPL-2.0-or-later
"""A second opinion on the rebuilt fastai-v1 networks: compare them with fastai 1.0.61 itself (not a test, not a
dependency of the plugin).

arcgis.learn's UnetClassifier and FeatureClassifier are fastai v1 networks.  This script builds fastai 1.0.61's
``DynamicUnet`` and ``create_head`` (Apache-2.0) with the arguments arcgis.learn uses, gives them seeded random
weights, loads their state_dict into the plugin's rebuilt networks with ``strict=True`` and compares the outputs.
It needs fastai 1.0.61 in a separate environment, never in QGIS's Python; for example, next to the dev venv:

    /usr/bin/python3 -m venv --system-site-packages /tmp/fastai1
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/fastai1/lib/python3.11/site-packages/dev_venv.pth
    /tmp/fastai1/bin/pip install --no-deps fastai==1.0.61 fastprogress==0.2.6 pandas==2.0.3
    /tmp/fastai1/bin/python scripts/check_against_fastai1.py

(``--no-deps``: fastai 1.0.61 pins packages the networks do not use; ``bs4`` and ``spacy``, which only its text
and data-download code import, are stubbed here.)  Measured with torch 2.14.1 / torchvision 0.29.1: identical
keys and shapes, max |difference| 0 for every case below.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

for _name in ("bs4", "spacy"):  # imported by fastai's text/data helpers only
    _stub = types.ModuleType(_name)
    _stub.BeautifulSoup = object
    sys.modules.setdefault(_name, _stub)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "build" / "plugins"))  # the plugin as "dltools" (tests/conftest.py makes the link)

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

UNET_CASES = [("resnet34", 64, 3), ("resnet34", 100, 3), ("resnet18", 96, 4), ("resnet18", 70, 3), ("resnet50", 64, 3)]
HEAD_CASES = ["resnet18", "resnet34", "resnet50"]


def _emd(name: str, backbone: str, n: int, chip: int, bands: int = 3) -> dict:
    return {"ModelName": name, "ModelParameters": {"backbone": backbone}, "ImageHeight": chip, "ImageWidth": chip,
            "ExtractBands": list(range(bands)), "Classes": [{"Value": i + 1, "Name": str(i)} for i in range(n)]}


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / max(p[0].numel() if p.dim() > 1 else 1, 1) ** 0.5)
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


def _body(backbone: str, bands: int) -> tuple[nn.Sequential, int]:
    resnet = getattr(torchvision.models, backbone)(weights=None)
    if bands != 3:
        resnet.conv1 = nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
    return nn.Sequential(*list(resnet.children())[:-2]), resnet.fc.in_features  # fastai's create_body(cut=-2)


def _compare(reference: nn.Module, emd: dict, x: torch.Tensor) -> tuple[bool, float]:
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    mine = build_module(resolve_family(emd), emd, torchvision)
    state = reference.state_dict()
    same = list(state) == list(mine.state_dict())
    mine.load_state_dict(state, strict=True)
    with torch.no_grad():
        diff = float((reference(x) - mine.eval()(x)).abs().max())
    return same, diff


def main() -> int:
    from fastai.vision.learner import create_head
    from fastai.vision.models.unet import DynamicUnet

    worst = 0.0
    for backbone, chip, bands in UNET_CASES:
        body, _ = _body(backbone, bands)
        reference = _randomise(DynamicUnet(body, n_classes=3, img_size=(chip, chip), blur=False, blur_final=True,
                                           norm_type=None, last_cross=True, bottle=True), 1)
        same, diff = _compare(reference, _emd("UnetClassifier", backbone, 2, chip, bands),
                              torch.randn(2, bands, chip, chip))
        worst = max(worst, diff if same else float("inf"))
        print(f"UnetClassifier {backbone}, {chip} px, {bands} bands: keys identical {same}, max |diff| {diff:.3g}")
    for backbone in HEAD_CASES:
        body, nf = _body(backbone, 3)
        reference = _randomise(nn.Sequential(body, create_head(2 * nf, 3)), 2)
        same, diff = _compare(reference, _emd("FeatureClassifier", backbone, 3, 64), torch.randn(4, 3, 64, 64))
        worst = max(worst, diff if same else float("inf"))
        print(f"FeatureClassifier {backbone}: keys identical {same}, max |diff| {diff:.3g}")
    print("OK" if worst <= 1e-5 else "DIFFERENT")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

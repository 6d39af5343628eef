# SPDX-License-Identifier: GPL-2.0-or-later
"""Read an arcgis.learn ``.pth`` without unpickling code, and load it strictly.

arcgis.learn saves the network's bare ``state_dict`` (no ``model.``/``module.`` prefix), or
``{"model": state_dict, "opt": ...}`` with ``save_optimizer=True``.  ``torch.load`` runs with
``weights_only=True``, which refuses any pickled object other than tensors and plain
containers; the state_dict then has to fit the rebuilt network exactly (``strict=True``), and
when it does not, the message names the architecture tried and the first key that differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import BackendError, plain_reason
from .pth_check import check_pth


def read_state_dict(torch, path: Path) -> dict[str, Any]:  # noqa: ANN001 - the torch module
    name = Path(path).name
    check_pth(Path(path))  # before torch reads it: no byte-buffer bombs, no inflating records
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises many types
        raise BackendError(f"'{name}' could not be read as PyTorch weights with torch.load(weights_only=True) "
                           f"(only tensors and plain containers are accepted, never code): {plain_reason(exc)}") from exc
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) for k in data):
        raise BackendError(f"'{name}' does not hold a state_dict (a mapping of parameter names to tensors) nor "
                           "{\"model\": state_dict}")
    bad = next((k for k, v in data.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise BackendError(f"'{name}' is not a state_dict: entry '{bad}' is not a tensor")
    return data


def load_strict(module, state: dict[str, Any], architecture: str, file_name: str) -> None:  # noqa: ANN001
    """``module.load_state_dict(state, strict=True)``, with a message a user can act on when it does not fit."""
    own = module.state_dict()
    # torchvision's FrozenBatchNorm2d (R-CNN resnet101/152 bodies) keeps no step counter and drops the file's
    state = {k: v for k, v in state.items() if not (k.endswith(".num_batches_tracked") and k not in own
                                                    and k[:-len("num_batches_tracked")] + "running_mean" in own)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"first missing key '{missing[0]}' ({len(missing)} missing)")
        if unexpected:
            parts.append(f"first unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected)")
        if shapes:
            k = shapes[0]
            parts.append(f"first key of another shape '{k}': {list(state[k].shape)} in the file, "
                         f"{list(own[k].shape)} in the network ({len(shapes)} differ)")
        hint = ""
        prefixes = {k.split(".", 1)[0] for k in state}
        if len(prefixes) == 1 and next(iter(prefixes)) in ("module", "model") and missing:
            hint = (f" Every key in the file starts with '{next(iter(prefixes))}.': it was saved from a wrapper "
                    "(DataParallel or a Learner), not as arcgis.learn saves the network itself.")
        elif shapes and not missing and not unexpected:
            hint = (" The layout fits but sizes differ: check Classes (their number sizes the last layers), "
                    "ExtractBands (the first convolution) and ModelParameters.backbone in the model definition.")
        raise BackendError(f"The weights in '{file_name}' do not fit {architecture}: " + "; ".join(parts) + "." + hint)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - the checks above cover what strict loading checks
        raise BackendError(f"The weights in '{file_name}' do not fit {architecture}: {exc}") from exc

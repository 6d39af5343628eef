# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile model files for the security tests: each would touch a file outside the run if it were trusted.

Every builder takes a ``marker`` path: the hostile code writes (or reads) it, so a test proves that nothing ran by
checking that the marker does not exist afterwards.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch


class _Boom:
    """Unpickling this writes ``marker``: proof that the full Python unpickler ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('unpickled')",))


def _pickle_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Boom(marker), buffer)
    return buffer.getvalue()


def _rewrite_zip(path: Path, change) -> Path:
    """Rewrite the zip at ``path``; ``change(name, data)`` returns new bytes, or None to drop the member."""
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    extra = []
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            new = change(name, data, extra)
            if new is not None:
                zf.writestr(name, new)
        for name, data in extra:
            zf.writestr(name, data)
    return path


class Pointwise(torch.nn.Module):
    """out[c] = x[c] * (c + 1): two classes from two bands, predictable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)


def exported_program(path: Path) -> Path:
    batch = torch.export.Dim.DYNAMIC
    program = torch.export.export(Pointwise(), (torch.zeros(2, 2, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def pt2_with_pickled_sample_inputs(path: Path, marker: Path) -> Path:
    """A real torch.export program whose sample inputs are a pickle that writes ``marker`` when unpickled."""
    exported_program(path)
    evil = _pickle_bytes(marker)
    return _rewrite_zip(path, lambda n, d, extra: evil if "/data/sample_inputs/" in n else d)


def pt2_with_pickled_weights(path: Path, marker: Path) -> Path:
    """A torch.export program whose only constant is declared ``use_pickle`` and unpickles into ``marker``."""

    class WithWeight(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1, 2, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2] * self.scale

    program = torch.export.export(WithWeight(), (torch.zeros(1, 2, 8, 8),))
    torch.export.save(program, str(path))
    evil = _pickle_bytes(marker)

    def change(name: str, data: bytes, extra: list) -> bytes:
        if name.endswith("data/weights/model_weights_config.json"):
            config = json.loads(data)
            for meta in config["config"].values():
                meta["use_pickle"] = True
                meta["path_name"] = "weight_evil"
            extra.append((name.rsplit("/", 1)[0] + "/weight_evil", evil))
            return json.dumps(config).encode()
        return data

    return _rewrite_zip(path, change)


def torchscript_reading(path: Path, target: Path) -> Path:
    """TorchScript whose forward reads ``target`` with torch.from_file (inside a submodule) into its output."""
    torch.jit.save(torch.jit.script(_Reader(str(target))), str(path))
    return path


def torchscript_saving(path: Path, marker: Path) -> Path:
    """TorchScript whose exported helper method (not forward) writes ``marker`` with torch.save."""
    torch.jit.save(torch.jit.script(_Saver(str(marker))), str(path))
    return path


def torchscript_with_setstate(path: Path, marker: Path) -> Path:
    """TorchScript whose __setstate__ (run by torch.jit.load) writes ``marker``."""
    torch.jit.save(torch.jit.script(_SetState(str(marker))), str(path))
    return path


class _ReadFile(torch.nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        data = torch.from_file(self.target, False, 2, dtype=torch.uint8)
        return x[:, :2] + data.float().view(1, 2, 1, 1)


class _Reader(torch.nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.inner = _ReadFile(target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class _Saver(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keep(x[:, :2])

    @torch.jit.export
    def keep(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 1e30):
            torch.save(x, self.marker)
        return x


class _SetState(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        torch.save(torch.zeros(1), self.marker)


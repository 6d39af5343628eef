# SPDX-License-Identifier: GPL-2.0-or-later
"""TorchScript files the operator walk alone did not stop (the second adversarial review), built for the tests of
model trust: each writes a marker file or crashes the process that loads it, and trust refuses it before torch
opens it.

No ``from __future__ import annotations`` here: TorchScript resolves a class's annotations itself.
"""

from pathlib import Path

import torch
from evil_models import _rewrite_zip, torchscript_with_setstate


# Files the operator walk alone did not stop (issue: the second adversarial review); trust stops them first.
@torch.jit.script
class _Writer:
    """A TorchScript class that is not a module: its methods are code the module calls."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def write(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.marker)
        return x


class _ClassInList(torch.nn.Module):
    ws: list[_Writer]

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.ws = [_Writer(marker)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ws[0].write(x[:, :2])


class _Hooked(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]


def _writing_hook(module: _Hooked, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
    torch.save(output, module.marker)


def torchscript_class_in_list(path: Path, marker: Path) -> Path:
    """TorchScript whose forward calls a method of a non-module TorchScript class held in a list: it writes
    ``marker`` with torch.save."""
    torch.jit.save(torch.jit.script(_ClassInList(str(marker))), str(path))
    return path


def torchscript_forward_hook(path: Path, marker: Path) -> Path:
    """TorchScript with a forward hook registered before scripting (hooks are not among a module's methods): every
    call writes ``marker``."""
    module = _Hooked(str(marker))
    module.register_forward_hook(_writing_hook)
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def _change_code(path: Path, change) -> Path:  # noqa: ANN001 - bytes -> bytes
    return _rewrite_zip(path, lambda n, d, extra: change(d) if "/code/" in n and n.endswith(".py") else d)


def torchscript_setstate_split_def(path: Path, marker: Path) -> Path:
    """A __setstate__ written ``def \\`` + newline + ``__setstate__(``: still a definition, which torch.jit.load
    runs (writing ``marker``) before anything can inspect the module."""
    torchscript_with_setstate(path, marker)
    return _change_code(path, lambda code: code.replace(b"def __setstate__(", b"def \\\n__setstate__("))


def torchscript_setstate_in_large_code(path: Path, marker: Path, size: int = 65 * 1024**2) -> Path:
    """A __setstate__ (writing ``marker`` on load) in a code file made larger than ``size`` bytes by a comment."""
    torchscript_with_setstate(path, marker)
    return _change_code(path, lambda code: code + b"#" + b"x" * size + b"\n")


def torchscript_blank_lines(path: Path) -> Path:
    """A valid archive whose code ends in 100,000 blank lines: torch.jit.load itself crashes (SIGSEGV)."""

    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2]

    torch.jit.save(torch.jit.script(Plain()), str(path))
    return _change_code(path, lambda code: code + b"\n" * 100_000)


class _SparseOutOfBounds(torch.nn.Module):
    """Two allowed operators: a sparse tensor whose index (computed at run time) lies 10^8 rows before its first
    row, made dense: ``to_dense`` writes out of bounds and the process dies (SIGSEGV on torch 2.14.1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row = (x.sum() * 0.0 - 100000000.0).long().reshape(1, 1)
        index = torch.cat([row, torch.zeros(1, 1, dtype=torch.long)], 0)
        sparse = torch.sparse_coo_tensor(index, torch.ones(1), (2, 1))
        return x[:, :2] + sparse.to_dense().sum()


def torchscript_sparse_out_of_bounds(path: Path) -> Path:
    torch.jit.save(torch.jit.script(_SparseOutOfBounds()), str(path))
    return path


class _Endless(torch.nn.Module):
    """A model that never returns (the loop's condition holds for every input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = 0
        while bool(x.abs().sum() >= 0.0):
            n += 1
        return x[:, :2] + n


def torchscript_endless(path: Path) -> Path:
    torch.jit.save(torch.jit.script(_Endless()), str(path))
    return path


class _OnesHog(torch.nn.Module):
    """``torch.ones`` of a size computed at run time (the tile's width x ``per_column``): gigabytes that no check
    of the file can know, for the memory watchdog."""

    def __init__(self, per_column: int) -> None:
        super().__init__()
        self.per_column = per_column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(int(x.shape[-1]) * self.per_column)
        return x[:, :2] + big.sum() * 0.0


def torchscript_ones_hog(path: Path, gib: float = 3.0, width: int = 16) -> Path:
    torch.jit.save(torch.jit.script(_OnesHog(int(gib * 2**30 / 4 / width))), str(path))
    return path

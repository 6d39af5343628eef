# SPDX-License-Identifier: GPL-2.0-or-later
"""Which model files the user trusts to run their own code.

TorchScript archives (``.pt``, ``.pth``, ``.torchscript``) and ``torch.export`` programs (``.pt2``) are programs:
TorchScript runs code while it loads (``__setstate__``), and a graph can call operators that crash the process or
touch files in ways an operator list cannot foresee.  So such a file is opened only when the user trusts it:
for every model (the provider setting), for one run (``ALLOW_CUSTOM_CODE``) or this very file (its SHA-256, kept
in QGIS settings and offered in the dialog).  The decision is a plain record (:class:`CodeTrust`) that the
algorithm builds from QGIS and hands to the engine, so it crosses to a child process or a Dask worker as data,
and the backend checks it before torch ever opens the file (:func:`require_trust`).

ONNX files (ONNX Runtime runs ONNX operators only) and arcgis.learn weights read with the weights-only
unpickler are data and need no trust.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UntrustedCodeError

#: Model kinds (ModelDefinition.model_format_kind) whose files carry code.
CODE_KINDS = frozenset({"torchscript", "torch_export"})

#: What the refusal tells the user to do; the dialog adds its own "Trust this model" button.
HOW_TO_TRUST = ("Run it only if you trust where it comes from: tick 'Allow the model's own code' "
                "(ALLOW_CUSTOM_CODE=true) for this run, trust this file in the tool's dialog, or allow every model "
                "in Processing > Options > Providers > Deep Learning Tools")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256 in hex, read in 1 MiB pieces (model files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CodeTrust:
    """The user's permission to run models that carry code: all of them, or the files with these SHA-256s.

    The default trusts nothing: the engine's own default is the safe one."""

    everything: bool = False
    digests: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def all(cls) -> CodeTrust:
        """Trust every model (the user's own files, a notebook, the tests)."""
        return cls(everything=True)

    def allows(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file at ``path``, as it is now, may run its code."""
        if self.everything:
            return True
        if not self.digests:
            return False
        try:
            return file_sha256(path) in self.digests
        except OSError:
            return False


def require_trust(path: str | os.PathLike[str], kind: str, trust: CodeTrust | None, what: str = "") -> None:
    """Raise :class:`UntrustedCodeError` unless ``trust`` allows ``path`` (a file of model kind ``kind``).

    Called before anything opens the file: an untrusted program is never loaded, not even to describe it."""
    if kind not in CODE_KINDS or (trust is not None and trust.allows(path)):
        return
    name = Path(path).name
    try:
        sha = file_sha256(path)
    except OSError:
        sha = ""
    program = "a torch.export program (.pt2)" if kind == "torch_export" else "a TorchScript program"
    action = what or "It was not opened"
    raise UntrustedCodeError(
        f"Model '{name}' is {program}: it contains code, which runs with your permissions when it is loaded. "
        f"{action}. {HOW_TO_TRUST}" + (f" (SHA-256 {sha})." if sha else "."), path=str(path), sha256=sha)

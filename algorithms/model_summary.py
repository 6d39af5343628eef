# SPDX-License-Identifier: GPL-2.0-or-later
"""What the dialog says about the model MODEL names: one reading of its definition (kept while the file, the trust
and the settings stay the same) for the summary under the field and for the argument table.

Nothing here runs a model's Python code or opens a program (TorchScript, .pt2) the user has not trusted; a plain
model file that must be opened to be described is read in a child process with a time limit.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..core.errors import DLToolsError, UntrustedCodeError
from ..core.model.definition import ONNX_SUFFIXES, TORCH_EXPORT_SUFFIXES, TORCHSCRIPT_SUFFIXES, colours_from_palette, palette
from ..core.model.loader import load_model_definition
from ..core.prf.function_trust import function_digest, function_trusted, own_function
from ..core.tools.describe.device import device_summary
from ..core.tools.describe.report import bands_text
from ..core.trust import CODE_KINDS, file_sha256
from .isolation import probe_in_child, runs_in_child
from .trust import code_trust

#: plain model files whose description needs the file opened (a backend): read in a child process
PLAIN_MODEL_SUFFIXES = ONNX_SUFFIXES + TORCHSCRIPT_SUFFIXES + TORCH_EXPORT_SUFFIXES

_LAST: dict[tuple, tuple[Any, BaseException | None]] = {}


def dialog_definition(text: str) -> Any:
    """The definition MODEL names, for the dialog's summary and table (one reading for both, kept while the file,
    the trust and the settings stay the same). A plain model file that must be opened to be described (.onnx,
    a trusted TorchScript/.pt2) is read in a child process with a time limit: a hostile file cannot freeze QGIS."""
    trust = code_trust()
    path = Path(text.strip()) if not text.strip().startswith("{") else None
    try:
        stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path is not None else None
    except OSError:
        stamp = None
    key = (text, stamp, trust, runs_in_child())
    if key not in _LAST:
        opened = path is not None and path.suffix.lower() in PLAIN_MODEL_SUFFIXES
        try:
            md = probe_in_child("load_model_definition", text, trust=trust) if opened else \
                load_model_definition(text, trust=trust)
            _LAST.clear()
            _LAST[key] = (md, None)
        except (DLToolsError, OSError, ValueError) as exc:
            _LAST.clear()
            _LAST[key] = (None, exc)
    md, error = _LAST[key]
    if error is not None:
        raise error
    return md


def untrusted_code(md: Any) -> tuple[str, str] | None:
    """(file, SHA-256) when ``md`` names a code-bearing model file (TorchScript, .pt2) or has its own Python
    function (InferenceFunction: the digest of its folder's .py files) that the user has not trusted."""
    if md is None:
        return None
    function = untrusted_function(md)
    if function is not None:
        return function
    if md.model_format_kind not in CODE_KINDS or md.model_file is None or not md.model_file.is_file():
        return None
    if md.code_trust is not None and md.code_trust.allows(md.model_file):
        return None
    try:
        return str(md.model_file), file_sha256(md.model_file)
    except OSError:
        return None


def untrusted_function(md: Any) -> tuple[str, str] | None:
    """(the function's file, its digest) when the model has its own Python function that the run would not be
    allowed to run (the provider setting off, the file not trusted); None otherwise."""
    path = own_function(md)
    if path is None or getattr(md.code_trust, "everything", False) or function_trusted(md):
        return None
    digest = function_digest(md)
    return (str(path), digest) if digest else None


def model_summary(text: str, device_kind: str = "auto", gpu_id: int = 0) -> tuple[str, Any, tuple[str, str] | None]:
    """(rich text summary, the ModelDefinition or None, (file, SHA-256) of an untrusted code-bearing model or None)
    for what MODEL holds; never raises, and never opens a program the user has not trusted."""
    if not str(text or "").strip():
        return "<i>Choose a model (.emd, .dlpk, .onnx, .pt) or paste the .emd JSON.</i>", None, None
    try:
        md = dialog_definition(text)
    except UntrustedCodeError as exc:
        return f'<span style="color:#9a3b00">{html.escape(str(exc))}</span>', None, (exc.path, exc.sha256)
    except (DLToolsError, OSError, ValueError) as exc:
        return f'<span style="color:#a00000">{html.escape(str(exc))}</span>', None, None
    summary = _summary_lines(md, device_kind, gpu_id)
    untrusted = untrusted_code(md)
    if untrusted and untrusted_function(md):
        summary += ('<br><span style="color:#9a3b00">This model contains code (its own Python function, '
                    f"{html.escape(Path(untrusted[0]).name)}, and the .py files beside it). It runs only if you "
                    "trust it.</span>")
    elif untrusted:
        summary += ('<br><span style="color:#9a3b00">This model contains code (a TorchScript or torch.export '
                    "program). It runs only if you trust it.</span>")
    return summary, md, untrusted


def model_summary_html(text: str, device_kind: str = "auto", gpu_id: int = 0) -> tuple[str, Any]:
    """(rich text summary, the ModelDefinition or None) for what MODEL holds; never raises."""
    summary, md, _ = model_summary(text, device_kind, gpu_id)
    return summary, md


def _summary_lines(md: Any, device_kind: str, gpu_id: int) -> str:
    """Type, tile, bands, classes with their colours, the device, and the definition's warnings."""
    parts = [f"<b>{html.escape(md.model_type)}</b>", f"tile {md.image_width}x{md.image_height}",
             html.escape(bands_text(md))]
    fill = palette(len(md.classes))  # what the output uses for a class without a colour
    classes = " ".join(
        f'<span style="background-color:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}">&nbsp;&nbsp;&nbsp;</span>'
        f"&nbsp;{html.escape(str(c.value))} {html.escape(c.name)}"
        for c, rgb in ((c, c.color or fill[i]) for i, c in enumerate(md.classes[:24])))
    if len(md.classes) > 24:
        classes += f" … ({len(md.classes)} classes)"
    lines = [" · ".join(parts), f"Classes: {classes or 'none listed'}"]
    if colours_from_palette(md.classes):
        lines.append("<i>The model gives no class colours: the output uses a fixed colour-blind-safe palette.</i>")
    lines.append(f"Runs on: {html.escape(device_summary(md, device_kind, gpu_id))}")
    lines += [f'<span style="color:#9a3b00">{html.escape(w)}</span>' for w in md.warnings]
    return "<br>".join(lines)


def table_definition(text: str) -> tuple[Any, str]:
    """(the ModelDefinition or None, a note) for the argument table; never raises, and never opens a program the
    user has not trusted (a plain TorchScript file without a stored definition would need a probe run)."""
    if not str(text or "").strip():
        return None, ""
    try:
        return dialog_definition(text), ""
    except UntrustedCodeError:
        return None, "are read from the model once you trust its code"
    except (DLToolsError, OSError, ValueError):
        return None, ""

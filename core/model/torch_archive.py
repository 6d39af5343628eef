# SPDX-License-Identifier: GPL-2.0-or-later
"""Looking inside a TorchScript / ``torch.export`` archive (a zip) without running or unpickling it.

The .emd reader refuses pickles here before torch ever opens a file; the plain-model and .ecd
readers find the ``dltools.json`` model definition an archive may carry.  Only :mod:`zipfile` and
:mod:`json`: safe on files from strangers, and a leaf below every reader.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError


def check_torchscript_archive(path: Path, shown: str | None = None) -> None:
    """Refuse anything that is not a TorchScript archive before torch ever opens it."""
    name = shown or path.name
    if not zipfile.is_zipfile(path):
        raise ModelDefinitionError(
            f"ModelFile '{name}' is not a TorchScript archive: save the model with torch.jit.save (or export it to "
            "ONNX). Pickled PyTorch files are never loaded, since loading them can run arbitrary code")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
        return
    if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
        return
    raise ModelDefinitionError(
        f"ModelFile '{name}' is a PyTorch weights file (state dict or pickled model), not TorchScript: it needs the "
        "Python code of the network to run. Save it with torch.jit.save(torch.jit.script(model)) or export it to "
        "ONNX. Pickled files are never loaded, since loading them can run arbitrary code")


def embedded_definition(path: Path) -> dict[str, Any] | None:
    """The model definition a TorchScript/torch.export archive carries as the extra file dltools.json, if any."""
    with zipfile.ZipFile(path) as zf:
        for n in zf.namelist():
            if n.endswith("extra/dltools.json"):
                try:
                    data = json.loads(zf.read(n).decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise ModelDefinitionError(f"The dltools.json stored in '{path.name}' is not valid JSON: {exc}") from exc
                if not isinstance(data, dict):
                    raise ModelDefinitionError(f"The dltools.json stored in '{path.name}' must be a JSON object")
                return data
    return None


def archive_summary(path: Path) -> str:
    """What a TorchScript/torch.export zip holds, read from its directory only (nothing is opened or run): the
    number of code files, data records and extra files, with the extra files named. For Describe Model and the
    dialog, which may not load an untrusted program."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"its zip directory cannot be read ({exc})"
    code = [i for i in infos if i.filename.endswith(".py") and "/code/" in f"/{i.filename}"]
    data = [i for i in infos if "/data/" in f"/{i.filename}" or i.filename.endswith(".pkl")]
    extra = [i.filename.rsplit("/extra/", 1)[1] for i in infos if "/extra/" in f"/{i.filename}"]
    size = sum(i.file_size for i in infos)
    text = (f"{len(infos)} archive members ({size:,} bytes unpacked): {len(code)} code files, "
            f"{len(data)} data records")
    return text + (f", extra files {', '.join(sorted(extra)[:10])}" if extra else ", no extra files")

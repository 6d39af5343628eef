# SPDX-License-Identifier: GPL-2.0-or-later
"""A ``.pth`` is checked before ``torch.load`` reads it: small files must not take gigabytes.

``weights_only`` keeps code out, but not size: a 423-byte pickle that calls ``bytearray(2**31)`` is allowed, and
a zip record of a one-element tensor may inflate to gigabytes. So, reading only the zip's directory and the
pickle's opcodes (nothing is built): a pickle that constructs ``bytearray``/``bytes`` objects is refused (a
state dict holds tensors, whose bytes are zip records), and so is a record that inflates far beyond its
compressed size (``torch.save`` stores records uncompressed) or whose size is beyond :data:`MAX_RECORD`.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

from ...errors import BackendError

#: A record that inflates more than this many times its compressed size (and past 16 MiB) is a zip bomb.
MAX_INFLATION = 20
#: No single weights record may be larger (the largest arcgis.learn networks hold records of a few hundred MB).
MAX_RECORD = 8 * 1024**3
_REFUSED_GLOBALS = {"builtins bytearray", "builtins bytes", "__builtin__ bytearray", "__builtin__ bytes"}


def _globals(data: bytes) -> set[str]:
    """The ``module name`` pairs a pickle names (GLOBAL and STACK_GLOBAL), read from its opcodes only: the two
    values before a STACK_GLOBAL are followed through the memo (a repeated module name is fetched from it)."""
    found: set[str] = set()
    memo: dict = {}
    recent: list = []
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"):
            recent.append(str(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif name == "GLOBAL":
            found.add(str(arg))
        elif name == "STACK_GLOBAL":
            if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                found.add(f"{recent[-2]} {recent[-1]}")
            recent.append(None)
        else:
            recent.append(None)
        recent = recent[-2:]
    return found


def check_pth(path: Path) -> None:
    """Refuse, before torch reads it, a ``.pth`` whose pickle builds byte buffers or whose records inflate."""
    name = Path(path).name
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            _check_pickle(f.read(64 * 1024**2), name, "its pickle")
        return
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.file_size > MAX_RECORD or (
                        info.file_size > 16 * 1024**2 and info.file_size > MAX_INFLATION * max(info.compress_size, 1)):
                    raise BackendError(
                        f"'{name}' is refused: its record '{info.filename}' would take {info.file_size:,} bytes from "
                        f"{info.compress_size:,} in the file (a zip bomb); torch.save writes weights uncompressed")
            for info in zf.infolist():
                if info.filename.endswith("data.pkl"):
                    _check_pickle(zf.read(info), name, f"'{info.filename}'")
    except (OSError, zipfile.BadZipFile) as exc:
        raise BackendError(f"'{name}' cannot be read as PyTorch weights: {exc}") from exc


def _check_pickle(data: bytes, name: str, what: str) -> None:
    try:
        names = _globals(data)
    except Exception as exc:  # noqa: BLE001 - a pickle the opcode reader cannot walk is not loaded
        raise BackendError(f"'{name}' is refused: {what} cannot be read ({type(exc).__name__}: {exc})") from exc
    bad = sorted(names & _REFUSED_GLOBALS)
    if bad:
        raise BackendError(f"'{name}' is refused: {what} builds {bad[0].split()[1]} objects, which a state dict "
                           "never holds (they can take gigabytes from a few bytes of file)")

# SPDX-License-Identifier: GPL-2.0-or-later
"""Small .pth files that would take gigabytes are refused before torch reads them: a pickle that builds a
bytearray (allowed by weights_only) and a zip record that inflates (also inside a .dlpk: the check is the .pth's)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
from dltools.core.backends.arcgis_learn.pth_check import check_pth
from dltools.core.backends.arcgis_learn.weights import read_state_dict
from dltools.core.errors import BackendError


def _state_dict_zip() -> list[tuple[str, bytes]]:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def bytearray_bomb(path: Path, size: int) -> Path:
    """A torch.save zip whose data.pkl is ``bytearray(size)``: under a kilobyte of file."""
    pickle = b"\x80\x02cbuiltins\nbytearray\nJ" + size.to_bytes(4, "little") + b"\x85R."
    with zipfile.ZipFile(path, "w") as out:
        for name, data in _state_dict_zip():
            out.writestr(name, pickle if name.endswith("data.pkl") else data)
    return path


def inflating_record(path: Path, size: int) -> Path:
    """A one-element tensor whose record is ``size`` zero bytes, deflated to almost nothing."""
    with zipfile.ZipFile(path, "w") as out:
        for name, data in _state_dict_zip():
            if name.endswith("/data/0"):
                out.writestr(name, bytes(size), compress_type=zipfile.ZIP_DEFLATED)
            else:
                out.writestr(name, data)
    return path


def test_a_pickle_that_builds_a_bytearray_is_refused_before_loading(tmp_path):
    bomb = bytearray_bomb(tmp_path / "bomb.pth", 64 * 1024**2)
    assert bomb.stat().st_size < 1200
    assert len(torch.load(str(bomb), weights_only=True)) == 64 * 1024**2  # weights_only builds it: hostile
    with pytest.raises(BackendError, match=r"^'bomb.pth' is refused: 'archive/data.pkl' builds bytearray objects"):
        read_state_dict(torch, bomb)


def test_a_record_that_inflates_is_refused(tmp_path):
    bomb = inflating_record(tmp_path / "inflate.pth", 256 * 1024**2)
    assert bomb.stat().st_size < 2 * 1024**2
    with pytest.raises(BackendError, match=r"^'inflate.pth' is refused: its record 'archive/data/0' would take "
                                           r"268,435,456 bytes from"):
        check_pth(bomb)


def test_a_real_state_dict_passes(tmp_path):
    path = tmp_path / "real.pth"
    torch.save({"conv.weight": torch.ones(4, 3, 3, 3), "conv.bias": torch.zeros(4)}, str(path))
    assert sorted(read_state_dict(torch, path)) == ["conv.bias", "conv.weight"]


def test_torch_advice_and_terminal_codes_never_reach_the_user(tmp_path):
    """torch's refusal text advises weights_only=False and add_safe_globals (running the file's code): cut."""
    from pathlib import PurePosixPath

    path = tmp_path / "gadget.pth"
    torch.save({"w": torch.zeros(1), "g": PurePosixPath("x")}, str(path))  # an object weights_only refuses
    with pytest.raises(BackendError) as info:
        read_state_dict(torch, path)
    text = str(info.value)
    assert text.startswith("'gadget.pth' could not be read as PyTorch weights with torch.load(weights_only=True)")
    assert text.endswith("the weights-only reader refused it (Unsupported global: GLOBAL pathlib.PurePosixPath)")
    for advice in ("weights_only=False", "add_safe_globals", "safe_globals", "\x1b[", "can still be loaded"):
        assert advice not in text, text


def test_plain_reason_removes_escape_codes():
    from dltools.core.errors import plain_reason

    assert plain_reason("\x1b[1;31mFail\x1b[m: bad model\nUse add_safe_globals([X]) to allow it") == "Fail: bad model"

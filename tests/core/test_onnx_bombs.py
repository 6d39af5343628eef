# SPDX-License-Identifier: GPL-2.0-or-later
"""Small ONNX files that would take gigabytes are refused before ONNX Runtime opens them, naming the node or the
tensor and the size (#18 part 3). Each file is built here with ``onnx.helper``; the same builder at a small size
is a valid model that ONNX Runtime runs (so the refusal is about the size, not a broken file)."""

from __future__ import annotations

from pathlib import Path

import hostile_onnx
import numpy as np
import pytest
from dltools.core.backends.base import DeviceRequest
from dltools.core.backends.onnx_sizes import OnnxSizeError, check_onnx_sizes

GIB = 2**30
BOUND = GIB  # the tests' memory bound: 1 GiB
BOMBS = {  # builder, its size argument for about 4 GiB, for a few KB, and what the refusal names
    "constant_of_shape": (hostile_onnx.constant_of_shape_bomb, GIB, 1000, "node 'the_bomb' (ConstantOfShape)"),
    "constant_node": (lambda p, n: hostile_onnx.constant_of_shape_bomb(p, n, via_constant_node=True), GIB, 1000,
                      "node 'the_bomb' (ConstantOfShape)"),
    "expand": (hostile_onnx.expand_bomb, GIB, 1000, "node 'the_bomb' (Expand)"),
    "tile": (hostile_onnx.tile_bomb, GIB, 1000, "node 'the_bomb' (Tile)"),
    "range": (hostile_onnx.range_bomb, GIB, 1000, "node 'the_bomb' (Range)"),
    "resize": (hostile_onnx.resize_bomb, 2**15, 30, "node 'the_bomb' (Resize)"),
    "loop_body": (hostile_onnx.loop_body_bomb, GIB, 1000, "node 'the_inner_bomb' (ConstantOfShape)"),
    "initializer": (hostile_onnx.declared_initializer_bomb, GIB, None, "the initializer 'weights' (dims [1073741824])"),
    "external": (hostile_onnx.external_data_bomb, GIB, None, "the initializer 'weights' (dims [1073741824])"),
}


def _run(path: Path) -> np.ndarray:
    from dltools.core.backends.onnx_backend import OnnxBackend

    backend = OnnxBackend(path, DeviceRequest("cpu"))
    try:
        return backend.run(np.ones((1, 2, 4, 4), np.float32))[0]
    finally:
        backend.close()


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_constant_sized_bomb_is_refused_naming_the_node_and_size(tmp_path, name):
    build, big, small, names = BOMBS[name]
    path = build(tmp_path / "m.onnx", big)
    assert path.stat().st_size < 2000  # a small file ...
    with pytest.raises(OnnxSizeError) as info:
        check_onnx_sizes(path, BOUND)
    message = str(info.value)
    assert message.startswith(f"ONNX model 'm.onnx' is refused: {names}") and "GiB" in message, message
    assert "more than the 1.0 GiB a run may use" in message
    if name != "external":  # (its file holds 16 bytes: refused whatever the bound, see below)
        check_onnx_sizes(path, 64 * GIB)  # under a bound it is not refused
    if small is not None:  # the same construction, small: a model ONNX Runtime runs, untouched by the check
        ok = build(tmp_path / "small.onnx", small)
        check_onnx_sizes(ok, BOUND)
        assert np.array_equal(_run(ok), np.ones((1, 2, 4, 4), np.float32))


def test_external_data_larger_than_its_file_is_refused(tmp_path):
    path = hostile_onnx.external_data_bomb(tmp_path / "m.onnx", 1000)  # 4,000 bytes declared, 16 stored
    with pytest.raises(OnnxSizeError, match="the initializer 'weights' declares 4,000 bytes stored in 'm.bin' from "
                                            "byte 0, and that file holds 16 bytes"):
        check_onnx_sizes(path, BOUND)
    path.with_suffix(".bin").write_bytes(b"\0" * 4000)
    check_onnx_sizes(path, BOUND)
    assert np.array_equal(_run(path), np.ones((1, 2, 4, 4), np.float32))  # and it is a model ONNX Runtime runs


def test_the_backend_checks_before_creating_the_session(tmp_path, monkeypatch):
    """The bound is the run's (a child gets its watchdog's budget in DLTOOLS_MEMORY_BUDGET); 0 means no limit."""
    from dltools.core.backends.onnx_backend import OnnxBackend
    from dltools.core.memory import BUDGET_ENV, memory_bound

    path = hostile_onnx.constant_of_shape_bomb(tmp_path / "m.onnx", GIB)
    monkeypatch.setenv(BUDGET_ENV, str(BOUND))
    assert memory_bound() == BOUND
    with pytest.raises(OnnxSizeError, match="node 'the_bomb' \\(ConstantOfShape\\) would take 4.0 GiB"):
        OnnxBackend(path, DeviceRequest("cpu"))
    monkeypatch.setenv(BUDGET_ENV, "0")
    assert memory_bound() is None
    monkeypatch.delenv(BUDGET_ENV)
    assert memory_bound() is not None and memory_bound() > 0


def test_files_the_reader_cannot_follow_are_left_to_onnx_runtime(tmp_path):
    for data in (b"", b"\xff" * 50, b"not a protobuf at all"):
        path = tmp_path / "x.onnx"
        path.write_bytes(data)
        check_onnx_sizes(path, BOUND)  # no exception: ONNX Runtime gives its own error


def test_sizes_read_in_gib_from_what_would_read_1024_mib():
    from dltools.core.backends.onnx_sizes import _shown

    assert _shown(2**30) == "1.0 GiB" and _shown(2**30 - 1000) == "1.0 GiB"  # a budget a few bytes under 1 GiB
    assert _shown(1023 * 2**20) == "1023.0 MiB" and _shown(3 * 2**30) == "3.0 GiB"

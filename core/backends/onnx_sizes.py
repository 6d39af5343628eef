# SPDX-License-Identifier: GPL-2.0-or-later
"""What an ONNX file will allocate, read before ONNX Runtime gets it: small files that ask for gigabytes are
refused naming the node or tensor and the size.

A 335-byte ONNX file whose ``ConstantOfShape`` has a constant shape of a billion elements makes ONNX Runtime take
gigabytes while it creates the session (constant folding) or on the first call. What can be known without running
anything is checked here against the run's memory bound (:func:`core.memory.memory_bound`, the share of the
available memory that the watchdog of the run's child process enforces):

* every initializer's declared size (its dims times the size of its type), and for one stored outside the file
  (``external_data``) also the bytes that file really holds;
* the output of ``ConstantOfShape``, ``Expand``, ``Tile``, ``Range`` and ``Resize`` whose sizing inputs are
  constants (initializers or ``Constant`` nodes), in the main graph and in the bodies of ``Loop``/``If``/``Scan``.
  Where a data input's shape is not known, the count is a lower bound (a broadcast or a tile is at least that
  big), so a refusal is never wrong.

What depends on the tiles (a shape computed from the input) cannot be known here: the watchdog stops it. The file
is read as protobuf wire format by the small reader below (the ``onnx`` package is not needed at run time), its
weights never copied (the file is memory-mapped).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendError

#: TensorProto.DataType -> bytes per element (4-bit types count as 1: a lower bound is not needed there)
_SIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 1, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
          17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1}
_MAX_DEPTH = 16  # nested sub-graphs followed at most this deep


class OnnxSizeError(BackendError):
    """An ONNX file declares or builds a tensor larger than the run may allocate."""


# ------------------------------------------------------------------------------------------------ wire format
def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("a number runs past its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one message: an int, or the bytes of a length-delimited field."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("a field runs past its message")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"wire type {wire} is not used by ONNX")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(wire: int, value: int | memoryview) -> list[int]:
    """A repeated int64 field's values, packed or not."""
    if wire == 0:
        return [_signed(int(value))]
    out, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        out.append(_signed(number))
    return out


@dataclass
class _Tensor:
    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 1
    raw: memoryview | None = None
    #: int32/int64_data and float_data as stored (decoded only for a small tensor: weights can be stored there)
    int_chunks: list[tuple[int, int | memoryview]] = field(default_factory=list)
    float_chunks: list[memoryview] = field(default_factory=list)
    external: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        n = 1
        for d in self.dims:
            n *= max(d, 0)
        return n

    @property
    def nbytes(self) -> int:
        return self.count * _SIZES.get(self.data_type, 1)

    def values(self) -> list[float] | None:
        """The tensor's values when small and numeric (a shape, repeats, a scale), else None."""
        if self.count > 64:
            return None
        if self.raw is not None:
            fmt = {7: "q", 6: "i", 1: "f", 11: "d"}.get(self.data_type)
            if fmt is None or len(self.raw) != self.count * struct.calcsize(fmt):
                return None
            return list(struct.unpack(f"<{self.count}{fmt}", bytes(self.raw)))
        ints = [v for wire, chunk in self.int_chunks for v in _ints(wire, chunk)]
        if self.data_type in (6, 7) and len(ints) == self.count:
            return [float(v) for v in ints]
        floats = [v for chunk in self.float_chunks for v in struct.unpack(f"<{len(chunk) // 4}f", bytes(chunk))]
        if self.data_type == 1 and len(floats) == self.count:
            return floats
        return None


def _tensor(buf: memoryview) -> _Tensor:
    t = _Tensor()
    for number, wire, value in _fields(buf):
        if number == 1:
            t.dims += _ints(wire, value)
        elif number == 2:
            t.data_type = int(value)
        elif number in (5, 7):  # int32_data, int64_data
            t.int_chunks.append((wire, value))
        elif number == 4 and wire == 2:  # float_data (packed fixed32)
            t.float_chunks.append(value)
        elif number == 8:
            t.name = bytes(value).decode("utf-8", "replace")
        elif number == 9:
            t.raw = value
        elif number == 13:  # external_data: StringStringEntryProto
            entry = {n: bytes(v).decode("utf-8", "replace") for n, _, v in _fields(value)}
            t.external[entry.get(1, "")] = entry.get(2, "")
    return t


@dataclass
class _Node:
    name: str = ""
    op: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    tensors: dict[str, _Tensor] = field(default_factory=dict)  # tensor attributes by name
    ints: dict[str, list[int]] = field(default_factory=dict)
    graphs: list[memoryview] = field(default_factory=list)


def _node(buf: memoryview) -> _Node:
    n = _Node()
    for number, _wire, value in _fields(buf):
        if number == 1:
            n.inputs.append(bytes(value).decode("utf-8", "replace"))
        elif number == 2:
            n.outputs.append(bytes(value).decode("utf-8", "replace"))
        elif number == 3:
            n.name = bytes(value).decode("utf-8", "replace")
        elif number == 4:
            n.op = bytes(value).decode("utf-8", "replace")
        elif number == 5:
            _attribute(value, n)
    return n


def _attribute(buf: memoryview, node: _Node) -> None:
    name, ints = "", []
    for number, wire, value in _fields(buf):
        if number == 1:
            name = bytes(value).decode("utf-8", "replace")
        elif number == 3:
            ints.append(_signed(int(value)))
        elif number == 8:
            ints += _ints(wire, value)
        elif number == 5:
            node.tensors[name or "value"] = _tensor(value)
        elif number in (6, 11):  # g, graphs: sub-graphs (Loop, If, Scan bodies)
            node.graphs.append(value)
    if ints:
        node.ints[name] = ints


# ------------------------------------------------------------------------------------------------ the checks
def _shown(nbytes: int) -> str:
    """GiB from the size whose MiB would read 1024.0 (a budget a few bytes under 1 GiB is "1.0 GiB")."""
    return f"{nbytes / 2**30:.1f} GiB" if round(nbytes / 2**20, 1) >= 1024 else f"{nbytes / 2**20:.1f} MiB"


@dataclass
class SizeCheck:
    """One file's check: the bound, the file (for messages and external data) and the constants seen."""

    path: Path
    bound: int
    constants: dict[str, _Tensor] = field(default_factory=dict)

    def refuse(self, what: str, nbytes: int, why: str) -> None:
        raise OnnxSizeError(
            f"ONNX model '{self.path.name}' is refused: {what} would take {_shown(nbytes)} ({why}), more "
            f"than the {_shown(self.bound)} a run may use (a share of the memory available, Processing > "
            "Options > Providers > Deep Learning Tools). A small file that asks for that much memory is damaged or "
            "hostile; it was not opened")

    def graph(self, buf: memoryview, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            return
        nodes = []
        for number, _wire, value in _fields(buf):
            if number == 5:  # initializer
                self.initializer(_tensor(value))
            elif number == 1:
                nodes.append(value)
        for value in nodes:
            node = _node(value)
            if node.op == "Constant" and node.outputs and "value" in node.tensors:
                self.constants[node.outputs[0]] = node.tensors["value"]
            self.node(node)
            for sub in node.graphs:
                self.graph(sub, depth + 1)

    def initializer(self, t: _Tensor) -> None:
        self.constants[t.name] = t
        if t.nbytes > self.bound:
            self.refuse(f"the initializer '{t.name}' (dims {t.dims})", t.nbytes, "its declared size")
        if t.external:
            self.external(t)

    def external(self, t: _Tensor) -> None:
        location = t.external.get("location", "")
        target = (self.path.parent / location)
        try:
            size = target.stat().st_size
        except OSError:
            return  # ONNX Runtime says what is missing
        offset, length = t.external.get("offset", "0") or "0", t.external.get("length", "")
        wanted = max(int(length) if length.isdigit() else 0, t.nbytes)
        start = int(offset) if offset.isdigit() else 0
        if start + wanted > size:
            raise OnnxSizeError(
                f"ONNX model '{self.path.name}' is refused: the initializer '{t.name}' declares {wanted:,} bytes "
                f"stored in '{location}' from byte {start:,}, and that file holds {size:,} bytes. The file is damaged "
                "or hostile; it was not opened")

    def value(self, name: str) -> list[float] | None:
        t = self.constants.get(name)
        return t.values() if t is not None else None

    def node(self, node: _Node) -> None:
        shown = f"node '{node.name or (node.outputs[0] if node.outputs else '?')}' ({node.op})"
        count, itemsize = _output_count(node, self)
        if count is not None and count * itemsize > self.bound:
            self.refuse(shown, count * itemsize, f"{count:,} elements from constant inputs")


def _product(values: list[float]) -> int:
    n = 1
    for v in values:
        n *= max(int(v), 0)
    return n


def _known_count(check: SizeCheck, name: str) -> tuple[int, int]:
    """(elements, bytes per element) of a constant input, (1, 1) when unknown: the lower bound."""
    t = check.constants.get(name)
    return (t.count, _SIZES.get(t.data_type, 1)) if t is not None else (1, 1)


def _output_count(node: _Node, check: SizeCheck) -> tuple[int | None, int]:
    """(elements, bytes per element) of the node's output where its constant inputs fix a lower bound."""
    inputs = node.inputs + [""] * 4
    if node.op == "ConstantOfShape":
        shape = check.value(inputs[0])
        value = node.tensors.get("value")
        return (_product(shape), _SIZES.get(value.data_type, 4) if value else 4) if shape is not None else (None, 1)
    if node.op == "Expand":
        shape = check.value(inputs[1])
        return (_product(shape), _known_count(check, inputs[0])[1]) if shape is not None else (None, 1)
    if node.op == "Tile":
        repeats = check.value(inputs[1])
        elements, size = _known_count(check, inputs[0])
        return (_product(repeats) * elements, size) if repeats is not None else (None, 1)
    if node.op == "Range":
        start, limit, delta = (check.value(n) for n in inputs[:3])
        if start and limit and delta and len(start) == len(limit) == len(delta) == 1 and delta[0] != 0:
            count = max(int(-(-(limit[0] - start[0]) // delta[0])), 0)
            return count, _known_count(check, inputs[0])[1]
        return None, 1
    if node.op == "Resize":
        sizes = check.value(inputs[3]) if inputs[3] else None
        return (_product(sizes), _known_count(check, inputs[0])[1]) if sizes else (None, 1)
    return None, 1


def check_onnx_sizes(path: str | os.PathLike[str], bound: int | None) -> None:
    """Refuse (:class:`OnnxSizeError`) an ONNX file that declares or builds from constants a tensor over ``bound``
    bytes; None checks nothing. A file this reader cannot follow is left to ONNX Runtime."""
    if not bound:
        return
    path = Path(path)
    try:
        with open(path, "rb") as f:
            # never closed here: the views into it keep it alive until the check is done, then it is freed
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return  # an empty or unreadable file: ONNX Runtime says what is wrong
    check = SizeCheck(path=path, bound=bound)
    try:
        for number, _wire, value in _fields(memoryview(mapped)):
            if number == 7:  # ModelProto.graph
                check.graph(value)
    except (ValueError, struct.error):
        return  # not a file this reader follows: ONNX Runtime gives its own error

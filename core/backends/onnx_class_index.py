# SPDX-License-Identifier: GPL-2.0-or-later
"""An ONNX model's class scores turned into class indices inside the graph, so ONNX Runtime returns one byte per pixel.

Why: for a class map alone (no probabilities, no test-time augmentation, no blending) the float scores are needed
only for their arg-max; decoding them with numpy costs more than a small model itself (``make bench`` io-8192:
1.3 CPU seconds of decoding against 1.0 in the model).  Appended to the graph, the arg-max runs in ONNX Runtime's
own kernel and the scores never cross to numpy.

:func:`with_class_indices` returns the model's bytes with three nodes and two outputs added; the file on disk is
never changed.  The added outputs are

* :data:`INDEX_OUTPUT`: ``ArgMax(scores + bias, axis, keepdims=0)`` (``Cast`` to uint8 where there are at most 256
  channels), ``bias`` being ``-inf`` on the suppressed channels and 0 elsewhere.  ONNX's ArgMax gives ties to the
  first index, as numpy's;
* :data:`TOTAL_OUTPUT`: ``ReduceSum`` of the raw scores over every axis.  A NaN or an infinity anywhere makes it
  non-finite (so does a sum too large for float32), and the caller then decodes that batch's raw scores as before:
  NaN pixels become NoData exactly as without this path.  When it is finite, every score is finite, adding the bias
  changes no live channel's value, and the arg-max is the one numpy gives.

With ``keep``, both are computed on each tile's centre only (a ``Slice`` first): the padding's pixels are never
written, and a NaN there changes no pixel written either.

The graph is edited as protobuf wire format (fields appended to the GraphProto: a message's repeated fields may
come in any order and accumulate), so the ``onnx`` package is not needed at run time.  Where the model cannot be
edited this way (weights in external files, read relative to the model's folder; an opset older than 7, before
broadcasting Add; more than one graph) :func:`with_class_indices` returns None and the caller keeps numpy.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .onnx_sizes import _fields

INDEX_OUTPUT = "dltools_class_index"
TOTAL_OUTPUT = "dltools_score_total"
_BIAS = "dltools_suppressed_bias"
_RAW_INDEX = "dltools_class_index_int64"
_BIASED = "dltools_biased_scores"
_CROPPED, _STARTS, _ENDS, _AXES = ("dltools_kept_scores", "dltools_kept_starts", "dltools_kept_ends",
                                   "dltools_kept_axes")

# protobuf field numbers (onnx.proto3)
_MODEL_GRAPH, _MODEL_OPSET = 7, 8
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_OUTPUT = 1, 5, 12
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_FLOAT, _UINT8, _INT64 = 1, 2, 7
_ATTR_INT = 2


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _encode_varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _key(number, 0) + _encode_varint(value)


def _int_attribute(name: str, value: int) -> bytes:
    """AttributeProto {name, type INT, i}."""
    return _bytes_field(1, name.encode()) + _int_field(20, _ATTR_INT) + _int_field(3, value)


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str], **ints: int) -> bytes:
    """NodeProto {input*, output*, name, op_type, attribute*} in the default domain."""
    body = b"".join(_bytes_field(1, i.encode()) for i in inputs)
    body += b"".join(_bytes_field(2, o.encode()) for o in outputs)
    body += _bytes_field(3, f"{outputs[0]}_node".encode()) + _bytes_field(4, op.encode())
    body += b"".join(_bytes_field(5, _int_attribute(k, v)) for k, v in ints.items())
    return _bytes_field(_GRAPH_NODE, body)


def _tensor_output(name: str, elem_type: int, rank: int) -> bytes:
    """ValueInfoProto {name, type: TypeProto {tensor_type: {elem_type, shape: ``rank`` dimensions of unknown size}}}."""
    shape = b"".join(_bytes_field(1, b"") for _ in range(rank))
    tensor_type = _int_field(1, elem_type) + _bytes_field(2, shape)
    return _bytes_field(_GRAPH_OUTPUT, _bytes_field(1, name.encode()) + _bytes_field(2, _bytes_field(1, tensor_type)))


def _bias(channels: int, axis: int, rank: int, suppressed: Sequence[int]) -> bytes:
    """TensorProto initializer: -inf on the suppressed channels, 0 elsewhere, shaped to broadcast on ``axis``."""
    dims = [channels if d == axis else 1 for d in range(rank)]
    values = [float("-inf") if c in suppressed else 0.0 for c in range(channels)]
    body = b"".join(_int_field(1, d) for d in dims) + _int_field(2, _FLOAT) + _bytes_field(8, _BIAS.encode())
    body += _bytes_field(9, struct.pack(f"<{channels}f", *values))
    return _bytes_field(_GRAPH_INITIALIZER, body)


def _int64_initializer(name: str, values: Sequence[int]) -> bytes:
    """TensorProto initializer: a one-dimensional int64 tensor (Slice's starts, ends and axes)."""
    body = _int_field(1, len(values)) + _int_field(2, _INT64) + _bytes_field(8, name.encode())
    body += _bytes_field(9, struct.pack(f"<{len(values)}q", *values))
    return _bytes_field(_GRAPH_INITIALIZER, body)


def _crop(scores: str, axis: int, box: tuple[int, int, int, int]) -> bytes:
    """``Slice`` of the scores to rows box[0]:box[1] and columns box[2]:box[3] (the axes after the class axis
    for channels first, before it for channels last), as initializers and the node (opset 10 and later)."""
    axes = [2, 3] if axis == 1 else [1, 2]
    return (_int64_initializer(_STARTS, [box[0], box[2]]) + _int64_initializer(_ENDS, [box[1], box[3]])
            + _int64_initializer(_AXES, axes) + _node("Slice", [scores, _STARTS, _ENDS, _AXES], [_CROPPED]))


def _output_names(graph: memoryview) -> list[str]:
    names = []
    for number, wire, value in _fields(graph):
        if number == _GRAPH_OUTPUT and wire == 2:
            names += [bytes(v).decode("utf-8", "replace") for n, w, v in _fields(value) if n == 1 and w == 2]
    return names


def _has_external_data(graph: memoryview) -> bool:
    """Whether an initializer keeps its values in another file (read relative to the model file's folder)."""
    for number, wire, value in _fields(graph):
        if number == _GRAPH_INITIALIZER and wire == 2:
            for n, _, v in _fields(value):
                if n == _TENSOR_EXTERNAL or (n == _TENSOR_LOCATION and v == 1):
                    return True
    return False


def _default_opset(model: memoryview) -> int:
    """The version of the default ("" or ai.onnx) operator set the model imports (0: none found)."""
    version = 0
    for number, wire, value in _fields(model):
        if number == _MODEL_OPSET and wire == 2:
            entry = {n: v for n, _, v in _fields(value)}
            domain = bytes(entry.get(1, b"")).decode("utf-8", "replace")
            if domain in ("", "ai.onnx"):
                version = int(entry.get(2, 0))
    return version


def with_class_indices(model: bytes, output: int, axis: int, rank: int, channels: int,
                       suppressed: Sequence[int] = (), keep: tuple[int, int, int, int] | None = None) -> bytes | None:
    """``model`` (an ONNX file's bytes) with :data:`INDEX_OUTPUT` and :data:`TOTAL_OUTPUT` added for its output
    number ``output`` (float32 scores of ``rank`` dimensions, ``channels`` classes on ``axis``); the original outputs
    stay.  ``keep`` (row start, row end, column start, column end): only that part of each tile's scores is decoded
    and checked (the tile's centre: the padding's pixels are never written), from opset 10 on.  None where the
    graph cannot be edited this way (see the module's docstring)."""
    view = memoryview(model)
    try:
        fields = list(_fields(view))
        graphs = [i for i, (number, wire, _) in enumerate(fields) if number == _MODEL_GRAPH and wire == 2]
        opset = _default_opset(view)
        if len(graphs) != 1 or opset < 7 or (keep is not None and (opset < 10 or rank != 4)):
            return None
        graph = fields[graphs[0]][2]
        names = _output_names(graph)
        if not 0 <= output < len(names) or _has_external_data(graph):
            return None
    except ValueError:  # not a model this reader understands: ONNX Runtime loaded it, the numpy path runs it
        return None
    if any(name.encode() in model for name in (INDEX_OUTPUT, TOTAL_OUTPUT, _BIAS, _RAW_INDEX, _BIASED, _CROPPED)):
        return None  # a model that already uses these names (a file made by this function) is left alone
    scores = names[output]
    drop = sorted({int(c) for c in suppressed if 0 <= int(c) < channels})
    added = b""
    if keep is not None:
        added += _crop(scores, axis, keep)
        scores = _CROPPED
    if drop:
        added += _bias(channels, axis, rank, drop) + _node("Add", [scores, _BIAS], [_BIASED])
    small = channels <= 256
    added += _node("ArgMax", [_BIASED if drop else scores], [_RAW_INDEX if small else INDEX_OUTPUT], axis=axis,
                   keepdims=0)
    if small:
        added += _node("Cast", [_RAW_INDEX], [INDEX_OUTPUT], to=_UINT8)
    added += _node("ReduceSum", [scores], [TOTAL_OUTPUT], keepdims=0)
    added += _tensor_output(INDEX_OUTPUT, _UINT8 if small else _INT64, rank - 1) + _tensor_output(TOTAL_OUTPUT, _FLOAT, 0)
    new_graph = bytes(graph) + added
    out = bytearray()
    for i, (number, wire, value) in enumerate(fields):
        if i == graphs[0]:
            out += _bytes_field(_MODEL_GRAPH, new_graph)
        else:
            out += _raw_field(number, wire, value)
    return bytes(out)


def _raw_field(number: int, wire: int, value: int | memoryview) -> bytes:
    """One field as it was read by :func:`_fields`, written back."""
    if wire == 0:
        return _int_field(number, int(value))
    if wire == 1:
        return _key(number, 1) + int(value).to_bytes(8, "little")
    if wire == 5:
        return _key(number, 5) + int(value).to_bytes(4, "little")
    return _bytes_field(number, bytes(value))


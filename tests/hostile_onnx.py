# SPDX-License-Identifier: GPL-2.0-or-later
"""Small ONNX files that hang or exhaust the process that runs them (the issue's second review), built with
``onnx.helper`` so that what each does is plain: ONNX Runtime runs only ONNX operators, so these are data,
not code, yet a run of them must still end (cancel, a time limit) and stay within its memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_OPSET = [helper.make_opsetid("", 17)]


def _as_classifier(graph: onnx.GraphProto, bands: int) -> onnx.GraphProto:
    """The graph's ``[batch, bands, h, w]`` output averaged to ``[batch, bands]``: the scores of an object
    classifier with one class per band (for Classify Objects)."""
    graph.node[-1].output[0] = "pixels"
    graph.node.append(helper.make_node("ReduceMean", ["pixels"], ["output"], axes=[2, 3], keepdims=0))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", bands]))
    return graph


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=_OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def endless_loop(path: Path, bands: int = 2, classifier: bool = False) -> Path:
    """output = input, after a ``Loop`` of 2^62 iterations that adds zero: it never finishes (``classifier``:
    averaged to per-band scores)."""
    shape = ["batch", bands, "height", "width"]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "zero"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "input"], ["output"], body=body)],
        "endless",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array(2**62, np.int64), "trips"),
         numpy_helper.from_array(np.array(True), "cond")])
    return _save(_as_classifier(graph, bands) if classifier else graph, path)


def _hog_nodes() -> list:
    """output = input + sum(ones(size)) * 0: the nodes that allocate ``size`` float32 ones (``size`` and ``zero``
    are the caller's tensors)."""
    return [helper.make_node("ConstantOfShape", ["size"], ["big"],
                             value=numpy_helper.from_array(np.array([1.0], np.float32))),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["input", "nothing"], ["output"])]


def memory_hog(path: Path, gib: float = 4.0, bands: int = 2) -> Path:
    """output = input + sum(ones(gib GiB)) * 0: a few hundred bytes of file that take ``gib`` GiB to run."""
    shape = ["batch", bands, "height", "width"]
    n = int(gib * 2**30 / 4)
    graph = helper.make_graph(
        _hog_nodes(),
        "hog",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array([n], np.int64), "size"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return _save(graph, path)


def memory_hog_from_input(path: Path, gib: float = 3.0, bands: int = 2, width: int = 16,
                          classifier: bool = False) -> Path:
    """As :func:`memory_hog`, but the size is ``input width x k`` floats: known only once the model runs, so no
    check of the file can refuse it and the memory watchdog must stop it (``width``: the tiles' width)."""
    shape = ["batch", bands, "height", "width"]
    k = int(gib * 2**30 / 4 / width)
    graph = helper.make_graph(
        [helper.make_node("Shape", ["input"], ["dims"], start=3),
         helper.make_node("Mul", ["dims", "k"], ["size"]),
         *_hog_nodes()],
        "hog_from_input",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array([k], np.int64), "k"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return _save(_as_classifier(graph, bands) if classifier else graph, path)


# ------------------------------------------------------------------------------------------ constant-sized bombs
def _passthrough(nodes: list, initializers: list, path: Path, big: str, bands: int = 2) -> Path:
    """output = input + sum(``big``) * 0, with ``nodes`` making ``big``; saved without the checker (some of these
    declare sizes the checker would read)."""
    shape = ["batch", bands, "height", "width"]
    graph = helper.make_graph(
        nodes + [helper.make_node("ReduceSum", [big], ["total"], keepdims=0, name="sum"),
                 helper.make_node("Cast", ["total"], ["total_f"], to=TensorProto.FLOAT, name="cast"),
                 helper.make_node("Mul", ["total_f", "zero"], ["nothing"], name="times_zero"),
                 helper.make_node("Add", ["input", "nothing"], ["output"], name="add")],
        "bomb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializers + [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=_OPSET)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def constant_of_shape_bomb(path: Path, elements: int, via_constant_node: bool = False) -> Path:
    """``ConstantOfShape`` of a constant shape: float32 x ``elements`` (an initializer, or a Constant node)."""
    nodes = [helper.make_node("ConstantOfShape", ["size"], ["big"], name="the_bomb",
                              value=numpy_helper.from_array(np.array([1.0], np.float32)))]
    if via_constant_node:
        return _passthrough([helper.make_node("Constant", [], ["size"], value=_ints("v", [elements]))] + nodes, [],
                            path, "big")
    return _passthrough(nodes, [_ints("size", [elements])], path, "big")


def expand_bomb(path: Path, elements: int) -> Path:
    nodes = [helper.make_node("Expand", ["one", "shape"], ["big"], name="the_bomb")]
    return _passthrough(nodes, [numpy_helper.from_array(np.ones((1,), np.float32), "one"),
                                _ints("shape", [elements])], path, "big")


def tile_bomb(path: Path, elements: int) -> Path:
    nodes = [helper.make_node("Tile", ["four", "repeats"], ["big"], name="the_bomb")]
    return _passthrough(nodes, [numpy_helper.from_array(np.ones((4,), np.float32), "four"),
                                _ints("repeats", [elements // 4])], path, "big")


def range_bomb(path: Path, elements: int) -> Path:
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["big"], name="the_bomb")]
    return _passthrough(nodes, [numpy_helper.from_array(np.array(0.0, np.float32), "start"),
                                numpy_helper.from_array(np.array(float(elements), np.float32), "limit"),
                                numpy_helper.from_array(np.array(1.0, np.float32), "delta")], path, "big")


def resize_bomb(path: Path, side: int) -> Path:
    """``Resize`` of a 1x1x2x2 constant to constant ``sizes`` 1x1 x side x side."""
    nodes = [helper.make_node("Resize", ["small", "", "", "sizes"], ["big"], name="the_bomb", mode="nearest")]
    return _passthrough(nodes, [numpy_helper.from_array(np.ones((1, 1, 2, 2), np.float32), "small"),
                                _ints("sizes", [1, 1, side, side])], path, "big")


def declared_initializer_bomb(path: Path, elements: int) -> Path:
    """An initializer whose dims declare ``elements`` floats while it holds four bytes."""
    big = onnx.TensorProto()
    big.name, big.data_type = "weights", TensorProto.FLOAT
    big.dims.extend([elements])
    big.raw_data = b"\0\0\0\0"
    return _passthrough([helper.make_node("Identity", ["weights"], ["big"], name="ident")], [big], path, "big")


def external_data_bomb(path: Path, elements: int) -> Path:
    """An initializer stored outside the file (``path``.bin, 16 bytes) whose dims declare ``elements`` floats."""
    data = path.with_suffix(".bin")
    data.write_bytes(b"\0" * 16)
    big = onnx.TensorProto()
    big.name, big.data_type = "weights", TensorProto.FLOAT
    big.dims.extend([elements])
    big.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", data.name), ("offset", "0"), ("length", str(elements * 4))):
        entry = big.external_data.add()
        entry.key, entry.value = key, value
    return _passthrough([helper.make_node("Identity", ["weights"], ["big"], name="ident")], [big], path, "big")


def loop_body_bomb(path: Path, elements: int) -> Path:
    """The ``ConstantOfShape`` inside a ``Loop``'s body (one trip)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("ConstantOfShape", ["inner_size"], ["inner_big"], name="the_inner_bomb",
                          value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("ReduceSum", ["inner_big"], ["v_out"], keepdims=0)],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
        [_ints("inner_size", [elements])])
    nodes = [helper.make_node("Loop", ["trips", "cond", "zero"], ["big"], body=body, name="loop")]
    return _passthrough(nodes, [numpy_helper.from_array(np.array(1, np.int64), "trips"),
                                numpy_helper.from_array(np.array(True), "cond")], path, "big")

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


def memory_hog(path: Path, gib: float = 4.0, bands: int = 2) -> Path:
    """output = input + sum(ones(gib GiB)) * 0: a few hundred bytes of file that take ``gib`` GiB to run."""
    shape = ["batch", bands, "height", "width"]
    n = int(gib * 2**30 / 4)
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["size"], ["big"],
                          value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "zero"], ["nothing"]),
         helper.make_node("Add", ["input", "nothing"], ["output"])],
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
         helper.make_node("ConstantOfShape", ["size"], ["big"],
                          value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "zero"], ["nothing"]),
         helper.make_node("Add", ["input", "nothing"], ["output"])],
        "hog_from_input",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array([k], np.int64), "k"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return _save(_as_classifier(graph, bands) if classifier else graph, path)

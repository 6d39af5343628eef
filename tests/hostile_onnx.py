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


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=_OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def endless_loop(path: Path, bands: int = 2) -> Path:
    """output = input, after a ``Loop`` of 2^62 iterations that adds zero: it never finishes."""
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
    return _save(graph, path)


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

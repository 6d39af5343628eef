# SPDX-License-Identifier: GPL-2.0-or-later
"""ONNX Runtime I/O binding: the model's inputs and outputs live on the session's device between calls.

Why: with the CUDA provider, a plain ``session.run`` allocates device memory for every input and output of every
call and copies through pageable host memory. Binding keeps one set of device buffers per batch shape (a run
has one or two: the full batches and the last, smaller one), fills the inputs in place and lets ONNX Runtime
write the outputs where they were the last time, so a call costs the copies and the model, nothing else. The same
code works on the CPU provider (the buffers are host memory there), which is how it is tested without a GPU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import TensorInfo

#: batch shapes whose buffers are kept (least recently used dropped first): full batches, the last one, a retry
MAX_SHAPES = 4


@dataclass
class _Slot:
    """The device buffers of one batch shape."""

    inputs: list[Any]
    #: the outputs ONNX Runtime allocated on the first call, bound again on later calls; None until then
    outputs: list[Any] | None = None
    reusable: bool = True
    runs: int = 0


def outputs_follow_inputs(inputs: list[TensorInfo], outputs: list[TensorInfo]) -> bool:
    """Whether every output's shape is fixed by the input's: each dimension static or named like an input's dynamic
    dimension ("batch"). Only then can last call's output buffers be bound again; a detector's "num_boxes" varies
    with what the model finds, and ONNX Runtime would refuse a buffer of the wrong size."""
    names = {d for info in inputs for d in (info.declared or ()) if isinstance(d, str)}
    for info in outputs:
        for dim in info.declared or (None,):
            if isinstance(dim, int) and dim > 0:
                continue
            if not (isinstance(dim, str) and dim in names):
                return False
    return True


class IoBinder:
    """Runs a session through one ``IOBinding``, with buffers on ``device_type`` ("cuda" or "cpu") reused per shape."""

    def __init__(self, ort: Any, session: Any, inputs: list[TensorInfo], outputs: list[TensorInfo],
                 device_type: str, device_id: int = 0) -> None:
        self._ort = ort
        self._session = session
        self._binding = session.io_binding()
        self._input_names = [i.name for i in inputs]
        self._output_names = [o.name for o in outputs]
        self._reuse_outputs = outputs_follow_inputs(inputs, outputs)
        self.device_type = device_type
        self.device_id = device_id
        self._slots: OrderedDict[tuple, _Slot] = OrderedDict()

    def slot(self, arrays: list[np.ndarray]) -> _Slot:
        """The buffers for these arrays' shapes and types, made on first use."""
        key = tuple((a.shape, a.dtype.str) for a in arrays)
        found = self._slots.get(key)
        if found is not None:
            self._slots.move_to_end(key)
            return found
        values = [self._ort.OrtValue.ortvalue_from_shape_and_type(a.shape, a.dtype, self.device_type, self.device_id)
                  for a in arrays]
        made = _Slot(values, reusable=self._reuse_outputs)
        self._slots[key] = made
        while len(self._slots) > MAX_SHAPES:
            self._slots.popitem(last=False)
        return made

    def run(self, arrays: list[np.ndarray], options: Any = None) -> list[np.ndarray]:
        """One call: inputs copied into the shape's buffers, outputs copied back to new host arrays (the caller
        keeps them while the next call overwrites the device buffers)."""
        slot = self.slot(arrays)
        binding = self._binding
        for name, value, array in zip(self._input_names, slot.inputs, arrays):
            value.update_inplace(array)
            binding.bind_ortvalue_input(name, value)
        for i, name in enumerate(self._output_names):
            if slot.outputs is not None:
                binding.bind_ortvalue_output(name, slot.outputs[i])
            else:
                binding.bind_output(name, self.device_type, self.device_id)
        binding.synchronize_inputs()
        self._session.run_with_iobinding(binding, options)
        binding.synchronize_outputs()
        if slot.outputs is None and slot.reusable:
            slot.outputs = list(binding.get_outputs())
        slot.runs += 1
        # new host arrays on every device (the CPU provider's included: tested), never views of the kept buffers
        return list(binding.copy_outputs_to_cpu())

    def buffers(self, arrays: list[np.ndarray]) -> tuple[list[int], list[int]]:
        """The device addresses of the inputs' and outputs' buffers for these shapes (for tests and diagnostics)."""
        slot = self.slot(arrays)
        return [v.data_ptr() for v in slot.inputs], [v.data_ptr() for v in slot.outputs or []]

# SPDX-License-Identifier: GPL-2.0-or-later
"""Which device a run would use, said without loading the model (the dialog shows it next to MODEL)."""

from __future__ import annotations

from ...model.definition import ModelDefinition


def device_summary(md: ModelDefinition, kind: str = "auto", gpu_id: int = 0) -> str:
    """Which device a run would use, without loading the model (what the dialog shows next to MODEL)."""
    import importlib.util
    import sys

    if md.custom_function:
        where = "the CPU" if kind != "gpu" else f"GPU {gpu_id}"
        return f"the model's own Python function, told to use {where} (device {-1 if kind != 'gpu' else gpu_id})"
    if (md.model_format_kind or "onnx") == "onnx":
        from ...backends.onnx_backend import import_onnxruntime
        from ...errors import DependencyMissingError

        try:
            ort = import_onnxruntime()
        except DependencyMissingError:
            return "ONNX Runtime is not installed: install it with Install Inference Libraries (dltools:installlibraries)"
        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
        if kind == "cpu" or (kind == "auto" and not gpu):
            return "CPU (ONNX Runtime)" + ("" if gpu or kind == "cpu" else "; no GPU provider is available")
        return f"GPU {gpu_id} (ONNX Runtime, CUDA)" if gpu else "GPU requested, but ONNX Runtime has no GPU provider"
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed: install it with Install Inference Libraries (dltools:installlibraries)"
    if kind == "cpu":
        return "CPU (PyTorch)"
    if "torch" in sys.modules:  # already loaded: asking costs nothing
        gpu = bool(sys.modules["torch"].cuda.is_available())
        return f"GPU {gpu_id} (PyTorch, CUDA)" if gpu else ("CPU (PyTorch; no CUDA device)" if kind == "auto"
                                                            else "GPU requested, but PyTorch sees no CUDA device")
    return "PyTorch: the GPU when CUDA is available at run time, else the CPU" if kind == "auto" else \
        f"GPU {gpu_id} (PyTorch, if CUDA is available at run time)"

# SPDX-License-Identifier: GPL-2.0-or-later
"""The libraries the installer offers, in the order of the tool's LIBRARY choices (a public order: never reorder)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Library:
    """One installer choice: what pip is asked for and what a check imports."""

    key: str
    label: str
    requirements: tuple[str, ...]
    modules: tuple[str, ...]
    #: distributions that provide the same modules (onnxruntime and onnxruntime-gpu): choosing one drops the other
    replaces: tuple[str, ...] = ()
    download: str = ""
    size: str = ""  # the short form, for the dialog's list


LIBRARIES: tuple[Library, ...] = (
    Library(key="onnxruntime", label="ONNX Runtime for the CPU", requirements=("onnxruntime",),
            modules=("onnxruntime",), replaces=("onnxruntime-gpu",), download="about 15-30 MB", size="15-30 MB"),
    Library(key="onnxruntime-gpu", label="ONNX Runtime for NVIDIA GPUs (CUDA)", requirements=("onnxruntime-gpu",),
            modules=("onnxruntime",), replaces=("onnxruntime",),
            download="about 200-300 MB; needs a matching NVIDIA driver and CUDA/cuDNN", size="200-300 MB"),
    Library(key="torch", label="PyTorch + torchvision (TorchScript, arcgis.learn)",
            requirements=("torch", "torchvision"), modules=("torch", "torchvision"),
            download="about 200 MB on Windows and macOS; on Linux 2.9 GB to download and 5.4 GB on disk, NVIDIA CUDA "
                     "libraries included (torch 2.14.1)",
            size="0.2-3 GB"),
    Library(key="dask", label="Dask (clusters)", requirements=("dask[distributed]",), modules=("dask", "distributed"),
            download="about 5 MB", size="5 MB"),
)

#: what a check reports, in this order (numpy is QGIS's own and is never installed by the plugin)
CHECKED_MODULES: tuple[str, ...] = ("onnxruntime", "torch", "torchvision", "dask", "distributed", "numpy")


def library(key: str) -> Library:
    for lib in LIBRARIES:
        if lib.key == key:
            return lib
    raise KeyError(f"unknown library '{key}': one of {', '.join(lib.key for lib in LIBRARIES)}")

# SPDX-License-Identifier: GPL-2.0-or-later
"""Tiny models and rasters built by the tests themselves, with outputs a test can predict exactly.

Models are small torch modules with fixed integer-valued weights, exported both to
TorchScript and to ONNX, so every test can compute the expected output with numpy.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()


# ------------------------------------------------------------------------------------------ rasters
def write_raster(path: Path, array: np.ndarray, *, origin: tuple[float, float] = (500000.0, 4000000.0),
                 cell: float | tuple[float, float] = 1.0, epsg: int | None = 32633, nodata: float | None = None,
                 block: int | None = 64) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF with a north-up grid."""
    arr = array if array.ndim == 3 else array[None]
    dtype = {np.dtype("uint8"): gdal.GDT_Byte, np.dtype("uint16"): gdal.GDT_UInt16, np.dtype("int16"): gdal.GDT_Int16,
             np.dtype("int32"): gdal.GDT_Int32, np.dtype("float32"): gdal.GDT_Float32,
             np.dtype("float64"): gdal.GDT_Float64}[arr.dtype]
    opts = ["TILED=YES", f"BLOCKXSIZE={block}", f"BLOCKYSIZE={block}"] if block else []
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0], dtype, opts)
    cx, cy = (cell, cell) if isinstance(cell, (int, float)) else cell
    ds.SetGeoTransform((origin[0], cx, 0.0, origin[1], 0.0, -cy))
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    for i in range(arr.shape[0]):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(arr[i])
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds.FlushCache()
    ds = None
    return path


def read_raster(path: Path | str) -> np.ndarray:
    ds = gdal.Open(str(path))
    out = ds.ReadAsArray()
    ds = None
    return out


# ------------------------------------------------------------------------------------------ models
def _torch():
    import torch

    return torch


def conv_module(in_ch: int, out_ch: int, kernel: int, weight: np.ndarray | None = None,
                bias: Sequence[float] | None = None, seed: int = 0):
    """A Conv2d with 'same' zero padding and fixed weights (receptive field = kernel)."""
    torch = _torch()
    conv = torch.nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=True)
    rng = np.random.default_rng(seed)
    w = weight if weight is not None else rng.integers(-2, 3, size=(out_ch, in_ch, kernel, kernel)).astype(np.float32)
    b = np.asarray(bias if bias is not None else np.zeros(out_ch), np.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.asarray(w, np.float32)))
        conv.bias.copy_(torch.from_numpy(b))
    conv.eval()
    return conv


def numpy_conv_same(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reference: what :func:`conv_module` computes on a whole (C,H,W) image (float64)."""
    c_out, c_in, k, _ = weight.shape
    p = k // 2
    padded = np.pad(image.astype(np.float64), ((0, 0), (p, p), (p, p)))
    h, w = image.shape[1:]
    out = np.zeros((c_out, h, w))
    for o in range(c_out):
        acc = np.full((h, w), float(bias[o]))
        for i in range(c_in):
            for dy in range(k):
                for dx in range(k):
                    acc += weight[o, i, dy, dx] * padded[i, dy:dy + h, dx:dx + w]
        out[o] = acc
    return out


def numpy_conv_mirror(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reference for the engine's default edge rule: the whole image mirrored (reflected) past its edges by the
    kernel's radius, then :func:`numpy_conv_same` and the margin cut off; exact wherever a tile holds the pixel's
    whole neighbourhood (padding >= radius)."""
    p = weight.shape[2] // 2
    padded = np.pad(image, ((0, 0), (p, p), (p, p)), mode="reflect")
    out = numpy_conv_same(padded, weight, bias)
    return out[:, p:out.shape[1] - p, p:out.shape[2] - p]


def export_onnx(module, path: Path, in_ch: int, tile: int, *, fixed_batch: int | None = None,
                dynamic_hw: bool = False, opset: int = 13, metadata: dict | None = None, n_inputs: int = 1) -> Path:
    """Export a torch module to ONNX (batch dynamic unless ``fixed_batch``)."""
    torch = _torch()
    example = tuple(torch.zeros(fixed_batch or 1, in_ch, tile, tile) for _ in range(n_inputs))
    names = ["input"] if n_inputs == 1 else [f"input{i}" for i in range(n_inputs)]
    axes: dict = {}
    if fixed_batch is None or dynamic_hw:
        for n in names:
            axes[n] = {}
            if fixed_batch is None:
                axes[n][0] = "batch"
            if dynamic_hw:
                axes[n].update({2: "height", 3: "width"})
        axes["output"] = {0: "batch"} if fixed_batch is None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=False, input_names=names, output_names=["output"],
                          dynamic_axes=axes or None, opset_version=opset)
    if metadata:
        import onnx

        model = onnx.load(str(path))
        for k, v in metadata.items():
            entry = model.metadata_props.add()
            entry.key = k
            entry.value = v if isinstance(v, str) else json.dumps(v)
        onnx.save(model, str(path))
    return path


def export_torchscript(module, path: Path, emd: dict | None = None) -> Path:
    """TorchScript via torch.jit.script; ``emd`` is stored as the extra file dltools.json."""
    torch = _torch()
    scripted = torch.jit.script(module)
    extra = {"dltools.json": json.dumps(emd)} if emd else {}
    torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


def write_emd(path: Path, model_file: str, *, model_type: str = "ImageClassification", tile: int = 32,
              bands: Sequence[int] = (0, 1, 2), classes: Sequence[tuple[int, str, tuple[int, int, int]]] = (),
              framework: str = "ONNX", **extra) -> Path:
    data = {
        "Framework": framework, "ModelConfiguration": "test", "ModelType": model_type, "ModelFile": model_file,
        "ImageHeight": tile, "ImageWidth": tile, "ExtractBands": list(bands),
        "Classes": [{"Value": v, "Name": n, "Color": list(c)} for v, n, c in classes],
    }
    data.update(extra)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ progress
class RecordingProgress:
    """A core Progress that keeps what the engine said and can cancel after ``cancel_after`` progress updates."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.percents: list[float] = []
        self.cancel_after = cancel_after

    @property
    def updates(self) -> int:
        return len(self.percents)

    def set_progress(self, percent: float) -> None:
        self.percents.append(percent)

    def is_canceled(self) -> bool:
        return self.cancel_after is not None and self.updates >= self.cancel_after

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def debug(self, message: str) -> None:
        pass

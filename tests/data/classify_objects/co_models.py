# SPDX-License-Identifier: GPL-2.0-or-later
"""Models, rasters and geometries for the Classify Objects tests, with outputs a test can predict exactly.

The "mean model" reads one band and scores class ``k`` with ``-(2*m - k)**2 * sharpness``, where ``m`` is the
mean of the chip's non-zero pixels: the winning class is ``round(2*m)``, so its label ``m<value>`` reads back
the chip's mean to half a unit.  On :func:`grid_raster` band 1 holds ``column + 1`` and band 2 ``row + 1``,
so the label tells exactly which pixels (and which blackened ones) the chip held.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from builders import export_onnx, export_torchscript, write_raster

ORIGIN = (500000.0, 4000000.0)
EPSG = 32633
N = 64
#: Mean-model classes: values 0..MEAN_CLASSES-1, names m0, m0.5, m1, ...
MEAN_CLASSES = 2 * N + 4


def mean_class_name(k: int) -> str:
    return f"m{k / 2:g}"


def expected_mean_probabilities(two_m: float, sharpness: float = 1.0) -> np.ndarray:
    """What the mean model's softmax gives for a chip whose doubled mean is ``two_m``."""
    k = np.arange(MEAN_CLASSES, dtype=np.float64)
    logits = -((two_m - k) ** 2) * sharpness
    e = np.exp(logits - logits.max())
    return e / e.sum()


def mean_module(n_classes: int = MEAN_CLASSES, sharpness: float = 1.0, softmax: bool = False):
    import torch

    class MeanOfNonZero(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("k", torch.arange(n_classes, dtype=torch.float32))
            self.sharpness = sharpness
            self.softmax = softmax

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b0 = x[:, 0]
            mask = (b0 != 0).to(torch.float32)
            n = mask.sum(dim=(1, 2)).clamp(min=1.0)
            m = (b0 * mask).sum(dim=(1, 2)) / n
            logits = -((2.0 * m[:, None] - self.k[None, :]) ** 2) * self.sharpness
            if self.softmax:
                return torch.softmax(logits, dim=1)
            return logits

    return MeanOfNonZero().eval()


def grid_raster(path: Path, n: int = N, nodata: float | None = None, dtype: str = "uint16",
                nodata_box: tuple[int, int, int, int] | None = None, epsg: int | None = EPSG) -> Path:
    """Band 1 = column + 1, band 2 = row + 1, band 3 = 100; ``nodata_box`` (c0, r0, c1, r1) is set to 0 = NoData."""
    rows, cols = np.mgrid[0:n, 0:n]
    arr = np.stack([cols + 1, rows + 1, np.full_like(cols, 100)]).astype(dtype)
    if nodata_box is not None:
        c0, r0, c1, r1 = nodata_box
        arr[:, r0:r1, c0:c1] = 0
    return write_raster(path, arr, origin=ORIGIN, cell=1.0, epsg=epsg, nodata=nodata)


def write_object_emd(path: Path, model_file: str, *, tile: int | tuple[int, int], bands: list[int], classes: list,
                     crop_fixed: int | None = 1, blacken: int | None = 0, framework: str = "ONNX", **extra) -> Path:
    w, h = (tile, tile) if isinstance(tile, int) else tile
    data = {"Framework": framework, "ModelConfiguration": "FeatureClassifier", "ModelType": "ObjectClassification",
            "ModelFile": model_file, "ImageHeight": h, "ImageWidth": w, "ExtractBands": bands,
            "Classes": [{"Value": v, "Name": n, "Color": [0, 0, 0]} for v, n in classes]}
    if crop_fixed is not None:
        data["CropSizeFixed"] = crop_fixed
    if blacken is not None:
        data["BlackenAroundFeature"] = blacken
    data.update(extra)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def mean_model_files(folder: Path, tile: int | tuple[int, int] = 7, sharpness: float = 1.0) -> dict[str, Path]:
    """The mean model as ONNX and TorchScript in ``folder`` (made once per folder)."""
    w, h = (tile, tile) if isinstance(tile, int) else tile
    onnx_path = folder / f"mean_{w}x{h}.onnx"
    ts_path = folder / f"mean_{w}x{h}.pt"
    if not onnx_path.exists():
        module = mean_module(sharpness=sharpness)
        import torch

        example = torch.zeros(1, 1, h, w)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, str(onnx_path), dynamo=False, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=13)
        export_torchscript(module, ts_path)
    return {"onnx": onnx_path, "torchscript": ts_path}


def mean_emd(folder: Path, *, band: int = 0, tile: int | tuple[int, int] = 7, crop_fixed: int | None = 1,
             blacken: int | None = 0, kind: str = "onnx", name: str | None = None, **extra) -> Path:
    files = mean_model_files(folder, tile)
    classes = [(k, mean_class_name(k)) for k in range(MEAN_CLASSES)]
    w, h = (tile, tile) if isinstance(tile, int) else tile
    emd = folder / (name or f"mean_b{band}_{w}x{h}_c{crop_fixed}_k{blacken}_{kind}.emd")
    return write_object_emd(emd, files[kind].name, tile=tile, bands=[band], classes=classes, crop_fixed=crop_fixed,
                            blacken=blacken, framework="ONNX" if kind == "onnx" else "PyTorch", **extra)


# ------------------------------------------------------------------------------------------------ geometry
def to_map(c: float, r: float) -> tuple[float, float]:
    """Pixel coordinates (column, row; 0,0 = the raster's top-left corner) -> map coordinates."""
    return ORIGIN[0] + c, ORIGIN[1] - r


def wkt_point(c: float, r: float) -> str:
    x, y = to_map(c, r)
    return f"POINT ({x!r} {y!r})"


def wkt_line(*pts: tuple[float, float]) -> str:
    return "LINESTRING (" + ", ".join("{!r} {!r}".format(*to_map(c, r)) for c, r in pts) + ")"


def wkt_polygon(*pts: tuple[float, float]) -> str:
    ring = list(pts) + [pts[0]]
    return "POLYGON ((" + ", ".join("{!r} {!r}".format(*to_map(c, r)) for c, r in ring) + "))"


def wkt_rect(c0: float, r0: float, c1: float, r1: float) -> str:
    return wkt_polygon((c0, r0), (c1, r0), (c1, r1), (c0, r1))


def export_tiny_classifier(folder: Path, bands: int = 3, tile: int = 16, classes: int = 3) -> dict[str, Path]:
    """A small conv classifier with fixed random weights, exported to ONNX and TorchScript (logits [B, classes])."""
    import torch

    torch.manual_seed(7)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(bands, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, classes)).eval()
    onnx_path = export_onnx(module, folder / "tiny.onnx", bands, tile)
    ts_path = export_torchscript(module, folder / "tiny.pt")
    return {"onnx": onnx_path, "torchscript": ts_path, "module": module}

# SPDX-License-Identifier: GPL-2.0-or-later
"""`make bench` case train-s2: Train Deep Learning Model on real imagery (a benchmark, not a test).

UnetClassifier (resnet18, random initialisation) is trained on Classified_Tiles chips exported by the plugin's own
exporter from the upper half of ../shared/testdata/sentinel2/sentinel2_6band.tif (512 x 512, 6 bands float32
reflectance) and its hand-made mask, then Classify Pixels classifies the lower half; printed: Cohen's kappa against
the mask there, overall accuracy, seconds per epoch.  The mask's values are regrouped into the three classes the
upstream project scores (0 shadow -> 3, 1/2/3 clear -> 1, 4 cloud -> 2; 0 is "no class" in Classified_Tiles).

Settings by environment: BENCH_TRAIN_EPOCHS (10), BENCH_TRAIN_CHIP (64), BENCH_TRAIN_THREADS (0: all cores).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "testdata" / "sentinel2"
REGROUP = np.array([3, 1, 1, 1, 2], np.uint8)  # reference value -> class (1 clear, 2 cloud, 3 shadow)


def _write(path: Path, array: np.ndarray, like, first_row: int) -> None:  # noqa: ANN001 - a GDAL dataset
    """``array`` as a GeoTIFF lying where rows ``first_row``.. of ``like`` lie."""
    from osgeo import gdal

    arr = array if array.ndim == 3 else array[None]
    kind = gdal.GDT_Float32 if arr.dtype == np.float32 else gdal.GDT_Byte
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0], kind)
    gt = list(like.GetGeoTransform())
    gt[3] += first_row * gt[5]
    ds.SetGeoTransform(gt)
    ds.SetProjection(like.GetProjection())
    for b in range(arr.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(arr[b])
    ds = None


def _halves(work: Path) -> dict[str, Path]:
    """Upper and lower halves of the image and of the regrouped mask, georeferenced where they lie."""
    from osgeo import gdal

    src = gdal.Open(str(DATA / "sentinel2_6band.tif"))
    image = src.ReadAsArray().astype(np.float32)
    mask = REGROUP[gdal.Open(str(DATA / "sentinel2_refmask.tif")).ReadAsArray().astype(np.int64)]
    half = image.shape[1] // 2
    out = {}
    for name, rows in (("upper", slice(0, half)), ("lower", slice(half, None))):
        for what, arr in (("image", image[:, rows]), ("mask", mask[rows])):
            path = work / f"{name}_{what}.tif"
            _write(path, arr, src, rows.start or 0)
            out[f"{name}_{what}"] = path
    return out


def kappa(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(Cohen's kappa, overall accuracy)."""
    classes = int(max(truth.max(), predicted.max())) + 1
    m = np.bincount(truth.ravel() * classes + predicted.ravel(), minlength=classes * classes).reshape(classes, -1)
    total = m.sum()
    observed = np.trace(m) / total
    expected = (m.sum(axis=0) * m.sum(axis=1)).sum() / total ** 2
    return float((observed - expected) / (1 - expected)), float(observed)


def run_train_case(work: Path, device: str) -> dict:
    import shutil

    from dltools.core.backends import DeviceRequest
    from dltools.core.model.loader import load_model_definition
    from dltools.core.progress import NullProgress
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels
    from dltools.core.tools.train.loop import TrainSettings
    from dltools.core.tools.train.pipeline import TrainRequest, train_model
    from dltools.core.tools.training_data.export import ClassData, export_training_data
    from dltools.core.tools.training_data.settings import ExportSettings

    if not DATA.is_dir():
        return {"case": "train-s2", "skipped": f"{DATA} is absent"}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    paths = _halves(work)
    chip = int(os.environ.get("BENCH_TRAIN_CHIP", "64"))
    export_training_data(str(paths["upper_image"]), str(work / "chips"), ClassData(raster=str(paths["upper_mask"])),
                         ExportSettings(tile_x=chip, tile_y=chip, stride_x=chip // 2, stride_y=chip // 2))
    epochs = int(os.environ.get("BENCH_TRAIN_EPOCHS", "10"))
    device_request = DeviceRequest(device, threads=int(os.environ.get("BENCH_TRAIN_THREADS", "0")))
    began = time.perf_counter()
    result = train_model(TrainRequest(str(work / "chips"), str(work / "s2_unet"), TrainSettings(
        model_type="UnetClassifier", backbone="resnet18", max_epochs=epochs, batch_size=8, learning_rate=None,
        validation_percent=10, stop_training=False), device=device_request), NullProgress())
    train_s = time.perf_counter() - began
    out = work / "lower_classes.tif"
    classify_pixels(str(paths["lower_image"]), load_model_definition(str(result.files["emd"])), str(out),
                    device=device_request)
    from osgeo import gdal

    predicted = gdal.Open(str(out)).ReadAsArray().astype(np.int64)
    truth = gdal.Open(str(paths["lower_mask"])).ReadAsArray().astype(np.int64)
    k, accuracy = kappa(truth, predicted)
    history = result.outcome.history
    return {"case": "train-s2", "kappa": k, "accuracy": accuracy, "epochs": len(history),
            "chips": sum(1 for _ in (work / "chips" / "images").glob("*.tif")), "train_s": train_s,
            "s_per_epoch": float(np.mean([h.seconds for h in history])), "learning_rate": result.outcome.learning_rate,
            "best_epoch": result.outcome.best_epoch}

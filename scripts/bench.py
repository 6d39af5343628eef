# SPDX-License-Identifier: GPL-2.0-or-later
"""`make bench`: speed and memory of Classify Pixels (a benchmark, not a test).

Cases (each in its own process, so peak RSS is per case):
  unet-4096   synthetic 4-band 4096 x 4096 raster, a small U-Net built here (256 px tiles, padding 32)
  unet-16384  the same model on 16384 x 16384
  ukis-4096   the real ukis-csmask cloud model (PyPI ukis-csmask==1.0.0, 4-band L2A) on 4096 x 4096
  detect-4096 Detect Objects: a 4096 x 4096 scene of 99,225 squares found by the tests' exact YOLOv8-layout
              square finder (tests/detection_models.py; 256 px tiles, padding 16, batch 4)
  train-s2    Train Deep Learning Model: UnetClassifier resnet18 from random weights on chips exported from the
              upper half of ../shared/testdata/sentinel2 and its mask, Classify Pixels on the lower half; prints
              Cohen's kappa there and seconds per epoch (scripts/bench_train.py)
  merge-100k  the seam merge and the Non Maximum Suppression rule alone, on 100,000 objects
  trivial-4096, trivial-wide, trivial-tall
              the block engine's memory: a trivial (1x1 convolution) model on 4096 x 4096, 65536 x 1024 and
              1024 x 65536 rasters, where reading, decoding and writing dominate (target: peak RSS within 60 MB)
  trivial-wide-local2, unet-4096-local2
              the same runs on a Dask LocalCluster of 2 worker processes (SCHEDULER local:2): peak RSS of the
              client and of the largest worker, throughput against the in-process run
  io-4096, io-8192, io-16384, compress-8192
              Classify Pixels beside the minimal loop in one process, the time per stage, and the output compressions
              compared (scripts/bench_io.py); targets: at most 0.5x the loop at 8192^2, 0.7x at 4096^2
  online-2048 Classify Pixels (a 3-band small U-Net) on XYZ tiles served from 127.0.0.1 by another process
              (tests/tile_server.py) against the same pixels from the GeoTIFF: cold (every tile fetched) and warm
              (GDAL's tile cache); target: cold within 1.3x of the GeoTIFF (requests overlap the model)
  unet-4096-torch, unet-4096-torch-half
              the small U-Net as TorchScript (PyTorch backend), without and with half_precision (float16 autocast
              on CUDA; the -half case is refused on the CPU): the cases `make gpu-check` adds for PyTorch
  objects-100k, objects-10m, chips-10k
              Detect Objects at 99,856 and 9,998,244 objects (the tests' lattice detector on a dark sparse raster) and
              Classify Objects on 10,000 points, each beside a minimal loop of its own (GDAL reads, ONNX Runtime,
              numpy decode, OGR writes), each program in a fresh process: objects or chips per second, their ratio,
              peak RSS of each (scripts/bench_objects.py)
  unet-4096-child, trivial-4096-child
              the same runs in a child process, as the algorithms run them by default (core/runner): in the child
              Python kept ready since the last run (started and warm before the timing); its peak RSS is the
              "worker" column
Printed per case: wall seconds, seconds inside the model, their ratio (pipeline overhead), megapixels per
second and peak RSS; the detection cases also print objects per second and merge seconds.  Targets: ratio
<= 1.05 for the model-bound pixel cases; peak RSS of 16384^2 within 150 MB of 4096^2.  Rasters and models
are generated once into build/bench/ and reused.

Usage: make bench  [BENCH_CASES="unet-4096 unet-16384 ukis-4096"]  [BENCH_DEVICE=auto|cpu|gpu]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "build" / "bench"
WHEELS = ROOT / "build" / "cache" / "wheels"
CASES = {"unet-4096": ("unet", 4096), "unet-16384": ("unet", 16384), "ukis-4096": ("ukis", 4096),
         "detect-4096": ("detect", 4096), "merge-100k": ("merge", 100_000),
         "trivial-4096": ("trivial", 4096), "trivial-wide": ("trivial", 4096), "trivial-tall": ("trivial", 4096),
         "trivial-wide-local2": ("trivial", 4096), "unet-4096-local2": ("unet", 4096), "online-2048": ("online", 2048),
         "train-s2": ("train", 512), "unet-4096-child": ("unet", 4096),
         "trivial-4096-child": ("trivial", 4096), "io-4096": ("io", 4096), "io-8192": ("io", 8192),
         "io-16384": ("io", 16384), "compress-8192": ("compress", 8192),
         "objects-100k": ("objects", 948), "objects-10m": ("objects", 9486), "chips-10k": ("chips", 4096)}
#: the small U-Net as TorchScript (PyTorch backend), and the same with half_precision (a GPU case: refused on the CPU)
CASES.update({"unet-4096-torch": ("unet_torch", 4096), "unet-4096-torch-half": ("unet_torch", 4096)})
#: Block-engine cases: (width, height, SCHEDULER) where they differ from a square in-process run.
SHAPES = {"trivial-wide": (65536, 1024, ""), "trivial-tall": (1024, 65536, ""),
          "trivial-wide-local2": (65536, 1024, "local:2"), "unet-4096-local2": (4096, 4096, "local:2")}


def case_shape(name: str) -> tuple[int, int, str]:
    size = CASES[name][1]
    return SHAPES.get(name, (size, size, ""))
SQUARE, SPACING = 8, 13  # the detection scene: 8-pixel squares every 13 pixels


def _plugin_path() -> None:
    plugins = ROOT / "build" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    if not (plugins / "dltools").exists():
        (plugins / "dltools").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(plugins))


def synthetic_raster(size: int, height: int | None = None) -> Path:
    """A 4-band uint8 raster (``size`` wide, ``height`` or ``size`` tall) with field-like smooth patterns and
    noise, tiled, generated in strips (never whole)."""
    from osgeo import gdal, osr

    width, height = size, height or size
    path = BENCH / (f"synthetic_{size}.tif" if width == height else f"synthetic_{width}x{height}.tif")
    if path.exists():
        return path
    BENCH.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp), width, height, 4, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=YES"])
    ds.SetGeoTransform((500000.0, 1.0, 0.0, 4000000.0 + height, 0.0, -1.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(0)
    xs = np.arange(width, dtype=np.float32)
    for y0 in range(0, height, 512):
        ys = np.arange(y0, min(height, y0 + 512), dtype=np.float32)[:, None]
        for b in range(4):
            base = 110 + 60 * np.sin(xs / (97 + 13 * b)) * np.cos(ys / (131 + 7 * b))
            field = 40 * ((np.floor(xs / 400) + np.floor(ys / 300)) % 3)
            noise = rng.normal(0, 12, size=(ys.shape[0], width))
            ds.GetRasterBand(b + 1).WriteArray(np.clip(base + field + noise, 0, 255).astype(np.uint8), 0, y0)
    ds = None
    tmp.rename(path)
    return path


def small_unet(bands: int = 4):  # noqa: ANN201 - a torch module
    """The bench's small U-Net (``bands`` bands -> 6 classes), fixed random weights (seed 0)."""
    import torch

    torch.manual_seed(0)

    def block(cin: int, cout: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(cout, cout, 3, padding=1), torch.nn.ReLU())

    class SmallUNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e1, self.e2, self.e3 = block(bands, 16), block(16, 32), block(32, 64)
            self.pool = torch.nn.MaxPool2d(2)
            self.u2 = torch.nn.ConvTranspose2d(64, 32, 2, stride=2)
            self.d2 = block(64, 32)
            self.u1 = torch.nn.ConvTranspose2d(32, 16, 2, stride=2)
            self.d1 = block(32, 16)
            self.head = torch.nn.Conv2d(16, 6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.e1(x)
            b = self.e2(self.pool(a))
            c = self.e3(self.pool(b))
            d = self.d2(torch.cat([self.u2(c), b], 1))
            e = self.d1(torch.cat([self.u1(d), a], 1))
            return self.head(e)

    return SmallUNet().eval()


def _small_unet_emd(stem: str, model_file: str, framework: str, bands: int) -> None:
    (BENCH / f"{stem}.emd").write_text(json.dumps({
        "Framework": framework, "ModelType": "ImageClassification", "ModelFile": model_file,
        "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": list(range(bands)), "DataRange": [0, 1],
        "Classes": [{"Value": i, "Name": f"class {i}", "Color": [40 * i, 255 - 40 * i, 128]} for i in range(6)],
    }, indent=2))


def unet_model(bands: int = 4) -> Path:
    """The small U-Net exported to ONNX with a dynamic batch, and its .emd."""
    stem = "small_unet" if bands == 4 else f"small_unet_{bands}"
    path = BENCH / f"{stem}.onnx"
    if path.exists():
        return path
    import torch

    BENCH.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(small_unet(bands), torch.zeros(1, bands, 256, 256), str(path), dynamo=False,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13)
    _small_unet_emd(stem, f"{stem}.onnx", "ONNX", bands)
    return path


def unet_torchscript() -> Path:
    """The same small U-Net as TorchScript (the PyTorch backend: pinned memory, deferred copies, half precision on
    CUDA), and its .emd small_unet_torch.emd."""
    path = BENCH / "small_unet.pt"
    if path.exists():
        return path
    import torch

    BENCH.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.jit.trace(small_unet(4), torch.zeros(1, 4, 256, 256)).save(str(path))
    _small_unet_emd("small_unet_torch", "small_unet.pt", "PyTorch", 4)
    return path


def trivial_model() -> Path:
    """A 1x1 convolution (4 bands -> 6 classes): next to nothing in the model, so the engine's own cost shows."""
    emd = BENCH / "trivial.emd"
    if emd.exists():
        return emd
    import torch

    torch.manual_seed(0)
    BENCH.mkdir(parents=True, exist_ok=True)
    model = torch.nn.Conv2d(4, 6, 1).eval()
    torch.onnx.export(model, torch.zeros(1, 4, 256, 256), str(BENCH / "trivial.onnx"), dynamo=False,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13)
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "trivial.onnx",
        "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [0, 1, 2, 3], "DataRange": [0, 1],
        "Classes": [{"Value": i, "Name": f"class {i}", "Color": [40 * i, 255 - 40 * i, 128]} for i in range(6)],
    }, indent=2))
    return emd


def ukis_model() -> Path:
    """The real ukis-csmask 4-band L2A model, downloaded once from PyPI, with an .emd written for it."""
    emd = BENCH / "ukis_4b_l2a.emd"
    if emd.exists():
        return emd
    WHEELS.mkdir(parents=True, exist_ok=True)
    wheels = list(WHEELS.glob("ukis_csmask-1.0.0-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "ukis-csmask==1.0.0",
                        "-d", str(WHEELS)], check=True)
        wheels = list(WHEELS.glob("ukis_csmask-1.0.0-*.whl"))
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
        onnx_name = next(n for n in names if n.endswith("model_4b_l2a.onnx"))
        json_name = next(n for n in names if n.endswith("model_4b_l2a.json"))
        (BENCH / "ukis_4b_l2a.onnx").write_bytes(zf.read(onnx_name))
        meta = json.loads(zf.read(json_name))
    # model_*.json: data.dataset_statistics.img = [per-band means, per-band standard deviations]
    mean, std = meta["data"]["dataset_statistics"]["img"][:2]
    # The synthetic raster is 8-bit; scale it to reflectance-like 0..1 first (band_max 255), then the model's mean/std.
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "ukis_4b_l2a.onnx",
        "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [0, 1, 2, 3],
        "NormalizationStats": {"band_min_values": [0] * 4, "band_max_values": [255] * 4,
                               "scaled_mean_values": list(mean), "scaled_std_values": list(std)},
        "Classes": [{"Value": 0, "Name": "clear", "Color": [60, 160, 60]},
                    {"Value": 1, "Name": "cloud", "Color": [255, 255, 255]},
                    {"Value": 2, "Name": "shadow", "Color": [40, 40, 40]}],
    }, indent=2))
    return emd


def square_scene_raster(size: int) -> tuple[Path, int]:
    """A 3-band uint8 scene of SQUARE-pixel squares every SPACING pixels (two classes), generated in strips."""
    from osgeo import gdal, osr

    path = BENCH / f"squares_{size}.tif"
    per_axis = (size - SQUARE) // SPACING + 1
    if path.exists():
        return path, per_axis * per_axis
    BENCH.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp), size, size, 3, gdal.GDT_Byte, ["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform((500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for y0 in range(0, size, 512):
        h = min(512, size - y0)
        strip = np.zeros((3, h, size), np.uint8)
        for j in range(per_axis):
            for i in range(per_axis):
                top = j * SPACING
                if top + SQUARE <= y0 or top >= y0 + h:
                    continue
                cls = (i + j) % 2
                strip[cls, max(0, top - y0):min(h, top + SQUARE - y0), i * SPACING:i * SPACING + SQUARE] = \
                    150 + (i * 7 + j * 3) % 100
        for b in range(3):
            ds.GetRasterBand(b + 1).WriteArray(strip[b], 0, y0)
    ds = None
    tmp.rename(path)
    return path, per_axis * per_axis


def square_finder() -> Path:
    path = BENCH / "square_yolo_v8.onnx"
    if not path.exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from detection_models import yolo_v8_onnx

        BENCH.mkdir(parents=True, exist_ok=True)
        yolo_v8_onnx(path, 256, {0: "red", 1: "green"})
    return path


def _peak_mb() -> float:
    from bench_memory import high_water_kb

    return high_water_kb(os.getpid()) / 1024


def run_detection_case(name: str, device: str) -> dict:
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.detect_objects.pipeline import detect_objects

    raster, expected = square_scene_raster(CASES[name][1])
    md = load_model_definition(str(square_finder()))
    start = time.perf_counter()
    result = detect_objects(str(raster), md, "padding 16;batch_size 4", device=DeviceRequest(device))
    wall = time.perf_counter() - start
    size = CASES[name][1]
    return {"case": name, "pixels": size * size, "wall_s": wall, "model_s": result.model_seconds,
            "ratio": wall / result.model_seconds, "mpix_per_s": size * size / wall / 1e6, "peak_rss_mb": _peak_mb(),
            "device": result.device, "tiles": result.tiles, "objects": len(result.objects), "expected": expected,
            "objects_per_s": len(result.objects) / wall, "merge_s": result.merge_seconds}


def run_merge_case(name: str) -> dict:
    """The global merge and the NMS tool's rule on 100k objects: boxes in a 20000-pixel raster of 256 px tiles."""
    from dltools.core.detection.nms import nms_polygons
    from dltools.core.detection.seams import seam_merge
    from osgeo import ogr

    n = CASES[name][1]
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 20000, (n, 2))
    wh = rng.uniform(6, 30, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    chips = (xy[:, 1] // 224).astype(np.int64) * 100 + (xy[:, 0] // 224).astype(np.int64)
    cut = rng.uniform(size=n) < 0.05
    scores = rng.uniform(size=n)
    classes = rng.integers(0, 3, n)
    start = time.perf_counter()
    groups = seam_merge(boxes, scores, classes, chips, cut, 0.1)
    merge_s = time.perf_counter() - start
    geoms = [ogr.CreateGeometryFromWkt(f"POLYGON(({a} {b},{c} {b},{c} {d},{a} {d},{a} {b}))") for a, b, c, d in boxes]
    start = time.perf_counter()
    keep = nms_polygons(geoms, scores, classes.tolist(), 0.0)
    nms_s = time.perf_counter() - start
    return {"case": name, "objects": n, "merge_s": merge_s, "groups": len(groups), "nms_s": nms_s,
            "kept": int(keep.sum()), "peak_rss_mb": _peak_mb()}


def mercator_raster(size: int) -> Path:
    """A 3-band uint8 GeoTIFF in EPSG:3857 on XYZ zoom 17's pixel grid (smooth fields and noise), for the online case."""
    from osgeo import gdal, osr

    path = BENCH / f"mercator_{size}.tif"
    if path.exists():
        return path
    BENCH.mkdir(parents=True, exist_ok=True)
    half = 20037508.342789244
    res = 2 * half / 256 / 2 ** 17
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte, ["TILED=YES"])
    ds.SetGeoTransform((-half + 68000 * 256 * res, res, 0.0, half - 47000 * 256 * res, 0.0, -res))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(1)
    for b in range(3):
        field = 120 + 80 * np.sin(x / (37.0 + 11 * b)) * np.cos(y / (53.0 - 7 * b))
        ds.GetRasterBand(b + 1).WriteArray(np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8))
    ds = None
    return path


def run_online_case(name: str, device: str) -> dict:
    """Classify Pixels on XYZ tiles from a tile server in another process on 127.0.0.1 (tests/tile_server.py),
    against the same pixels read from the GeoTIFF: a cold run (every tile fetched) and a warm one (GDAL's cache)."""
    import tempfile

    from dltools.core.backends.base import DeviceRequest
    from dltools.core.model.loader import load_model_definition
    from dltools.core.progress import NullProgress
    from dltools.core.raster.online import parse_layer_uri, plan_online_raster
    from dltools.core.raster.request import RasterRequest
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    size = CASES[name][1]
    raster = mercator_raster(size)
    md = load_model_definition(str(BENCH / "small_unet_3.emd"))
    args = "padding 32;batch_size 4"
    start = time.perf_counter()
    local = classify_pixels(str(raster), md, str(BENCH / f"out_{name}_file.tif"), args, device=DeviceRequest(device))
    file_s = time.perf_counter() - start
    server = subprocess.Popen([sys.executable, "-c", (
        "import sys; sys.path.insert(0, sys.argv[1]); from tile_server import TileServer\n"
        "with TileServer(sys.argv[2], 17) as s:\n    print(s.url, flush=True); sys.stdin.read()"),
        str(ROOT / "tests"), str(raster)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        layer = parse_layer_uri(f"type=xyz&url={url}/xyz/%7Bz%7D/%7Bx%7D/%7By%7D.png", "wms", "bench")
        from osgeo import gdal

        ds = gdal.Open(str(raster))
        gt = ds.GetGeoTransform()
        extent = (gt[0], gt[3] + size * gt[5], gt[0] + size * gt[1], gt[3])
        request = RasterRequest(extent=extent, extent_crs_wkt=ds.GetProjection(), cell_size=gt[1])
        ds = None
        times = []
        with tempfile.TemporaryDirectory() as cache:
            for run in ("cold", "warm"):
                start = time.perf_counter()
                description, planned = plan_online_raster(layer, md, request, NullProgress(), Path(cache))
                result = classify_pixels(description, md, str(BENCH / f"out_{name}_{run}.tif"), args,
                                         request=planned, device=DeviceRequest(device))
                times.append(time.perf_counter() - start)
    finally:
        server.stdin.close()
        server.wait(10)
    return {"case": name, "pixels": size * size, "file_s": file_s, "file_model_s": local.model_seconds,
            "cold_s": times[0], "warm_s": times[1], "model_s": result.model_seconds, "device": result.device,
            "cold_ratio": times[0] / file_s, "warm_ratio": times[1] / file_s, "peak_rss_mb": _peak_mb()}


def _definition_and_arguments(name: str, emd: Path):  # noqa: ANN202 - (ModelDefinition, ARGUMENTS text)
    """The case's model definition (the bench's own TorchScript file trusted: it is built here) and arguments."""
    from dltools.core.model.loader import load_model_definition
    from dltools.core.trust import CodeTrust

    trust = CodeTrust.all() if CASES[name][0] == "unet_torch" else None
    arguments = "padding 32;batch_size 4" + (";half_precision true" if name.endswith("-half") else "")
    return load_model_definition(str(emd), trust=trust), arguments


def run_case(name: str, device: str) -> dict:
    """Runs in a child process: one classification, then the figures as JSON."""
    _plugin_path()
    if CASES[name][0] == "online":
        return run_online_case(name, device)
    if CASES[name][0] == "detect":
        return run_detection_case(name, device)
    if CASES[name][0] == "train":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_train import run_train_case

        return run_train_case(BENCH / "train-s2", device)
    if CASES[name][0] == "merge":
        return run_merge_case(name)
    if CASES[name][0] in ("objects", "chips"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_objects import run_chips_case, run_objects_case

        if CASES[name][0] == "chips":
            return run_chips_case(name, BENCH, synthetic_raster(CASES[name][1]))
        return run_objects_case(name, BENCH)
    if CASES[name][0] in ("io", "compress"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_io import run_compress_case, run_io_case

        size = CASES[name][1]
        if CASES[name][0] == "compress":
            classes = BENCH / f"out_io-{size}.tif"
            if not classes.exists():
                run_io_case(f"io-{size}", size, synthetic_raster(size), trivial_model(), device, BENCH)
            return run_compress_case(name, classes, BENCH)
        return dict(run_io_case(name, size, synthetic_raster(size), trivial_model(), device, BENCH),
                    peak_rss_mb=_peak_mb())
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    kind, _ = CASES[name]
    width, height, scheduler = case_shape(name)
    raster = synthetic_raster(width, height)
    emd = {"unet": BENCH / "small_unet.emd", "trivial": BENCH / "trivial.emd",
           "unet_torch": BENCH / "small_unet_torch.emd"}.get(kind) or ukis_model()
    md, arguments = _definition_and_arguments(name, emd)
    out = BENCH / f"out_{name}.tif"
    child = name.endswith("-child")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_memory import ChildPeaks

    # the child's or the largest worker's own peak, read while they run (sampling only where there are some)
    if child:  # as the algorithms run it: in the child Python kept ready since the last run (started before)
        from dltools.core.runner import spare
        from dltools.core.runner.parent import run_in_child

        spare.keep()
        spare.wait_warm()
    with ChildPeaks(enabled=bool(scheduler or child)) as peaks:
        start = time.perf_counter()
        if child:
            result = run_in_child("classify_pixels", (str(raster), md, str(out), arguments),
                                  {"device": DeviceRequest(device)}, use_spare=True)
        else:
            result = classify_pixels(str(raster), md, str(out), arguments, device=DeviceRequest(device),
                                     scheduler=scheduler)
        wall = time.perf_counter() - start
    if child:
        spare.discard()  # the one the run kept ready for a next run
    workers_kb = peaks.largest_mb * 1024
    return {"case": name, "pixels": width * height, "wall_s": wall, "model_s": result.model_seconds,
            "ratio": wall / result.model_seconds, "mpix_per_s": width * height / wall / 1e6,
            "peak_rss_mb": _peak_mb(), "worker_peak_rss_mb": workers_kb / 1024, "device": result.device,
            "tiles": result.tiles, "blocks": result.blocks,
            "scheduler": scheduler or ("child process" if child else "in-process")}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(run_case(sys.argv[2], os.environ.get("BENCH_DEVICE", "auto"))))
        return 0
    cases = os.environ.get("BENCH_CASES", " ".join(CASES)).split()
    print("Preparing rasters and models (cached in build/bench/) ...", flush=True)
    for name in cases:
        kind, size = CASES[name]
        if kind == "detect":
            _plugin_path()
            square_scene_raster(size)
            square_finder()
            continue
        if kind in ("merge", "train", "objects", "chips"):
            continue
        if kind in ("io", "compress"):
            synthetic_raster(size)
            trivial_model()
            continue
        if kind == "online":
            mercator_raster(size)
            unet_model(3)
            continue
        synthetic_raster(*case_shape(name)[:2])
        if kind == "unet":
            unet_model()
        elif kind == "unet_torch":
            unet_torchscript()
        elif kind == "trivial":
            trivial_model()
        else:
            try:
                ukis_model()
            except Exception as exc:  # noqa: BLE001 - report and go on with the other cases
                print(f"{name}: skipped, the ukis-csmask model could not be fetched ({exc})")
                cases = [c for c in cases if c != name]
    results = []
    for name in cases:
        print(f"Running {name} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    header = (f"{'case':<20} {'wall s':>8} {'model s':>8} {'ratio':>6} {'MP/s':>7} {'peak RSS MB':>12} "
              f"{'worker MB':>10}  where")
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        if "wall_s" not in r:
            continue
        workers = f"{r['worker_peak_rss_mb']:>10.0f}" if r.get("worker_peak_rss_mb") else f"{'-':>10}"
        print(f"{r['case']:<20} {r['wall_s']:>8.1f} {r['model_s']:>8.1f} {r['ratio']:>6.3f} {r['mpix_per_s']:>7.2f} "
              f"{r['peak_rss_mb']:>12.0f} {workers}  {r.get('scheduler', 'in-process')}, {r['device']}")
    for r in results:
        if "cold_ratio" in r:
            print(f"\n{r['case']}: Classify Pixels on XYZ tiles from 127.0.0.1: {r['cold_s']:.1f} s with every tile "
                  f"fetched ({r['cold_ratio']:.2f}x the GeoTIFF's {r['file_s']:.1f} s; target: at most 1.3x), "
                  f"{r['warm_s']:.1f} s from the tile cache ({r['warm_ratio']:.2f}x); {r['model_s']:.1f} s in the model; "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
        if "objects_per_s" in r:
            print(f"\n{r['case']}: {r['objects']} objects found of {r['expected']} in the scene, "
                  f"{r['objects_per_s']:.0f} objects per second, merge + geometries {r['merge_s']:.2f} s")
        elif r["case"] == "train-s2":
            print("\ntrain-s2: " + (r["skipped"] if "skipped" in r else
                  f"UnetClassifier resnet18 (random initialisation) on {r['chips']} chips of the upper half, "
                  f"{r['epochs']} epochs at {r['s_per_epoch']:.1f} s per epoch (learning rate {r['learning_rate']:.2e}, "
                  f"kept epoch {r['best_epoch']}); lower half: Cohen's kappa {r['kappa']:.3f}, accuracy "
                  f"{r['accuracy']:.3f}"))
        elif r["case"].startswith("merge"):
            print(f"\n{r['case']}: seam merge of {r['objects']} objects {r['merge_s']:.2f} s ({r['groups']} left); "
                  f"Non Maximum Suppression rule {r['nms_s']:.2f} s ({r['kept']} kept); peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_io import print_io

    print_io(results)
    from bench_objects import print_chips, print_objects

    print_objects(results)
    print_chips(results)
    by = {r["case"]: r for r in results}
    if "unet-4096" in by and "unet-16384" in by:
        delta = by["unet-16384"]["peak_rss_mb"] - by["unet-4096"]["peak_rss_mb"]
        print(f"\nPeak RSS 16384^2 - 4096^2: {delta:+.0f} MB (target: within 150 MB)")
    shapes = [by[c]["peak_rss_mb"] for c in ("trivial-4096", "trivial-wide", "trivial-tall") if c in by]
    if len(shapes) > 1:
        print(f"\nPeak RSS spread over 4096^2, 65536 x 1024 and 1024 x 65536: {max(shapes) - min(shapes):.0f} MB "
              "(target: within 60 MB)")
    for case in ("unet-4096", "trivial-4096"):
        if case in by and f"{case}-child" in by:
            print(f"\n{case} in a child process / in-process: wall {by[case + '-child']['wall_s']:.2f} s / "
                  f"{by[case]['wall_s']:.2f} s = {by[case + '-child']['wall_s'] / by[case]['wall_s']:.3f}")
    worst = max((r["ratio"] for r in results if "ratio" in r and r["case"].startswith(("unet", "ukis"))
                 and "local" not in r["case"]), default=0)
    print(f"Worst overhead ratio: {worst:.3f} (target: at most 1.05)")
    BENCH.mkdir(parents=True, exist_ok=True)
    (BENCH / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: GPL-2.0-or-later
"""`make bench` cases where reading, decoding and writing dominate (the trivial 1x1-convolution model).

io-4096, io-8192, io-16384
    Classify Pixels beside the minimal loop, interleaved (loop, in-process, in a child process as the algorithms
    run it: the one kept ready since the last run, then one started for the run, loop, ...); the ratio's target is
    for the child process, whatever of its start-up the run waits for included.  The minimal loop is the
    simplest correct program (one thread: a GDAL window read per tile, x / 255, ONNX Runtime, numpy's arg-max
    over the class axis, the tile's centre written into a DEFLATE GeoTIFF), not tuned.  Both use the same tiles
    (256 px, padding 32, batch 1, zero past the edge), so their outputs must be equal pixel for pixel (checked).
    Printed: medians, their ratio (targets: <= 0.5 at 8192^2, <= 0.7 at 4096^2), the child's start-up (from starting
    it until it has loaded the tool, when it says "ready") and its ratio without it, where Classify Pixels spends its
    time (read, normalise, decode, write: CPU seconds of whichever thread did it; model: its wall seconds, the class
    arg-max included where it runs inside ONNX Runtime; waiting: the model thread's wall time outside the model), and
    the CPU seconds of each program.
compress-8192
    The 8192^2 class raster written again with each GeoTIFF compression (one thread and two): seconds and MB.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

TILE, PAD = 256, 32
ARGS = f"padding {PAD};batch_size 1;edge_fill zero"


def minimal_loop(raster: Path, onnx: Path, out: Path) -> float:
    """The baseline: one thread, one tile at a time, no overlap.  Returns its seconds (session start-up excluded)."""
    import onnxruntime as ort
    from osgeo import gdal

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    start = time.perf_counter()
    src = gdal.Open(str(raster))
    width, height, bands = src.RasterXSize, src.RasterYSize, src.RasterCount
    dst = gdal.GetDriverByName("GTiff").Create(str(out), width, height, 1, gdal.GDT_Byte,
                                               ["TILED=YES", "COMPRESS=DEFLATE"])
    dst.SetGeoTransform(src.GetGeoTransform())
    dst.SetProjection(src.GetProjection())
    band = dst.GetRasterBand(1)
    band.SetNoDataValue(255)  # what Classify Pixels writes for 6 classes (uint8, NoData 255)
    core = TILE - 2 * PAD
    for y in range(0, height, core):
        for x in range(0, width, core):
            x0, y0 = x - PAD, y - PAD
            rx0, ry0 = max(0, x0), max(0, y0)
            rx1, ry1 = min(width, x0 + TILE), min(height, y0 + TILE)
            chip = np.zeros((1, bands, TILE, TILE), np.float32)
            chip[0, :, ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0] = src.ReadAsArray(rx0, ry0, rx1 - rx0, ry1 - ry0)
            chip *= np.float32(1 / 255)
            scores = session.run(None, {name: chip})[0][0]
            classes = np.argmax(scores, axis=0).astype(np.uint8)
            w, h = min(core, width - x), min(core, height - y)
            band.WriteArray(classes[PAD:PAD + h, PAD:PAD + w], x, y)
    dst = None
    return time.perf_counter() - start


class StageClock:
    """CPU seconds per stage (of the thread that ran it, so time spent waiting for a core or the GIL on a loaded
    machine is not counted; GDAL's own compression threads are not either): the engine's stage methods wrapped,
    for the bench only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def wrap(self, owner: type, method: str, stage: str) -> None:
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] = self.seconds.get(stage, 0.0) + time.thread_time() - start

        setattr(owner, method, timed)

    def install(self) -> None:
        from dltools.core.engine.pixels import PixelSink, PixelTask
        from dltools.core.engine.tile_reader import TileReader

        self.wrap(TileReader, "read", "read")
        self.wrap(TileReader, "_normalised", "normalise")
        self.wrap(PixelTask, "fold", "decode")
        self.wrap(PixelTask, "finish", "decode")
        self.wrap(PixelSink, "write", "write")
        self.wrap(PixelSink, "close", "write")

    def reset(self) -> None:
        self.seconds = {}


def run_io_case(name: str, size: int, raster: Path, emd: Path, device: str, out_dir: Path) -> dict:
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.model.loader import load_model_definition
    from dltools.core.runner import spare
    from dltools.core.runner.parent import ChildLimits, ChildRun
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    md = load_model_definition(str(emd))
    onnx = emd.with_suffix(".onnx")
    clock = StageClock()
    clock.install()
    repeats = 5 if size <= 8192 else 1
    loop_s, ours_s, model_s, stages = [], [], [], []
    loop_out, ours_out = out_dir / f"loop_{name}.tif", out_dir / f"out_{name}.tif"
    loop_cpu, ours_cpu, child_s, startup_s, fresh_s = [], [], [], [], []
    child_out = out_dir / f"child_{name}.tif"

    def in_child(use_spare: bool) -> float:
        """As the algorithms run it: in a child Python, taking the one kept ready since the last run (its start-up
        then made while nothing was timed) or, ``use_spare`` False, started for the run (a session's first run)."""
        if use_spare:
            spare.keep()
            spare.wait_warm()
        else:
            spare.discard()
        start = time.perf_counter()
        child = ChildRun("classify_pixels", (str(raster), md, str(child_out), ARGS), {"device": DeviceRequest(device)},
                         None, ChildLimits(), use_spare=use_spare)
        child.run()
        if not use_spare:
            startup_s.append(child.watch.startup_seconds or 0.0)  # the interpreter and imports, until "ready"
        return time.perf_counter() - start

    for _ in range(repeats):
        spare.wait_warm()  # nothing starting beside what is timed
        cpu = time.process_time()
        loop_s.append(minimal_loop(raster, onnx, loop_out))
        loop_cpu.append(time.process_time() - cpu)
        clock.reset()
        spare.wait_warm()
        cpu, start = time.process_time(), time.perf_counter()
        result = classify_pixels(str(raster), md, str(ours_out), ARGS, device=DeviceRequest(device))
        ours_s.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)
        child_s.append(in_child(use_spare=True))
        fresh_s.append(in_child(use_spare=False))
        model_s.append(result.model_seconds)
        stages.append(dict(clock.seconds, model=result.model_seconds,
                           waiting=ours_s[-1] - result.model_seconds))
    spare.discard()
    equal = same_pixels(loop_out, ours_out, size) and same_pixels(loop_out, child_out, size)
    engine_mb = engine_peak_mb(raster, emd, out_dir / f"peak_{name}.tif", device)
    mid = sorted(range(repeats), key=lambda i: ours_s[i])[repeats // 2]
    return {"case": name, "pixels": size * size, "wall_s": statistics.median(ours_s),
            "model_s": statistics.median(model_s), "loop_s": statistics.median(loop_s),
            "loop_ratio": statistics.median(ours_s) / statistics.median(loop_s), "repeats": repeats,
            "all_loop_s": loop_s, "all_wall_s": ours_s, "loop_cpu_s": statistics.median(loop_cpu),
            "cpu_s": statistics.median(ours_cpu), "stages": stages[mid], "identical": equal,
            "child_s": statistics.median(child_s), "all_child_s": child_s, "engine_peak_rss_mb": engine_mb,
            "child_ratio": statistics.median(child_s) / statistics.median(loop_s),
            "startup_s": statistics.median(startup_s), "all_startup_s": startup_s,
            "fresh_s": statistics.median(fresh_s), "all_fresh_s": fresh_s,
            "fresh_ratio": statistics.median(fresh_s) / statistics.median(loop_s),
            "ratio": statistics.median(ours_s) / statistics.median(model_s),
            "mpix_per_s": size * size / statistics.median(ours_s) / 1e6, "peak_rss_mb": 0.0,
            "worker_peak_rss_mb": 0, "device": result.device, "scheduler": "in-process"}


def engine_peak_mb(raster: Path, emd: Path, out: Path, device: str) -> float:
    """Peak RSS of one more Classify Pixels run alone in a fresh Python: the engine's memory without the loop's
    GDAL cache.  (A child's ru_maxrss cannot tell it: Linux counts the parent's memory at fork, before exec.)"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, __file__, str(raster), str(emd), str(out), device], capture_output=True,
                          text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def _peak_main(raster: str, emd: str, out: str, device: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build" / "plugins"))
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    classify_pixels(raster, load_model_definition(emd), out, ARGS, device=DeviceRequest(device))
    from bench_memory import high_water_kb

    print(high_water_kb(os.getpid()) / 1024)


def same_pixels(a: Path, b: Path, size: int) -> bool:
    """Whether two single-band rasters hold the same values (compared in strips)."""
    from osgeo import gdal

    da, db = gdal.Open(str(a)), gdal.Open(str(b))
    return all(np.array_equal(da.GetRasterBand(1).ReadAsArray(0, y, size, min(1024, size - y)),
                              db.GetRasterBand(1).ReadAsArray(0, y, size, min(1024, size - y)))
               for y in range(0, size, 1024))


#: (compression, predictor, level option): DEFLATE at GDAL's default level 6 and at 1, ZSTD at its default 9 and 1
CODECS = [("DEFLATE", 1, ""), ("DEFLATE", 2, ""), ("DEFLATE", 2, "ZLEVEL=1"), ("ZSTD", 1, ""), ("ZSTD", 2, ""),
          ("ZSTD", 2, "ZSTD_LEVEL=1"), ("LZW", 1, ""), ("LZW", 2, ""), ("NONE", 1, "")]


def run_compress_case(name: str, classes: Path, out_dir: Path) -> dict:
    """Each codec on the same class raster (256 px tiles, as the engine writes): write seconds and file size."""
    from osgeo import gdal

    src = gdal.Open(str(classes))
    data = src.GetRasterBand(1).ReadAsArray()
    rows = []
    for codec, predictor, level in CODECS:
        for threads in (1, 2):
            out = out_dir / f"codec_{codec}_{predictor}_{threads}.tif"
            options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", f"COMPRESS={codec}",
                       f"NUM_THREADS={threads}"] + ([f"PREDICTOR={predictor}"] if codec != "NONE" else []) + \
                ([level] if level else [])
            start = time.perf_counter()
            ds = gdal.GetDriverByName("GTiff").Create(str(out), data.shape[1], data.shape[0], 1, gdal.GDT_Byte,
                                                      options)
            for y in range(0, data.shape[0], 2048):  # block rows, as the engine hands them over
                ds.GetRasterBand(1).WriteArray(data[y:y + 2048], 0, y)
            ds = None
            seconds = time.perf_counter() - start
            rows.append({"codec": codec, "predictor": predictor, "level": level, "threads": threads, "seconds": seconds,
                         "mb": out.stat().st_size / 1e6})
            out.unlink()
    return {"case": name, "codecs": rows, "pixels": int(data.size)}


def print_io(results: list[dict]) -> None:
    for r in results:
        if "loop_ratio" in r:
            target = {4096: 0.7, 8192: 0.5}.get(int(r["pixels"] ** 0.5))
            goal = f" (target: at most {target})" if target else ""
            st = r["stages"]
            parts = ", ".join(f"{k} {st.get(k, 0.0):.2f}" for k in ("read", "normalise", "model", "decode", "write",
                                                                      "waiting"))
            runs = "; ".join(f"{k} " + ", ".join(f"{s:.2f}" for s in r[key]) for k, key in (
                ("loop", "all_loop_s"), ("in-process", "all_wall_s"), ("child", "all_child_s"),
                ("child started for the run", "all_fresh_s")))
            print(f"\n{r['case']}: Classify Pixels in a child process {r['child_s']:.2f} s (in-process "
                  f"{r['wall_s']:.2f} s), minimal loop {r['loop_s']:.2f} s: ratio {r['child_ratio']:.2f}{goal} "
                  f"(in-process {r['loop_ratio']:.2f}); medians of {r['repeats']} interleaved runs ({runs}); "
                  f"outputs identical: {r['identical']}\n"
                  f"  a child started for the run (a session's first run, or with the provider setting to keep one "
                  f"ready off) {r['fresh_s']:.2f} s: ratio {r['fresh_ratio']:.2f}; its start-up (interpreter and "
                  f"imports, until it is ready for the job) {r['startup_s']:.2f} s (median)\n"
                  f"  CPU seconds (all threads): Classify Pixels {r['cpu_s']:.2f}, loop {r['loop_cpu_s']:.2f}; "
                  f"per stage: {parts} (model and waiting: wall seconds on the model thread)\n  peak RSS of "
                  f"Classify Pixels alone in a fresh Python {r['engine_peak_rss_mb']:.0f} MB (the bench process, which "
                  f"also holds the minimal loop's GDAL cache: {r['peak_rss_mb']:.0f} MB)")
        if "codecs" in r:
            print(f"\n{r['case']}: the class raster ({r['pixels'] / 1e6:.0f} Mpixels) written with each compression")
            for c in r["codecs"]:
                print(f"  {c['codec']:<8} predictor {c['predictor']} {c['level'] or 'default level':<14} "
                      f"{c['threads']} thread(s): {c['seconds']:6.2f} s "
                      f"{c['mb']:8.2f} MB")


if __name__ == "__main__":  # engine_peak_mb's fresh Python
    _peak_main(*sys.argv[1:5])

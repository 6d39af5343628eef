# SPDX-License-Identifier: GPL-2.0-or-later
"""`make gpu-check`: on a machine with an NVIDIA GPU, run `make bench`'s model-bound cases (the small U-Net: unet-4096
with ONNX Runtime, unet-4096-torch and unet-4096-torch-half with PyTorch, the last in half precision) and its
I/O-bound case (trivial-4096, a 1 x 1 convolution) on the GPU, and report for each the share of the run's time the
GPU was busy, from `nvidia-smi` sampled every 100 ms beside it. Target: at least 80 % on the model-bound cases.
(The I/O-bound case is reported, not judged: with a model that costs nothing, reading and writing decide.)

Why a share of time: on a GPU the model is fast, so the engine's reading, decoding and writing decide whether the
GPU waits; the wall-to-model ratio alone cannot show that when the model's own time includes the copies to and
from the device. `utilization.gpu` is, per sample period, the share of time a kernel was running; its mean over
the case's own run (the bench child's wall time, measured by the bench) is the busy share.

Usage: make gpu-check [GPU_CASES="unet-4096 trivial-4096"]   or   .venv/bin/python scripts/gpu_check.py [CASES...]
Exit status: 0 target met, 1 missed (or a case failed), 2 no GPU or no CUDA runtime here (nothing was run).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 80.0
DEFAULT_CASES = ("unet-4096", "unet-4096-torch", "unet-4096-torch-half", "trivial-4096")
PERIOD_MS = 100

NO_GPU = ("Nothing was measured: {why}. Run `make gpu-check` on a machine with an NVIDIA GPU and its driver, with "
          "ONNX Runtime for NVIDIA GPUs installed (onnxruntime-gpu, and the CUDA and cuDNN it needs) and, for the -torch "
          "cases, a CUDA build of PyTorch.")


def gpu_missing(cases: list[str]) -> str | None:
    """Why this machine cannot run these cases on a GPU, or None when it can."""
    if shutil.which("nvidia-smi") is None:
        return "there is no NVIDIA GPU here (nvidia-smi is not installed)"
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    if listed.returncode or "GPU" not in listed.stdout:
        return "there is no NVIDIA GPU here (nvidia-smi lists none)"
    if any(not c.endswith(("-torch", "-torch-half")) for c in cases):
        try:
            import onnxruntime
        except ImportError:
            return "there is a GPU, but ONNX Runtime is not installed"
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "there is a GPU, but this ONNX Runtime has no CUDA provider"
    if any(c.endswith(("-torch", "-torch-half")) for c in cases):
        try:
            import torch
        except ImportError:
            return "there is a GPU, but PyTorch is not installed (or leave out the -torch cases)"
        if not torch.cuda.is_available():
            return "there is a GPU, but this PyTorch has no CUDA (or leave out the -torch cases)"
    return None


def sample_utilisation(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """Append (time, utilisation %) from nvidia-smi every PERIOD_MS until ``stop``."""
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                             "-lms", str(PERIOD_MS), "-i", gpu], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if stop.is_set():
                break
            try:
                samples.append((time.monotonic(), float(line.strip())))
            except ValueError:  # "[N/A]" on GPUs that do not report it
                continue
    finally:
        proc.terminate()
        proc.wait(5)


def busy_share(samples: list[tuple[float, float]], start: float, end: float) -> tuple[float, float, int]:
    """Over the samples taken in [start, end] (the case's own run): the mean utilisation of all of them, the mean
    from the first busy sample on (the run less its one-off start-up: CUDA context, session, first allocations,
    which no pipeline can overlap), and how many samples there were."""
    inside = [u for t, u in samples if start <= t <= end]
    if not inside:
        return 0.0, 0.0, 0
    first = next((i for i, u in enumerate(inside) if u > 0), len(inside))
    steady = inside[first:]
    return statistics.fmean(inside), (statistics.fmean(steady) if steady else 0.0), len(inside)


def prepare(cases: list[str]) -> None:
    """The bench's rasters and models, made (once, cached in build/bench/) before anything is timed."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench

    for name in cases:
        kinds = {"unet": bench.unet_model, "unet_torch": bench.unet_torchscript, "trivial": bench.trivial_model}
        if name not in bench.CASES or bench.CASES[name][0] not in kinds:
            raise SystemExit(f"'{name}' is not a Classify Pixels case of scripts/bench.py (unet-*, trivial-*)")
        bench.synthetic_raster(*bench.case_shape(name)[:2])
        kinds[bench.CASES[name][0]]()


def run_case(name: str) -> tuple[dict, tuple[float, float, int]]:
    """One bench case on the GPU in its own process, nvidia-smi sampling beside it: its figures, :func:`busy_share`."""
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=sample_utilisation, args=(stop, samples), daemon=True)
    sampler.start()
    env = dict(os.environ, BENCH_DEVICE="gpu")
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--case", name], env=env,
                              text=True, capture_output=True)
        ended = time.monotonic()
    finally:
        time.sleep(2 * PERIOD_MS / 1000)  # the sample period that covers the run's end
        stop.set()
        sampler.join(10)
    if proc.returncode:
        raise RuntimeError(f"{name} failed (exit status {proc.returncode}):\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures, busy_share(samples, ended - figures["wall_s"], ended)


def judged(name: str) -> bool:
    """The model-bound cases (the small U-Net), whose busy share has a target."""
    return name.startswith("unet-")


def main(argv: list[str]) -> int:
    cases = argv or list(DEFAULT_CASES)
    why = gpu_missing(cases)
    if why:
        print(NO_GPU.format(why=why))
        return 2
    prepare(cases)
    verdict = 0
    for name in cases:
        try:
            figures, (whole, share, count) = run_case(name)
        except RuntimeError as exc:
            print(exc)
            verdict = 1
            continue
        where = figures["device"]
        print(f"{name}: {figures['wall_s']:.2f} s wall, {figures['model_s']:.2f} s in the model (ratio "
              f"{figures['ratio']:.3f}), {figures['mpix_per_s']:.1f} MP/s, peak RSS {figures['peak_rss_mb']:.0f} MB; "
              f"{where}\n  GPU busy {share:.1f} % of the run from its first kernel on ({whole:.1f} % with the start-up; "
              f"{count} samples of {PERIOD_MS} ms)"
              + (f"; target: at least {TARGET:.0f} %" if judged(name) else " (reported, not judged)"))
        if "cuda" not in where:
            print(f"  {name} did not run on the GPU: see 'where' above")
            verdict = 1
        elif judged(name) and share < TARGET:
            verdict = 1
    return verdict


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

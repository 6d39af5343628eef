# SPDX-License-Identifier: GPL-2.0-or-later
"""On a machine with an NVIDIA GPU: run `make bench`'s model-bound case on the GPU and report the share of the run's
time the GPU was busy (target: at least 80 %), from `nvidia-smi` sampled every 100 ms beside it.

Why a share of time: on a GPU the model is fast, so the engine's reading, decoding and writing decide whether the
GPU waits; the wall-to-model ratio alone cannot show that when the model's own time includes copies to the device.

Usage: .venv/bin/python scripts/gpu_check.py [CASES]   (default "unet-4096"; cases as in scripts/bench.py)
Exit status: 0 target met, 1 missed, 2 no GPU here (nothing was run).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 80.0


def sample_utilisation(stop: threading.Event, samples: list[float]) -> None:
    """Append the GPU's utilisation (percent of the last sample period with a kernel running) until ``stop``."""
    proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                             "-lms", "100", "-i", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if stop.is_set():
                break
            try:
                samples.append(float(line.strip()))
            except ValueError:  # "[N/A]" on GPUs that do not report it
                continue
    finally:
        proc.terminate()
        proc.wait(5)


def main() -> int:
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        print("No NVIDIA GPU here (nvidia-smi is missing or sees no GPU): nothing was measured. Run this on a GPU "
              "machine with ONNX Runtime for NVIDIA GPUs (or torch with CUDA) installed.")
        return 2
    cases = sys.argv[1] if len(sys.argv) > 1 else "unet-4096"
    env = dict(os.environ, BENCH_CASES=cases, BENCH_DEVICE="gpu")
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=sample_utilisation, args=(stop, samples), daemon=True)
    sampler.start()
    try:
        bench = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py")], env=env, text=True,
                               capture_output=True)
    finally:
        stop.set()
        sampler.join(10)
    print(bench.stdout[-4000:])
    if bench.returncode:
        print(bench.stderr[-4000:])
        print(f"The bench failed (exit status {bench.returncode}): no utilisation to report")
        return 1
    # the samples cover the whole bench (preparation included): the busy share is over the samples where the GPU
    # did anything, from the first to the last such sample (the run itself)
    busy = [i for i, s in enumerate(samples) if s > 0]
    if not busy:
        print(f"The GPU was never busy in {len(samples)} samples: did the bench run on the CPU? (see 'where' above)")
        return 1
    run = samples[busy[0]:busy[-1] + 1]
    share = statistics.fmean(run)
    print(f"GPU busy {share:.1f} % of the run ({len(run)} samples of 100 ms; target: at least {TARGET:.0f} %)")
    return 0 if share >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

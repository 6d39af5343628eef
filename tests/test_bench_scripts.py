# SPDX-License-Identifier: GPL-2.0-or-later
"""scripts/gpu_check.py and the bench's per-child peak memory (scripts/bench_memory.py), run for real.

The GPU check itself needs a GPU; here: its clear refusal where there is none (a PATH without nvidia-smi, so the
same on any machine), `make gpu-check` calling it, and its arithmetic on sample series. The memory sampler: a child
using ~50 MB under a parent holding ~300 MB reads ~50 MB, where ``RUSAGE_CHILDREN`` (the bench's old column) reads the
parent's size.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_check import busy_share  # noqa: E402


def test_gpu_check_without_a_gpu_says_so_and_exits_2(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no nvidia-smi on this PATH, whatever the machine has
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout.strip() == (
        "Nothing was measured: there is no NVIDIA GPU here (nvidia-smi is not installed). Run `make gpu-check` on a "
        "machine with an NVIDIA GPU and its driver, with ONNX Runtime for NVIDIA GPUs installed (onnxruntime-gpu, and "
        "the CUDA and cuDNN it needs) and, for the -torch cases, a CUDA build of PyTorch.")


def test_make_gpu_check_runs_the_script():
    # Under `make test` (CI) the outer make's MAKELEVEL makes this one print "Entering/Leaving directory" lines.
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", "gpu-check", "GPU_CASES=unet-4096"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if not line.startswith("make")]
    assert commands[-3] == ".venv/bin/python scripts/gpu_check.py unet-4096; engine=$?; \\"
    assert commands[-2] == ".venv/bin/python scripts/gpu_train_check.py ; train=$?; \\"


def test_gpu_train_check_without_cuda_says_so_and_exits_2():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # no CUDA device for torch, whatever the machine has
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_train_check.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Nothing was trained: there is no CUDA device for this PyTorch")


def test_gpu_train_check_runs_the_mixed_precision_branch_on_the_cpu():
    """The script's GPU checks, on the branch the GPU takes, forced onto the CPU (bfloat16, a CPU GradScaler): one
    epoch of UnetClassifier and of MaskRCNN, every check passing, so that a GPU's time finds the trainer's faults,
    not the script's."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_train_check.py"), "--device", "cpu-mixed",
                           "--quick", "UnetClassifier", "MaskRCNN"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "All checks passed."
    assert lines[0].startswith("UnetClassifier resnet18 on cpu-mixed: ")
    assert lines[1].startswith("  convolutions computed in ['bfloat16']; GradScaler: 2 steps, 0 skipped")
    assert lines[2].startswith("MaskRCNN resnet18 on cpu-mixed: ")
    assert lines[3].startswith("  convolutions computed in ['bfloat16']; GradScaler: 4 steps, 0 skipped")


def test_gpu_train_check_fails_a_run_whose_steps_were_not_in_mixed_precision(monkeypatch, tmp_path):
    """The check can fail: with autocast made a no-op, the steps still go through the GradScaler but the
    convolutions compute in float32, and the run is judged a failure naming that."""
    import contextlib

    import gpu_train_check
    import torch

    monkeypatch.setattr(gpu_train_check, "_plugin_and_tests", lambda: None)  # conftest has put both on sys.path
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())
    found = gpu_train_check.train_family("UnetClassifier", "cpu-mixed", True, tmp_path)
    assert found.problems == ["convolution dtypes ['float32'], not ['bfloat16']"]


def test_busy_share_over_the_run_and_from_its_first_kernel():
    samples = [(0.0, 0.0), (1.0, 0.0), (1.1, 0.0), (1.2, 90.0), (1.3, 70.0), (1.4, 80.0), (9.0, 100.0)]
    whole, steady, count = busy_share(samples, 1.0, 1.4)  # the last sample is after the run: not counted
    assert (whole, steady, count) == (pytest.approx(48.0), pytest.approx(80.0), 5)
    assert busy_share(samples, 2.0, 3.0) == (0.0, 0.0, 0)
    assert busy_share([(0.0, 0.0), (0.1, 0.0)], 0.0, 1.0) == (0.0, 0.0, 2)  # never busy: 0, not an error


CHILD_PEAK = """
import resource, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from bench_memory import ChildPeaks
held = b"x" * 300_000_000
with ChildPeaks() as peaks:
    subprocess.run([sys.executable, "-c", "a = b'x' * 50_000_000; import time; time.sleep(0.6)"], check=True)
print(peaks.largest_mb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, len(peaks.peaks_kb))
"""


def test_child_peak_is_the_childs_own():
    proc = subprocess.run([sys.executable, "-c", CHILD_PEAK, str(ROOT / "scripts")], capture_output=True, text=True,
                          timeout=120, check=True)
    own, rusage, children = proc.stdout.split()
    assert int(children) == 1
    assert 48 < float(own) < 120  # 50 MB of bytes and a bare Python
    assert float(rusage) > 290  # what the old column read: the parent's 300 MB, counted before the child's exec


def test_io_case_runs_loop_in_process_and_child_and_compares_their_pixels(tmp_path):
    """bench_io's case on a 512-pixel raster: the programs write the same classes; the child runs both ways the
    algorithms run it (kept ready, and started for the run with its start-up until it reports ready measured)."""
    import json

    import bench
    import bench_io
    import numpy as np
    from builders import conv_module, export_onnx, write_raster

    bench._plugin_path()  # the fresh Python of the peak-memory run imports the plugin from build/plugins
    image = np.random.default_rng(2).integers(0, 255, size=(4, 512, 512)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image, block=256)
    export_onnx(conv_module(4, 6, 1, seed=4), tmp_path / "m.onnx", 4, 256)
    emd = tmp_path / "m.emd"
    emd.write_text(json.dumps({"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "m.onnx",
                               "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [0, 1, 2, 3], "DataRange": [0, 1],
                               "Classes": [{"Value": i, "Name": f"c{i}", "Color": [i, i, i]} for i in range(6)]}))
    r = bench_io.run_io_case("io-512", 512, raster, emd, "cpu", tmp_path)
    assert r["identical"] is True and r["repeats"] == 5 and len(r["all_startup_s"]) == len(r["all_fresh_s"]) == 5
    assert all(0 < u < f for u, f in zip(r["all_startup_s"], r["all_fresh_s"]))
    assert r["fresh_ratio"] == r["fresh_s"] / r["loop_s"] and r["child_ratio"] == r["child_s"] / r["loop_s"]
    from dltools.core.runner import spare

    assert spare.held_pid() is None  # the bench leaves no process behind
    assert {"read", "decode", "model", "waiting"} <= set(r["stages"])

# SPDX-License-Identifier: GPL-2.0-or-later
"""`make gpu-check`, training part: Train Deep Learning Model on a CUDA GPU, in mixed precision, checked.

On CUDA the trainer runs its steps under ``torch.autocast`` (float16 matrix products) with a GradScaler
(core/tools/train/loop.py ``mixed_precision``). The test suite takes that branch on the CPU only (in bfloat16); this
script is what shows it on a GPU. It trains the tests' synthetic families with the tests' own settings and stated
scores (tests/core/test_train_unet.py, test_train_rcnn_learns.py), then runs each model folder through the
plugin's inference on the GPU, and checks:

- the log says the device is CUDA, in mixed precision;
- the training convolutions computed in float16, and every optimiser step went through the GradScaler (a step it
  skipped for an overflow is counted and printed: a few at the start are how a GradScaler finds its scale);
- the losses are finite, and the kept epoch reaches the CPU tests' stated score;
- the ``.pth`` holds float32 weights, and Classify Pixels / Detect Objects run that folder on the GPU
  (the inference loads the ``.pth`` strictly) with the CPU tests' expected result on a new scene.

Printed per family: the seconds per epoch and in all, the validation scores by epoch, the GradScaler's steps,
skips and final scale.

Usage: .venv/bin/python scripts/gpu_train_check.py [--device cpu] [--quick] [FAMILY ...]
  FAMILY: UnetClassifier, FasterRCNN, MaskRCNN (default: all three).
  --device cpu: the same checks with the CPU's expectations (float32, no GradScaler); --device cpu-mixed: the
  mixed-precision branch forced on the CPU (bfloat16, a CPU GradScaler), as the test suite does: the script's own
  tests, so that a GPU's time is not spent finding a mistake in it.
  --quick: 16 chips, one epoch, no score judged (a dry run of the plumbing).
Exit status: 0 all checks passed, 1 one failed, 2 no CUDA here (nothing was run).
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("UnetClassifier", "FasterRCNN", "MaskRCNN")
RADII = (8, 14)

NO_CUDA = ("Nothing was trained: {why}. Run it on a machine with an NVIDIA GPU, its driver and a CUDA build of "
           "PyTorch (the torch wheel for your CUDA version from pytorch.org).")


@dataclass(frozen=True)
class Family:
    """A family's training as the CPU tests run it, and the score they state for it."""

    layout: str  # the tests' builder of that training-data layout
    chips: int
    settings: dict
    arguments: str = ""
    metric: str = "accuracy"
    stated: float = 0.88


SETUPS = {
    "UnetClassifier": Family("classified_tiles", 40, {"max_epochs": 6, "batch_size": 8, "learning_rate": 0.003,
                                                      "validation_percent": 20}),
    "FasterRCNN": Family("pascal_voc", 120, {"max_epochs": 5, "batch_size": 4, "learning_rate": 2e-3,
                                             "validation_percent": 10, "stop_training": False},
                         "box_batch_size_per_image 16;box_positive_fraction 0.5;monitor average_precision", "map", 0.5),
    "MaskRCNN": Family("rcnn_masks", 120, {"max_epochs": 6, "batch_size": 4, "learning_rate": 2e-3,
                                           "validation_percent": 10, "stop_training": False},
                       "box_batch_size_per_image 4;box_positive_fraction 0.5;monitor average_precision", "map", 0.5),
}


@dataclass
class Findings:
    """What one family's run showed: printed lines and failed checks."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)


def cuda_missing() -> str | None:
    """Why this machine cannot train on CUDA, or None when it can."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "there is no CUDA device for this PyTorch (no NVIDIA GPU, no driver, or a CPU-only torch)"
    return None


def _plugin_and_tests() -> None:
    """The plugin importable as ``dltools`` (the bench's link), and the tests' builders."""
    from bench import _plugin_path

    _plugin_path()
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))


def _chips(name: str, folder: Path, count: int) -> Path:
    import training_data_builders as b

    if SETUPS[name].layout == "classified_tiles":
        return b.write_classified_tiles(folder, count=count, chip=64, seed=1)
    writer = b.write_pascal_voc if SETUPS[name].layout == "pascal_voc" else b.write_rcnn_masks
    return writer(folder, count=count, chip=64, seed=7, radii=RADII)


class _Watch:
    """The dtypes of the training convolutions' outputs, and the GradScaler's steps, skips and scale."""

    def __init__(self, torch) -> None:  # noqa: ANN001
        self.dtypes: set = set()
        self.steps = self.skips = 0
        self.scale: float | None = None
        self._hook = torch.nn.modules.module.register_module_forward_hook(self._seen)
        self._torch = torch

    def _seen(self, module, args, output) -> None:  # noqa: ANN001
        if isinstance(module, self._torch.nn.Conv2d) and module.training and hasattr(output, "dtype"):
            self.dtypes.add(str(output.dtype).replace("torch.", ""))

    def scaler(self, device: str):  # noqa: ANN201 - the plugin's GradScaler, counting
        watch = self

        class CountingScaler(self._torch.amp.GradScaler):
            def step(self, optimizer, *args, **kwargs):  # noqa: ANN001, ANN202
                watch.steps += 1
                return super().step(optimizer, *args, **kwargs)

            def update(self, new_scale=None) -> None:  # noqa: ANN001
                before = self.get_scale()
                super().update(new_scale)
                watch.scale = self.get_scale()
                watch.skips += int(watch.scale < before)  # an overflow: the step was skipped, the scale halved

        return CountingScaler(device)

    def close(self) -> None:
        self._hook.remove()


def _inference(name: str, folder: Path, work: Path, device, found: Findings) -> None:  # noqa: ANN001
    """The folder through the plugin's own inference on the device, judged as the CPU tests judge it."""
    from builders import read_raster, write_raster
    from dltools.core.model.loader import load_model_definition
    from training_data_builders import pixel_box, shape_boxes, shapes_found_with_class, shapes_scene

    md = load_model_definition(str(next(folder.glob("*.emd"))))
    if name == "UnetClassifier":
        from dltools.core.tools.classify_pixels.pipeline import classify_pixels

        image, truth = shapes_scene(96, 128, 8, seed=4242)
        out = work / "classes.tif"
        classify_pixels(str(write_raster(work / "scene.tif", image)), md, str(out), device=device)
        agreement = float((read_raster(out) == truth).mean())
        found.lines.append(f"  Classify Pixels on a new scene: {agreement:.3f} of the pixels agree (CPU test: 0.93)")
        found.check(agreement >= 0.93, f"Classify Pixels agreement {agreement:.3f} < 0.93")
        return
    from dltools.core.tools.detect_objects.pipeline import detect_objects

    shapes = 0
    for seed in range(1, 9):
        image, mask = shapes_scene(128, 128, 5, seed=seed, radii=RADII)
        result = detect_objects(str(write_raster(work / f"scene{seed}.tif", image)), md,
                                "threshold 0.5" if name == "MaskRCNN" else "", device=device)
        shapes += shapes_found_with_class([(o.class_value, pixel_box(o.wkb)) for o in result.objects],
                                          shape_boxes(mask))[0]
    found.lines.append(f"  Detect Objects on eight new scenes: {shapes} of 40 shapes found with their class "
                       "(on the CPU: FasterRCNN 37, MaskRCNN 38)")
    found.check(shapes >= 30, f"Detect Objects found {shapes} of 40 shapes (< 30)")


def train_family(name: str, kind: str, quick: bool, work: Path) -> Findings:
    """Train ``name`` on ``kind`` ("gpu", "cpu" or "cpu-mixed") as the CPU tests do; what it showed."""
    import torch
    from builders import RecordingProgress
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.tools.train import loop
    from dltools.core.tools.train.loop import TrainSettings
    from dltools.core.tools.train.pipeline import TrainRequest, train_model

    setup, found = SETUPS[name], Findings()
    settings = dict(setup.settings, **({"max_epochs": 1} if quick else {}))
    chips = _chips(name, work / "chips", 16 if quick else setup.chips)
    on_gpu, mixed = kind == "gpu", kind != "cpu"
    device = DeviceRequest("gpu" if on_gpu else "cpu", threads=0 if on_gpu else 2)
    watch, plain = _Watch(torch), loop.mixed_precision
    loop.mixed_precision = lambda torch, dev: (True, watch.scaler(dev.type)) if mixed else (False, None)
    began = time.perf_counter()
    try:
        progress = RecordingProgress()
        result = train_model(TrainRequest(str(chips), str(work / "model"), TrainSettings(
            model_type=name, backbone="resnet18", seed=0, **settings), arguments=setup.arguments, device=device),
            progress)
    finally:
        loop.mixed_precision = plain
        watch.close()
    seconds = time.perf_counter() - began
    history = result.outcome.history
    scores = [round(float(h.metrics.get(setup.metric, 0.0)), 3) for h in history]
    best = scores[result.outcome.best_epoch - 1]  # the kept epoch (the detectors' is chosen by its mAP)
    found.lines += [f"{name} resnet18 on {kind}: {seconds:.1f} s in all, epochs "
                    f"{[round(h.seconds, 1) for h in history]} s; validation {setup.metric} by epoch {scores}",
                    f"  convolutions computed in {sorted(watch.dtypes)}; GradScaler: {watch.steps} steps, "
                    f"{watch.skips} skipped for an overflow, final scale {watch.scale}"]
    device_line = next((line for line in progress.infos if line.startswith("Device: ")), "")
    found.check(("cuda" in device_line.lower()) == on_gpu, f"the log's device line: '{device_line}'")
    found.check(("(mixed precision)" in device_line) == on_gpu, f"mixed precision in '{device_line}'")
    dtypes = {"gpu": {"float16"}, "cpu-mixed": {"bfloat16"}, "cpu": {"float32"}}[kind]
    found.check(watch.dtypes == dtypes, f"convolution dtypes {sorted(watch.dtypes)}, not {sorted(dtypes)}")
    found.check(watch.steps > 0 if mixed else watch.steps == 0, f"GradScaler steps {watch.steps}")
    found.check(watch.skips <= 8, f"{watch.skips} steps skipped for overflows")
    found.check(all(math.isfinite(h.train_loss) and math.isfinite(h.valid_loss) for h in history),
                "a loss is not finite")
    if not quick:
        found.check(best >= setup.stated, f"validation {setup.metric} {best} < the stated {setup.stated}")
    state = torch.load(str(result.files["pth"]), map_location="cpu", weights_only=True)
    found.check(all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point()),
                "the .pth holds weights that are not float32")
    if not quick:
        _inference(name, result.folder, work, device, found)
    return found


def main(argv: list[str]) -> int:
    kind = argv[argv.index("--device") + 1] if "--device" in argv[:-1] else "gpu"
    if kind not in ("gpu", "cpu", "cpu-mixed"):
        print(f"--device {kind}: gpu (the default), cpu or cpu-mixed")
        return 1
    quick = "--quick" in argv
    names = [a for a in argv if a not in ("--quick", "--device", kind)]
    unknown = [a for a in names if a not in FAMILIES]
    if unknown:
        print(f"Unknown family {unknown[0]}: one of {', '.join(FAMILIES)}")
        return 1
    names = names or list(FAMILIES)
    if kind == "gpu":
        why = cuda_missing()
        if why:
            print(NO_CUDA.format(why=why))
            return 2
    _plugin_and_tests()
    verdict = 0
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"dltools-gpu-train-{name}-") as work:
            found = train_family(name, kind, quick, Path(work))
        print("\n".join(found.lines))
        for problem in found.problems:
            print(f"  FAILED: {problem}")
        verdict |= bool(found.problems)
    print("All checks passed." if not verdict else "Some checks failed (above).")
    return int(verdict)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

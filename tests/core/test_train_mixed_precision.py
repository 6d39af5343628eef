# SPDX-License-Identifier: GPL-2.0-or-later
"""The mixed-precision branch of training (autocast + GradScaler), run on the CPU.

On CUDA, training runs under ``torch.autocast`` with a GradScaler (core/tools/train/loop.py ``mixed_precision``);
there is no GPU here, so these tests take that same branch on the CPU (autocast in bfloat16, a CPU GradScaler) and
check what the branch itself does, whatever the device: the steps go through the scaler, the scaler's state is in
each checkpoint and comes back on resume (the resumed run's weights equal an uninterrupted run's), the pixel and
detection trainers run their losses under autocast, and the model folder holds float32 weights that load strictly.
What only a GPU can show (half-precision speed, CUDA's numerics) is `make gpu-check`'s and the note's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from builders import RecordingProgress  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.tools.train import loop  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import write_classified_tiles, write_pascal_voc  # noqa: E402

CPU = DeviceRequest("cpu", threads=1)


class CountingScaler(torch.amp.GradScaler):
    """A CPU GradScaler that counts the steps taken through it."""

    steps = 0

    def step(self, optimizer, *args, **kwargs):  # noqa: ANN001, ANN201
        CountingScaler.steps += 1
        return super().step(optimizer, *args, **kwargs)


@pytest.fixture(autouse=True)
def mixed_on_the_cpu(monkeypatch):
    CountingScaler.steps = 0
    monkeypatch.setattr(loop, "mixed_precision", lambda torch, device: (True, CountingScaler("cpu", init_scale=256.0)))


@pytest.fixture
def conv_dtypes():
    """The dtypes the network's convolutions computed in while training (autocast: bfloat16 on the CPU)."""
    seen: set = set()

    def hook(module, args, output):  # noqa: ANN001, ANN202
        if isinstance(module, torch.nn.Conv2d) and module.training:
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


def _run(chips, out, progress=None, model_type="UnetClassifier", **kw):  # noqa: ANN001, ANN202
    settings = TrainSettings(**{"model_type": model_type, "backbone": "resnet18", "max_epochs": 2, "batch_size": 4,
                                "learning_rate": 0.003, "validation_percent": 25, "seed": 0, **kw})
    return train_model(TrainRequest(str(chips), str(out), settings, device=CPU), progress or RecordingProgress())


def test_pixel_training_steps_through_the_scaler_and_resume_restores_it(tmp_path, conv_dtypes):
    chips = write_classified_tiles(tmp_path / "chips", count=10, chip=32, seed=2)
    whole = _run(chips, tmp_path / "whole")
    assert CountingScaler.steps == 4  # 2 epochs of 2 batches
    assert conv_dtypes == {torch.bfloat16}
    first = RecordingProgress(cancel_after=3)  # stopped during epoch 2
    assert _run(chips, tmp_path / "resumed", first).outcome.canceled
    resumed = _run(chips, tmp_path / "resumed")
    assert resumed.outcome.resumed_from == 1
    a = torch.load(str(tmp_path / "whole/checkpoints/last.pth"), weights_only=True)
    b = torch.load(str(tmp_path / "resumed/checkpoints/last.pth"), weights_only=True)
    assert a["scaler"]["scale"] == b["scaler"]["scale"] == 256.0  # no overflow: the scale stays as it started
    assert a["scaler"]["_growth_tracker"] == b["scaler"]["_growth_tracker"] == 4  # ... and counted every step
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h.valid_loss for h in whole.outcome.history] == [h.valid_loss for h in resumed.outcome.history]
    state = torch.load(str(whole.files["pth"]), weights_only=True)
    assert {v.dtype for v in state.values()} <= {torch.float32, torch.int64}
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("model_type", ["SingleShotDetector", "FasterRCNN"])
def test_detection_training_runs_under_autocast_and_writes_float32_weights(tmp_path, model_type, conv_dtypes):
    chips = write_pascal_voc(tmp_path / "chips", count=8, chip=64, seed=3)
    result = _run(chips, tmp_path / "model", model_type=model_type, max_epochs=1, batch_size=2)
    assert CountingScaler.steps == 3  # 6 training chips, batches of 2
    assert torch.bfloat16 in conv_dtypes
    assert all(h.train_loss == h.train_loss and h.valid_loss == h.valid_loss for h in result.outcome.history)
    state = torch.load(str(result.files["pth"]), weights_only=True)
    assert {v.dtype for v in state.values()} <= {torch.float32, torch.int64}
    saved = torch.load(str(tmp_path / "model/checkpoints/last.pth"), weights_only=True)
    assert saved["scaler"]["scale"] > 0

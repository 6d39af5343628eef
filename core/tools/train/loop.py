# SPDX-License-Identifier: GPL-2.0-or-later
"""Epochs: train, validate, log the metrics, checkpoint; resume from a checkpoint; stop early; cancel.

Everything random is drawn from generators seeded by (seed, epoch) at the start of each epoch (the chip order, the
augmentation, dropout), and the learning rate is a function of the step (:mod:`.schedule`), so a training resumed
from the checkpoint of epoch k runs exactly as an uninterrupted one would from there (on the CPU; GPU kernels may
not be bitwise deterministic).  The checkpoint holds only tensors and plain containers: it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.class_scores import confusion
from ...errors import CancelledError, InputDataError
from ...progress import Progress
from .checkpoints import BEST, LAST, CheckpointFiles
from .chips import ChipReader, batches
from .lr_finder import find_learning_rate
from .metrics import epoch_metrics, metric_table
from .schedule import one_cycle_lr

PATIENCE = 5  # epochs without improvement before STOP_TRAINING stops (arcgis.learn's early stopping)
MIN_DELTA = 0.001


@dataclass
class TrainSettings:
    """What shapes one training; its plain fields are the checkpoint's fingerprint."""

    model_type: str
    backbone: str
    max_epochs: int = 20
    batch_size: int = 8
    learning_rate: float | None = None
    validation_percent: float = 10.0
    stop_training: bool = True
    freeze: bool = False
    augmentation: bool = True
    seed: int = 0
    lr_finder_steps: int = 30
    #: what chooses the epoch kept and STOP_TRAINING (ArcGIS's MONITOR): "valid_loss", or for detectors
    #: "average_precision" (the validation mAP)
    monitor: str = "valid_loss"


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    valid_loss: float
    metrics: dict[str, Any]
    seconds: float


@dataclass
class FitOutcome:
    history: list[EpochRecord]
    best_epoch: int
    best_state: dict[str, Any]
    learning_rate: float
    canceled: bool = False
    stopped_early: bool = False
    resumed_from: int = 0
    finder: dict[str, list[float]] = field(default_factory=dict)


def stopped_improving(valid_losses: list[float], patience: int = PATIENCE, min_delta: float = MIN_DELTA) -> bool:
    """STOP_TRAINING's rule: none of the last ``patience`` epochs beat the best before them by ``min_delta``."""
    if len(valid_losses) <= patience:
        return False
    best = min(valid_losses[:-patience])
    return all(loss > best - min_delta for loss in valid_losses[-patience:])


def split_indices(count: int, percent: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) chip indices: a seeded shuffle, ``percent`` of the chips (at least one) validate."""
    if count < 2:
        raise InputDataError(f"The training data holds {count} chip: at least two are needed (one to validate)")
    order = np.random.default_rng(seed).permutation(count).tolist()
    n_valid = min(max(int(round(count * percent / 100.0)), 1), count - 1)
    return sorted(order[n_valid:]), sorted(order[:n_valid])


def mixed_precision(torch, device):  # noqa: ANN001, ANN201
    """(autocast on, GradScaler or None): on CUDA the steps run under ``torch.autocast`` (half-precision matrix
    products) with a GradScaler keeping small gradients from vanishing; on the CPU both are off and everything stays
    float32 (CPU autocast would compute in bfloat16, slower on most CPUs and not what a CPU user expects)."""
    if device.type != "cuda":
        return False, None
    return True, torch.amp.GradScaler("cuda")


def adamw(torch, params: list, device):  # noqa: ANN001, ANN201
    """AdamW (betas 0.9, 0.99, weight decay 0.01, fastai's defaults); on the CPU its fused kernel, one pass over
    each tensor instead of a dozen: 0.07 s instead of 0.57 s a step for an R-CNN's 40 million weights on two
    threads, the same update within float rounding.  A torch without the CPU kernel gets the plain one."""
    kwargs = {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.01}
    if device.type == "cpu":
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # older torch: fused AdamW is CUDA only
            pass
    return torch.optim.AdamW(params, **kwargs)


class Trainer:
    """One training of ``module`` on the chips of ``reader``; checkpoints in ``checkpoint_dir``."""

    def __init__(self, module, reader: ChipReader, settings: TrainSettings, class_names: list[str],  # noqa: ANN001
                 pixels: bool, torch, device, progress: Progress, checkpoint_dir: Path,  # noqa: ANN001
                 fingerprint: dict[str, Any]) -> None:
        self.module, self.reader, self.s, self.names, self.pixels = module, reader, settings, class_names, pixels
        self.torch, self.device, self.progress, self.dir = torch, device, progress, checkpoint_dir
        self.fingerprint = fingerprint
        self.files = CheckpointFiles(checkpoint_dir)
        self.train_idx, self.valid_idx = split_indices(reader.data.count, settings.validation_percent, settings.seed)
        self.steps_per_epoch = max(math.ceil(len(self.train_idx) / settings.batch_size), 1)
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = adamw(torch, params, device)
        self.amp, self.scaler = mixed_precision(torch, device)
        self.weights, self.focal = None, False

    def set_loss(self, weights: list[float] | None, focal: bool) -> None:
        """Class weights (``class_balancing``, ``ignore_classes``) and focal loss (``focal_loss``)."""
        self.weights = None if weights is None else self.torch.tensor(weights, dtype=self.torch.float32,
                                                                      device=self.device)
        self.focal = focal

    def _criterion(self, out, targets):  # noqa: ANN001, ANN202
        """Cross-entropy, weighted per class (a weighted mean, 0 when every pixel weighs 0), maybe focal
        (``(1 - p_t)^2`` times each pixel's loss, as in Lin et al. 2017 with gamma 2)."""
        f = self.torch.nn.functional
        if self.weights is None and not self.focal:
            return f.cross_entropy(out, targets)
        each = f.cross_entropy(out, targets, weight=self.weights, reduction="none")
        if self.focal:
            p_t = self.torch.exp(-f.cross_entropy(out, targets, reduction="none"))
            each = (1 - p_t) ** 2 * each
        if self.weights is None:
            return each.mean()
        return each.sum() / self.weights[targets].sum().clamp_min(1e-12)

    # -- one step and one pass ------------------------------------------------------------------
    def _loss(self, images, targets):  # noqa: ANN001, ANN202
        torch = self.torch
        with torch.autocast(self.device.type, enabled=self.amp):
            out = self.module(images.to(self.device))
            aux = None
            if isinstance(out, dict):  # torchvision DeepLab: "out" and, in training, "aux"
                out, aux = out["out"], out.get("aux")
            targets = targets.to(self.device)
            loss = self._criterion(out.float(), targets)
            if aux is not None and self.module.training:
                loss = loss + 0.4 * self._criterion(aux.float(), targets)
        return loss, out

    def step(self, images, targets) -> float:  # noqa: ANN001
        loss, _ = self._loss(images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def _epoch_order(self, epoch: int):  # noqa: ANN202
        """(chip order, generator) of one epoch: seeded by the run's seed and the epoch, so a resumed run shuffles
        exactly as an uninterrupted one; a last batch of one chip is left out (it cannot train batch norm)."""
        gen = self.torch.Generator().manual_seed(self.s.seed * 100003 + epoch)
        order = [self.train_idx[i] for i in self.torch.randperm(len(self.train_idx), generator=gen).tolist()]
        if len(order) % self.s.batch_size == 1 and len(order) > 1:
            order = order[:-1]
        return order, gen

    def train_mode(self) -> None:
        """The network as it trains: ``module.train()``; a family whose layers must train as they run overrides
        this (:class:`.anchor_detection.AnchorDetectionTrainer`)."""
        self.module.train()

    def _train_batches(self, epoch: int):  # noqa: ANN202
        order, gen = self._epoch_order(epoch)
        return batches(self.reader, order, self.s.batch_size, self.torch, gen, self.s.augmentation)

    def validate(self) -> tuple[float, dict[str, Any]]:
        torch = self.torch
        self.module.eval()
        classes = len(self.names)
        matrix = np.zeros((classes, classes), np.int64)
        total, count = 0.0, 0
        with torch.no_grad():
            for images, targets in batches(self.reader, self.valid_idx, self.s.batch_size, torch):
                loss, out = self._loss(images, targets)
                total += float(loss) * len(images)
                count += len(images)
                matrix += confusion(targets.numpy(), out.argmax(dim=1).cpu().numpy(), classes)
        self.train_mode()
        return total / max(count, 1), epoch_metrics(matrix, self.names, self.pixels)

    # -- checkpoints ------------------------------------------------------------------------------
    def _resume(self) -> dict[str, Any] | None:
        path = self.dir / LAST
        if not path.is_file():
            return None
        try:
            saved = self.torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint: say so, start afresh
            self.progress.warning(f"Checkpoint '{path}' could not be read ({exc}): training starts afresh")
            return None
        if saved.get("fingerprint") != self.fingerprint:
            differ = sorted(k for k in set(self.fingerprint) | set(saved.get("fingerprint", {}))
                            if self.fingerprint.get(k) != saved.get("fingerprint", {}).get(k))
            self.progress.warning(f"Checkpoint '{path}' belongs to another training (it differs in "
                                  f"{', '.join(differ)}): training starts afresh and replaces it")
            return None
        return saved

    def _checkpoint(self, epoch: int, history: list[EpochRecord], best_epoch: int, best_loss: float,
                    lr: float) -> None:
        payload = {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                   "history": [asdict(h) for h in history], "best_epoch": best_epoch, "best_valid_loss": best_loss,
                   "learning_rate": lr, "fingerprint": self.fingerprint}
        if self.scaler is not None:
            payload["scaler"] = self.scaler.state_dict()
        self.files.write(self.torch, payload, best=best_epoch == epoch)

    def _best_state(self, best_epoch: int) -> dict[str, Any]:
        saved = self.torch.load(str(self.dir / BEST), map_location="cpu", weights_only=True)
        if int(saved.get("epoch", -1)) != best_epoch:
            raise InputDataError(f"Checkpoint '{self.dir / BEST}' does not hold epoch {best_epoch}")
        return saved["model"]

    # -- the run ---------------------------------------------------------------------------------
    def _learning_rate(self) -> tuple[float, dict[str, list[float]]]:
        if self.s.learning_rate:
            return float(self.s.learning_rate), {}
        self.progress.info(f"LEARNING_RATE is empty: trying rates from 1e-6 to 1 on {self.s.lr_finder_steps} batches")
        lr, rates, losses = find_learning_rate(
            self.module, self.optimizer, self.step, lambda: self._train_batches(-1), self.s.lr_finder_steps,
            self.progress.is_canceled)
        self.progress.info(f"Learning rate found: {lr:.4e} (steepest fall of the loss)")
        return lr, {"rates": rates, "losses": losses}

    def run(self) -> FitOutcome:
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self._resume()
        self.train_mode()
        history: list[EpochRecord] = []
        best_epoch, best_loss, start, finder = 0, math.inf, 0, {}
        if saved is not None:
            self.module.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            if self.scaler is not None and "scaler" in saved:
                self.scaler.load_state_dict(saved["scaler"])
            history = [EpochRecord(**h) for h in saved["history"]]
            best_epoch, best_loss, start = int(saved["best_epoch"]), float(saved["best_valid_loss"]), int(saved["epoch"])
            lr = float(saved["learning_rate"])
            self.progress.info(f"Resuming from the checkpoint of epoch {start} in '{self.dir}' (learning rate {lr:.4e})")
        else:
            lr, finder = self._learning_rate()
        self.progress.info(f"{len(self.train_idx)} training chips, {len(self.valid_idx)} validation chips, "
                           f"{self.steps_per_epoch} batches of {self.s.batch_size} per epoch")
        outcome = FitOutcome(history=history, best_epoch=best_epoch, best_state={}, learning_rate=lr,
                             resumed_from=start, finder=finder)
        total_steps = self.s.max_epochs * self.steps_per_epoch
        for epoch in range(start, self.s.max_epochs):
            if self._stale(history, best_epoch):
                outcome.stopped_early = True
                self.progress.info(f"STOP_TRAINING: the {self.monitor_words} has not improved for {PATIENCE} "
                                   f"epochs; stopped after epoch {epoch}")
                break
            record = self._epoch(epoch, lr, total_steps)
            if record is None:
                outcome.canceled = True
                break
            history.append(record)
            if self.monitored(record) < best_loss:
                best_epoch, best_loss = record.epoch, self.monitored(record)
            self._checkpoint(record.epoch, history, best_epoch, best_loss, lr)
        self.files.prune()
        if not best_epoch:
            raise CancelledError("Training was cancelled before the first epoch ended: no model was written.")
        outcome.best_epoch = best_epoch
        outcome.best_state = self._best_state(best_epoch)
        return outcome

    def _stale(self, history: list[EpochRecord], best_epoch: int) -> bool:
        return self.s.stop_training and stopped_improving([self.monitored(h) for h in history])

    def monitored(self, record: EpochRecord) -> float:
        """The value an epoch is judged by, lower being better: the validation loss, or minus the validation mAP."""
        if self.s.monitor == "average_precision":
            return -float(record.metrics.get("map", 0.0))
        return record.valid_loss

    @property
    def monitor_words(self) -> str:
        return "validation mAP" if self.s.monitor == "average_precision" else "validation loss"

    def _epoch(self, epoch: int, lr: float, total_steps: int) -> EpochRecord | None:
        torch = self.torch
        torch.manual_seed(self.s.seed * 100003 + epoch)  # dropout
        began = time.perf_counter()
        self.train_mode()
        total, count = 0.0, 0
        for b, (images, targets) in enumerate(self._train_batches(epoch)):
            if self.progress.is_canceled():
                return None
            step = epoch * self.steps_per_epoch + b
            for group in self.optimizer.param_groups:
                group["lr"] = one_cycle_lr(step, total_steps, lr)
            total += self.step(images, targets) * len(images)
            count += len(images)
            self.progress.set_progress(100.0 * (epoch + (b + 1) / self.steps_per_epoch) / self.s.max_epochs)
        valid_loss, metrics = self.validate()
        record = EpochRecord(epoch=epoch + 1, train_loss=total / max(count, 1), valid_loss=valid_loss,
                             metrics=metrics, seconds=time.perf_counter() - began)
        score = f"mAP {metrics['map']:.4f}" if "map" in metrics else f"accuracy {metrics['accuracy']:.4f}"
        extra = f"  mIoU {metrics['miou']:.4f}" if "miou" in metrics else ""
        self.progress.info(f"epoch {record.epoch}/{self.s.max_epochs}  train_loss {record.train_loss:.4f}  "
                           f"valid_loss {valid_loss:.4f}  {score}{extra}  ({record.seconds:.1f} s)")
        for line in metric_table(metrics):
            self.progress.info(line)
        return record

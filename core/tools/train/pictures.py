# SPDX-License-Identifier: GPL-2.0-or-later
"""``loss_graph.png`` and ``show_results.png``, drawn with matplotlib's Agg canvas (no GUI, no pyplot state).

matplotlib is imported here only: when it is missing the pictures are left out and the log says so (the model
works without them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(width: float, height: float):  # noqa: ANN202
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def loss_graph(history: list, best_epoch: int, path: Path) -> None:
    """Training and validation loss per epoch, the kept (best) epoch marked."""
    fig = _figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [h.epoch for h in history]
    ax.plot(epochs, [h.train_loss for h in history], marker="o", label="training loss")
    ax.plot(epochs, [h.valid_loss for h in history], marker="o", label="validation loss")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def _display(image: np.ndarray) -> np.ndarray:
    """The first three bands (or the one) stretched to 0..1 for display."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    rgb = rgb.astype(np.float64)
    low, high = rgb.min(), rgb.max()
    return np.transpose((rgb - low) / (high - low if high > low else 1.0), (1, 2, 0))


def _colour(indices: np.ndarray, colours: list[tuple[int, int, int]]) -> np.ndarray:
    lut = np.asarray([(0, 0, 0)] + list(colours), np.float64) / 255.0
    return lut[np.clip(indices, 0, len(lut) - 1)]


def show_results(samples: list[tuple[np.ndarray, object, object]], names: list[str],
                 colours: list[tuple[int, int, int]], path: Path) -> None:
    """One row per validation chip: the image, the ground truth, the prediction (class maps in the class colours,
    or the class names for FeatureClassifier)."""
    rows = len(samples)
    fig = _figure(7.5, 2.5 * rows)
    for r, (image, truth, predicted) in enumerate(samples):
        maps = isinstance(truth, np.ndarray)
        panels = [("image", _display(image))]
        if maps:
            panels += [("ground truth", _colour(truth, colours)), ("prediction", _colour(predicted, colours))]
        for c, (title, picture) in enumerate(panels):
            ax = fig.add_subplot(rows, 3, r * 3 + c + 1)
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title if maps else f"truth {names[int(truth)]} / predicted {names[int(predicted)]}",
                         fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def show_detections(samples: list[tuple[np.ndarray, dict, dict]], names: list[str],
                    colours: list[tuple[int, int, int]], path: Path) -> None:
    """One row per validation chip: the ground-truth boxes, then the detections (score >= 0.5) with their score."""
    from matplotlib.patches import Rectangle

    rows = len(samples)
    fig = _figure(5.0, 2.5 * rows)
    for r, (image, truth, found) in enumerate(samples):
        keep = np.asarray(found.get("scores", []), np.float64) >= 0.5
        panels = [("ground truth", truth["boxes"], truth["labels"], None),
                  ("prediction", found["boxes"][keep], found["labels"][keep], found["scores"][keep])]
        for c, (title, boxes, labels, scores) in enumerate(panels):
            ax = fig.add_subplot(rows, 2, r * 2 + c + 1)
            ax.imshow(_display(image), interpolation="nearest")
            for k, (box, label) in enumerate(zip(boxes, labels)):
                colour = np.asarray(colours[int(label) - 1], np.float64) / 255.0
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       edgecolor=colour, linewidth=1.5))
                text = names[int(label) - 1] + ("" if scores is None else f" {scores[k]:.2f}")
                ax.text(box[0], box[1], text, color=colour, fontsize=6, va="bottom")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(str(path), format="png")

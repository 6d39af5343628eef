# SPDX-License-Identifier: GPL-2.0-or-later
"""What a detector answers is untrusted: objects that cannot be right are dropped, and counted, never written.

A hostile or broken model can return class ids outside its classes (written as "class 98", or worse as a real
class value), boxes of +-1e30 (which swallow every real object in the seam merge), inverted boxes, NaN. Each
chip's objects pass :func:`screen` right after decoding; the run logs what was dropped and why.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .decode import ChipDetections

#: How many tiles beyond its own tile a box may reach before it is taken for nonsense.
FAR = 8

#: why an object was dropped -> the words the log uses
REASONS = {
    "not_finite": "had a NaN or infinite box or score",
    "unknown_class": "had a class id outside the model's classes",
    "inverted": "had an inverted box (x2 < x1 or y2 < y1)",
    "outside": "had a box reaching far outside its tile (more than 8 tiles)",
}


def screen(det: ChipDetections, n_slots: int | None, tile_w: int, tile_h: int,
           dropped: Counter) -> ChipDetections:
    """``det`` without the objects that cannot be right; ``dropped`` counts them by reason (:data:`REASONS`).

    ``n_slots``: the number of classes the model has (slots 0..n-1), None when unknown. A box may reach past its
    tile (an object cut by the tile's edge; an untrained network's wild guess), but not :data:`FAR` tiles: the
    model saw only the tile, and such a box (+-1e30) would swallow every real object in the seam merge."""
    n = len(det)
    if n == 0:
        return det
    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, np.float64)
    reasons = np.full(n, "", dtype=object)
    bad = ~(np.isfinite(boxes).all(axis=1) & np.isfinite(scores))
    reasons[bad] = "not_finite"
    if n_slots is not None:
        unknown = ~bad & ((det.classes < 0) | (det.classes >= n_slots))
        reasons[unknown] = "unknown_class"
    with np.errstate(invalid="ignore"):
        inverted = (reasons == "") & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        reasons[inverted] = "inverted"
        far = (reasons == "") & ((boxes[:, 0] < -FAR * tile_w) | (boxes[:, 1] < -FAR * tile_h)
                                 | (boxes[:, 2] > (FAR + 1) * tile_w) | (boxes[:, 3] > (FAR + 1) * tile_h))
    reasons[far] = "outside"
    keep = reasons == ""
    if keep.all():
        return det
    dropped.update(str(r) for r in reasons[~keep])
    return det.take(np.nonzero(keep)[0])


def dropped_lines(dropped: Counter) -> list[str]:
    """The log lines for what :func:`screen` dropped over a run (none when nothing was)."""
    return [f"{count} objects {REASONS[reason]}: dropped" for reason, count in sorted(dropped.items()) if count]

# SPDX-License-Identifier: GPL-2.0-or-later
"""Which axis of a model's 4-D image input holds the bands: the one NCHW/NHWC rule.

A model file declares its input shape but not its layout.  The rule, used wherever a layout is read from a
file (a plain ONNX model, the .ecd writer's probe): the band axis is the one whose size is the number of bands
when that number is known; when it is not, it is the small axis (at most :data:`MAX_BANDS`) of the two candidates,
NCHW unless the last one is the smaller (a 16 x 16 tile of 3 bands is NHWC).  Definitions (.emd
``ModelFormat``) state it and are believed.
"""

from __future__ import annotations

from collections.abc import Sequence

#: More bands than this on an axis means it is an image side, not a band axis (for guessing without a band count).
MAX_BANDS = 16


def input_layout(shape: Sequence[int | None], bands: int | None = None) -> str | None:
    """``"NCHW"`` or ``"NHWC"`` for a 4-D input ``shape`` (None where dynamic); None when ``bands`` is given and
    neither candidate axis can hold that many bands."""
    first, last = shape[1], shape[3]
    if bands is not None:
        if first == bands:
            return "NCHW"
        if last == bands:
            return "NHWC"
        return "NCHW" if first is None else None
    if last is not None and last <= MAX_BANDS and (first is None or first > MAX_BANDS or last < first):
        return "NHWC"
    return "NCHW"


def band_axis(layout: str) -> int:
    """The index of the band axis in a 4-D input of ``layout``."""
    return 3 if layout == "NHWC" else 1


def image_size(shape: Sequence[int | None], layout: str) -> tuple[int | None, int | None]:
    """(height, width) of a 4-D input ``shape`` of ``layout``."""
    return (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])

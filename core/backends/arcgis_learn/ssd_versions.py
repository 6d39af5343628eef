# SPDX-License-Identifier: GPL-2.0-or-later
"""How arcgis.learn's SingleShotDetector head reaches each anchor grid, by ``SSDVersion``.

The ``.emd`` key ``SSDVersion`` (absent: 1, as arcgis.learn's ``from_emd`` reads it) picks the head:

* version 2 (``SSDHeadv2``, arcgis.learn 1.6.3 on): a grid of 1 is one ``size x size`` convolution; a smaller
  grid a 3x3 convolution of stride 1 or 2 and padding 0 or 1, the first whose floor-divided output is the grid;
  a larger grid (or none fits) is nearest-upsampled to the grid, then convolved 3x3, stride 1, padding 1.  A
  first grid over 8 and more than 4 cells from the chip / 32 map cuts the ResNet before its last stage.
* version 1 (``SSDHead``): the whole body always; a grid of 1 as in version 2; otherwise the first kernel of
  (3, 2, 5, 4), padding 0 to 3 and stride 1 to 3 whose output is *exactly* the grid, never upsampling.

Both store the same keys (the upsampling has no weights) and, wherever both use a 3x3 kernel, the same
shapes, so a version-1 model would load strictly into a version-2 rebuild and answer wrongly: the rebuild
therefore follows the plan of the ``.emd``'s own version (:func:`head_plan`).
"""

from __future__ import annotations

from typing import Any

from ...errors import ModelDefinitionError

#: One head convolution: (stride, padding, kernel, upsample to the grid first)
Step = tuple[int, int, int, bool]
#: (children dropped from the ResNet, feature map size, its channels, one step per grid)
Plan = tuple[int, int, int, list[Step]]


def grid_step(size: int, grid: int) -> Step:
    """The version-2 step from a ``size`` map to a ``grid`` one (see the module docstring)."""
    if grid <= size:
        if grid == 1:
            return 1, 0, size, False
        for pad in (0, 1):
            for stride in (1, 2):
                if (size - 3 + 2 * pad) // stride + 1 == grid:
                    return stride, pad, 3, False
    return 1, 1, 3, True


def grid_step_v1(size: int, grid: int) -> Step | None:
    """The version-1 step from a ``size`` map to a ``grid`` one, or None where version 1 has none (arcgis.learn
    then refuses to build the model: "cannot create model for specified grids")."""
    if grid == 1:
        return 1, 0, size, False
    for kernel in (3, 2, 5, 4):
        for pad in range(4):
            for stride in (1, 2, 3):
                if (grid - 1) * stride == size - kernel + 2 * pad:
                    return stride, pad, kernel, False
    return None


def body_cut(backbone: str, chip: int, grids: list[int]) -> tuple[int, int, int]:
    """(children of the ResNet dropped at the end, feature map size, its channels): version 2 cuts the body
    before its last stage (``-3``, a map of chip / 16) when the first grid is over 8 and more than 4 away from
    the chip / 32 map of the whole body (``-2``)."""
    from .fastai_layers import body_channels  # torch: this module itself stays importable without it

    feature = -(-chip // 32)
    if grids and grids[0] > 8 and abs(feature - grids[0]) > 4:
        return 3, -(-chip // 16), body_channels(backbone) // 2
    return 2, feature, body_channels(backbone)


def head_plan_v2(backbone: str, chip: int, grids: list[int]) -> Plan:
    cut, feature, channels = body_cut(backbone, chip, grids)
    steps, size = [], feature
    for g in grids:
        steps.append(grid_step(size, g))
        size = g
    return cut, feature, channels, steps


def head_plan_v1(backbone: str, chip: int, grids: list[int]) -> Plan | None:
    """The version-1 plan, or None where arcgis.learn's version 1 cannot build these grids."""
    from .fastai_layers import body_channels
    feature = -(-chip // 32)
    steps, size = [], feature
    for g in grids:
        step = grid_step_v1(size, g)
        if step is None:
            return None
        steps.append(step)
        size = g
    return 2, feature, body_channels(backbone), steps


def ssd_version(data: dict[str, Any]) -> int:
    """The ``.emd``'s ``SSDVersion``: 1 when absent, as arcgis.learn reads it; a clear error if not 1 or 2."""
    raw = data.get("SSDVersion", 1)
    try:
        version = int(raw)
    except (TypeError, ValueError):
        version = 0
    if version not in (1, 2) or isinstance(raw, bool):
        raise ModelDefinitionError(f"arcgis.learn SingleShotDetector: the .emd key SSDVersion is {raw!r}; "
                                   "arcgis.learn writes 1 or 2. Correct the .emd (2 for models saved by "
                                   "arcgis.learn 1.6.3 or later, 1 for older ones).")
    return version


def head_plan(data: dict[str, Any], backbone: str, chip: int, grids: list[int]) -> Plan:
    """The head the ``.emd``'s ``SSDVersion`` builds: version 2's, or version 1's (refused where arcgis.learn's
    version 1 itself cannot reach the grids, so no such model exists)."""
    if ssd_version(data) == 2:
        return head_plan_v2(backbone, chip, grids)
    plan = head_plan_v1(backbone, chip, grids)
    if plan is None:
        stated = "SSDVersion 1" if "SSDVersion" in data else "no SSDVersion (arcgis.learn reads this as version 1)"
        raise ModelDefinitionError(
            f"arcgis.learn SingleShotDetector: the .emd has {stated} and Grids {grids} on {chip}-pixel chips, a "
            "head arcgis.learn's version 1 itself cannot build (no convolution reaches these grids). Check the "
            ".emd's SSDVersion (2 for models saved by arcgis.learn 1.6.3 or later), Grids and ImageHeight against "
            "the model that was trained.")
    return plan


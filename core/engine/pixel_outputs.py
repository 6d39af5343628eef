# SPDX-License-Identifier: GPL-2.0-or-later
"""The end of a pixel run: style the class raster, move outputs into place, say what was written."""

from __future__ import annotations

from ..model.definition import ModelDefinition
from ..progress import Progress
from ..raster.gdal_io import RasterGrid
from ..raster.styling import class_entries, style_class_raster
from ..safe_output import OutputSet
from .pixels import PixelRunResult


def summary_lines(result: PixelRunResult, md: ModelDefinition, grid: RasterGrid) -> list[str]:
    """The end-of-run log: speed and the area of each class."""
    cx, cy = grid.cell_size
    lines = [
        f"Done: {result.tiles} tiles, batch size {result.batch_size}, {result.device}",
        f"Time: {result.seconds:.1f} s ({result.model_seconds:.1f} s in the model), "
        f"{result.pixels / max(result.seconds, 1e-9) / 1e6:.2f} megapixels per second",
    ]
    if result.pixel_counts:
        names = {c.value: c.name for c in class_entries(md.classes, result.output_values)}
        unit = "ha" if "metre" in grid.crs_wkt.lower() or "meter" in grid.crs_wkt.lower() else "map units²"
        lines.append("Area per class:")
        for value in sorted(result.pixel_counts):
            n = result.pixel_counts[value]
            area = n * cx * cy / (10000.0 if unit == "ha" else 1.0)
            lines.append(f"  {value} {names.get(value, '')}: {n} pixels, {area:.2f} {unit}")
    return lines


def write_outputs(run, output: str, probabilities_output: str | None, md: ModelDefinition, grid: RasterGrid,
                  progress: Progress) -> PixelRunResult:
    """``run(temporary output, temporary probabilities)``, style the class raster (colour table, RAT, .qml), then
    move both into place; a failure or cancel leaves whatever was at ``output`` before, untouched."""
    with OutputSet() as outputs:
        tmp = outputs.path_for(output)
        tmp_probs = outputs.path_for(probabilities_output) if probabilities_output else None
        result = run(tmp, tmp_probs)
        if result.nodata is not None:
            style_class_raster(tmp, md.classes, result.output_values)
    result.output, result.probabilities = output, probabilities_output
    for line in summary_lines(result, md, grid):
        progress.info(line)
    for line in rejected_pixel_warnings(result):
        progress.warning(line)
    return result


def rejected_pixel_warnings(result: PixelRunResult) -> list[str]:
    """Pixels written as NoData because the model's answer there could not be trusted, said out loud."""
    lines = []
    if getattr(result, "nonfinite", 0):
        lines.append(f"{result.nonfinite} pixels had NaN or infinite scores from the model: they are NoData")
    unknown = getattr(result, "unknown_values", None) or {}
    if unknown:
        total = sum(unknown.values())
        shown = ", ".join(f"{v} ({n} pixels)" for v, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
        more = f" and {len(unknown) - 5} more values" if len(unknown) > 5 else ""
        lines.append(f"{total} pixels had class values that are not in the model definition's Classes "
                     f"({shown}{more}): they are NoData")
    return lines

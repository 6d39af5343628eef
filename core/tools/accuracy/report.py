# SPDX-License-Identifier: GPL-2.0-or-later
"""The accuracy tools' HTML reports: self-contained pages, pictures drawn as inline SVG and coloured tables.

Nothing beyond the standard library draws them, so the report looks the same in QGIS's results viewer, a
browser or a test, whether or not matplotlib is installed: the confusion matrix is a table whose cells are
shaded by their share of the reference class (a heat map), each precision-recall curve an SVG line.
"""

from __future__ import annotations

from html import escape

from ...detection.matching import ClassAccuracy
from .objects import ObjectAccuracy
from .pixels import PixelAccuracy

_STYLE = """<style>
body { font-family: sans-serif; margin: 1.5em; } table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: right; } th { background: #eee; }
.curve { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
</style>"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>{_STYLE}</head>"
            f"<body>\n<h1>{escape(title)}</h1>\n{body}</body></html>\n")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def pixel_report(result: PixelAccuracy, what: str) -> str:
    """Overall figures, the confusion matrix as a heat map, and the per-class table."""
    head = (f"<p>{escape(what)}</p>\n<p>Sampling: {escape(result.sampling)}; pixels compared: {result.total}</p>\n"
            f"<table><tr><th>Overall accuracy</th><td>{_fmt(result.overall_accuracy())}</td></tr>"
            f"<tr><th>Cohen's kappa</th><td>{_fmt(result.kappa())}</td></tr>"
            f"<tr><th>Mean IoU</th><td>{_fmt(result.mean_iou())}</td></tr></table>\n")
    cols = result.matrix.sum(axis=0)
    rows = ["<tr><th>classified \\ reference</th>" + "".join(f"<th>{v}</th>" for v in result.classes) +
            "<th>Total</th></tr>"]
    for k, value in enumerate(result.classes):
        cells = []
        for j in range(len(result.classes)):
            n = int(result.matrix[k, j])
            share = n / cols[j] if cols[j] else 0.0
            shade = int(255 - 180 * share)
            cells.append(f'<td style="background: rgb({shade},{shade},255)">{n}</td>')
        rows.append(f"<tr><th>{value}</th>{''.join(cells)}<td>{int(result.matrix[k].sum())}</td></tr>")
    rows.append("<tr><th>Total</th>" + "".join(f"<td>{int(c)}</td>" for c in cols) + f"<td>{result.total}</td></tr>")
    matrix = "<h2>Confusion matrix</h2>\n<table>" + "".join(rows) + "</table>\n"
    per_class = ["<tr><th>Class</th><th>Precision</th><th>Recall</th><th>F1</th><th>IoU</th></tr>"]
    for r in result.per_class():
        per_class.append(f"<tr><th>{r['value']}</th><td>{_fmt(r['precision'])}</td><td>{_fmt(r['recall'])}</td>"
                         f"<td>{_fmt(r['f1'])}</td><td>{_fmt(r['iou'])}</td></tr>")
    return _page("Accuracy of a pixel classification", head + matrix + "<h2>Per class</h2>\n<table>" +
                 "".join(per_class) + "</table>\n")


def pr_curve_svg(c: ClassAccuracy, size: int = 220) -> str:
    """The class's precision-recall curve (recall across, precision up) as an SVG picture."""
    pad = 30
    span = size - 2 * pad
    points = [(0.0, 1.0)] + list(zip(c.curve_recall, c.curve_precision))
    path = " ".join(f"{pad + r * span:.1f},{pad + (1 - p) * span:.1f}" for r, p in points)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img">'
            f'<title>Precision-recall curve, class {escape(str(c.class_value))}</title>'
            f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#888"/>'
            f'<polyline points="{path}" fill="none" stroke="#1f5fbf" stroke-width="2"/>'
            f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="11">recall</text>'
            f'<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 {size / 2})" '
            f'text-anchor="middle">precision</text></svg>')


def object_report(result: ObjectAccuracy) -> str:
    """The per-class table, mean average precision and a precision-recall curve per class."""
    rows = ["<tr><th>Class</th><th>TP</th><th>FP</th><th>FN</th><th>Precision</th><th>Recall</th><th>F1</th>"
            "<th>AP</th></tr>"]
    for c in result.classes:
        rows.append(f"<tr><th>{escape(str(c.class_value))}</th><td>{c.true_positives}</td><td>{c.false_positives}"
                    f"</td><td>{c.false_negatives}</td><td>{_fmt(c.precision)}</td><td>{_fmt(c.recall)}</td>"
                    f"<td>{_fmt(c.f1)}</td><td>{_fmt(c.ap)}</td></tr>")
    curves = "".join(f'<div class="curve"><p>Class {escape(str(c.class_value))} (AP {_fmt(c.ap)})</p>'
                     f"{pr_curve_svg(c)}</div>" for c in result.classes if c.ap is not None)
    head = (f"<p>{result.detections} detections, {result.truths} ground-truth features, minimum IoU "
            f"{result.min_iou:g}</p>\n<p>Mean average precision (mAP): {_fmt(result.mean_ap) or 'none (no ground truth)'}"
            "</p>\n")
    return _page("Accuracy of an object detection", head + "<table>" + "".join(rows) + "</table>\n"
                 "<h2>Precision-recall curves</h2>\n" + curves + "\n")

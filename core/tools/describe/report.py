# SPDX-License-Identifier: GPL-2.0-or-later
"""Describe Model: what the plugin understood of a model, as a plain dict, log lines and an HTML page.

:func:`describe_model` turns a :class:`~core.model.definition.ModelDefinition` and
what the backend reported (:func:`backend_info`) into a JSON-ready dict;
:func:`report_lines` and :func:`render_html` present that dict to the user.
Nothing here imports qgis; the backend is opened only in :func:`backend_info`.
"""

from __future__ import annotations

import html
import os
from typing import Any

from ...arguments.specs import TOOLS
from ...arguments.table import argument_rows, effective_arguments
from ...backends import DeviceRequest, TensorInfo, open_backend
from ...engine.contract import fixed_batch
from ...engine.normalize import scaling_convention
from ...errors import ModelDefinitionError
from ...model.loader import ModelDefinition, load_model_definition
from ...model.torch_archive import archive_summary
from ...progress import NullProgress, Progress
from ...trust import CODE_KINDS, HOW_TO_TRUST, CodeTrust

TOOL_TITLES = {
    "classify_pixels": "Classify Pixels",
    "classify_objects": "Classify Objects",
    "detect_change": "Detect Change",
}

ORIGIN_TITLES = {
    "emd": "Esri model definition (.emd)",
    "json": "model definition JSON text",
    "dlpk": "deep learning package (.dlpk)",
    "ecd": "classifier definition (.ecd)",
    "onnx": "plain ONNX file",
    "torchscript": "plain PyTorch file",
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def load_for_description(model: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                         trust: CodeTrust | None = None) -> ModelDefinition:
    """Load like the tools do; JSON text whose relative ModelFile cannot be resolved is still described.

    Every other problem (a missing file next to an .emd, an unsupported framework,
    a definition without ModelFile) stays an error, as in the tools themselves. A code-bearing model is
    opened only with the user's ``trust`` (:mod:`core.trust`).
    """
    try:
        return load_model_definition(model, cache_dir=cache_dir, check_file=True, trust=trust)
    except ModelDefinitionError as exc:
        if not str(model).strip().startswith("{"):
            raise
        try:
            md = load_model_definition(model, cache_dir=cache_dir, check_file=False, trust=trust)
        except ModelDefinitionError:
            raise exc from None
        if md.model_file is not None or not md.model_file_text:
            raise exc from None
        md.warnings.append(
            f"ModelFile '{md.model_file_text}' cannot be resolved: it is a relative path and a definition given as "
            "JSON text has no folder to resolve it against. The tools will refuse it; give an absolute path in "
            "ModelFile, or pass the .emd file")
        return md


def _tensor(info: TensorInfo) -> dict[str, Any]:
    return {"name": info.name, "shape": list(info.shape), "shape_text": info.shape_text(), "dtype": info.dtype}


def backend_info(md: ModelDefinition, device: DeviceRequest | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Open the model's backend on ``device``, note what it reports, and close it again.

    When there is no model file to open (a JSON definition whose file cannot be
    resolved), the dict says so in ``reason`` instead of raising; a backend that
    fails to load or a device that is not there is an error.
    """
    progress = progress or NullProgress()
    if md.custom_function:
        return {"opened": False, "reason": f"the model runs its own Python function '{md.inference_function}' "
                                           "(InferenceFunction), which is not run to describe the model"}
    if md.model_file is None or md.model_format_kind is None:
        reason = ("the model file cannot be resolved" if md.model_file_text else "the definition has no model file")
        return {"opened": False, "reason": reason}
    if not md.model_file.is_file():
        return {"opened": False, "reason": f"the model file {md.model_file} does not exist"}
    if md.model_format_kind in CODE_KINDS and not (md.code_trust and md.code_trust.allows(md.model_file)):
        return {"opened": False, "reason": f"the model file is a program ({archive_summary(md.model_file)}); "
                                           "it is opened only when you trust it, so its inputs and outputs are not "
                                           f"shown. {HOW_TO_TRUST}"}
    backend = open_backend(md.model_file, md.model_format_kind, device or DeviceRequest(), progress,
                           definition=md.raw, trust=md.code_trust)
    try:
        return {
            "opened": True,
            "kind": backend.kind,
            "description": backend.describe(),
            "device": backend.device,
            "provider": backend.provider,
            "fixed_batch": fixed_batch(backend.inputs, backend.outputs),
            "inputs": [_tensor(i) for i in backend.inputs],
            "outputs": [_tensor(o) for o in backend.outputs],
        }
    finally:
        backend.close()


# ------------------------------------------------------------------------------------------ pieces
def _fmt(values: list[float] | tuple[float, ...] | None) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values or []) + "]"


def bands_text(md: ModelDefinition) -> str:
    """Which raster bands the model reads, in words (band numbers are 1-based, as QGIS shows them)."""
    if md.extract_band_names:
        return "raster bands named " + ", ".join(md.extract_band_names) + " (ExtractBands by name)"
    if md.extract_bands:
        numbers = ", ".join(str(b + 1) for b in md.extract_bands)
        return f"raster bands {numbers} (ExtractBands {md.extract_bands}, 0-based)"
    return "every band of the input raster (no ExtractBands)"


def normalization(md: ModelDefinition) -> dict[str, str]:
    """Which input normalisation rule applies, by name and in words."""
    stats = md.normalization_stats
    family = md.arcgis_family
    if family is not None and family.input_rule == "rcnn":
        inside = "scaled_mean/std_values" if stats is not None else "ImageNet mean/std"
        first = ("(x - band_min) / (band_max - band_min) with NormalizationStats" if stats is not None
                 else "x / 255")
        return {"rule": "R-CNN", "text": f"arcgis.learn R-CNN: {first}; the network's own transform then "
                                         f"standardises with {inside}"}
    if stats is not None:
        text = ("NormalizationStats: each band is scaled with (x - band_min) / (band_max - band_min) using "
                f"band_min_values {_fmt(stats.band_min_values)} and band_max_values {_fmt(stats.band_max_values)}")
        if stats.scaled_mean_values and stats.scaled_std_values:
            text += (f", then standardised with (x - mean) / std using scaled_mean_values {_fmt(stats.scaled_mean_values)}"
                     f" and scaled_std_values {_fmt(stats.scaled_std_values)}")
        return {"rule": "NormalizationStats", "text": text + "; the lists are indexed by ExtractBands"}
    if md.data_range is not None:
        lo, hi = md.data_range
        return {"rule": "DataRange",
                "text": f"DataRange: each band is stretched linearly to [{lo:g}, {hi:g}] from 0..255 on 8-bit rasters, "
                        "else from the band's minimum..maximum (GDAL statistics, NoData excluded)"}
    if md.divide_by_255 or md.standardization_mean is not None:
        convention = scaling_convention(md)  # the same words as the run's log line
        text = f"{convention}: pixel values are {'divided by 255' if md.divide_by_255 else 'kept'}"
        if md.standardization_mean is not None and md.standardization_std is not None:
            text += (f", then standardised with (x - mean) / std using mean {_fmt(md.standardization_mean)} "
                     f"and std {_fmt(md.standardization_std)}")
        return {"rule": "Ultralytics" if convention.startswith("Ultralytics") else "Deepness", "text": text}
    n_bands = len(md.extract_band_names or md.extract_bands or [])
    if md.is_arcgis_learn and n_bands in (0, 3):
        return {"rule": "ImageNet",
                "text": "ImageNet (arcgis.learn default for 3 bands without NormalizationStats): (x - 255 * mean) / (255 * std) "
                        f"with mean {_fmt(_IMAGENET_MEAN)} and std {_fmt(_IMAGENET_STD)}"}
    return {"rule": "raw", "text": "Raw values: pixel values are passed to the model unchanged"}


def _hex(color: tuple[int, int, int] | None) -> str | None:
    return None if color is None else "#{:02x}{:02x}{:02x}".format(*color)


def _argument_table(md: ModelDefinition, given: str | dict | None = None,
                    fixed_batch: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per tool: each argument with its default and the value a run with ``given`` will really use."""
    table = {}
    for tool in TOOLS:
        rows, _ = argument_rows(md, tool)
        used = {u["name"]: u for u in effective_arguments(md, tool, given, fixed_batch)}
        out = []
        for row in rows:
            spec = row.spec
            u = used[row.name]
            out.append({"name": row.name, "type": row.kind, "default": spec.default if spec else row.default,
                        "fixed": row.fixed, "minimum": spec.minimum if spec else None,
                        "maximum": spec.maximum if spec else None, "choices": list(row.choices),
                        "help": row.description, "used": u["value"], "note": u["note"]})
        table[tool] = out
    return table


def _file_status(md: ModelDefinition) -> str:
    if md.model_file is None:
        if md.model_file_text:
            return "cannot be resolved (relative path in a definition given as JSON text)"
        return "none (the definition has no ModelFile)"
    return "found" if md.model_file.is_file() else "missing"


# ------------------------------------------------------------------------------------------ report
def describe_model(md: ModelDefinition, backend: dict[str, Any] | None = None,
                   arguments: str | dict | None = None) -> dict[str, Any]:
    """Everything Describe Model reports, as a JSON-ready dict.

    ``arguments`` are the model arguments a run would be given; the report says what each tool
    would really use with them (batch_size after the square rule and the model's fixed batch).
    """
    backend = dict(backend) if backend else {"opened": False, "reason": "the backend was not opened"}
    bands = md.extract_bands
    n_bands = len(md.extract_band_names or bands or []) or None
    return {
        "source": md.source,
        "origin": md.origin,
        "origin_text": ORIGIN_TITLES.get(md.origin, md.origin),
        "package": str(md.package_path) if md.package_path else None,
        "model_type": md.model_type,
        "framework": md.framework,
        "model_configuration": md.model_configuration,
        "model_name": md.model_name,
        "model_file": str(md.model_file) if md.model_file else None,
        "model_file_text": md.model_file_text,
        "model_file_status": _file_status(md),
        "model_format_kind": md.model_format_kind,
        "inference_function": md.inference_function,
        "backend": backend,
        "expected_input": {
            "layout": md.model_format,
            "shape": ([md.batch_size, md.image_height, md.image_width, n_bands] if md.model_format == "NHWC"
                      else [md.batch_size, n_bands, md.image_height, md.image_width]),
        },
        "tile": {
            "height": md.image_height,
            "width": md.image_width,
            "variable": md.supports_variable_tile_size,
            "model_padding": md.model_padding,
            "batch_size": md.batch_size,
        },
        "bands": {"indexes": bands, "names": md.extract_band_names, "count": n_bands, "text": bands_text(md)},
        "normalization": normalization(md),
        "classes": [{"value": c.value, "name": c.name, "color": list(c.color) if c.color else None,
                     "hex": _hex(c.color)} for c in md.classes],
        "arguments": _argument_table(md, arguments, backend.get("fixed_batch")),
        "warnings": list(md.warnings),
        "extra_keys": sorted(md.extra),
        "arcgis_learn": _family(md),
    }


def _family(md: ModelDefinition) -> dict[str, Any] | None:
    """Which arcgis.learn network is rebuilt for this definition, and the defaults it runs with."""
    family = md.arcgis_family
    if family is None:
        return None
    from ...backends.arcgis_learn.families import describe_family

    return {"family": family.title, "model_name": family.model_name, "backbone": family.backbone,
            "tool": family.tool, "classes": family.num_classes, "bands": family.in_channels,
            "defaults": dict(family.defaults), "text": describe_family(family)}


def _shape(values: list[Any]) -> str:
    return "[" + ", ".join("?" if v is None else str(v) for v in values) + "]"


def _tile_text(report: dict[str, Any]) -> str:
    tile = report["tile"]
    text = f"{tile['width']} x {tile['height']} pixels"
    if tile["variable"]:
        text += " (the model accepts other sizes: tile_size argument)"
    if tile["model_padding"]:
        text += (f"; ModelPadding {tile['model_padding']}: the model returns the centre "
                 f"{tile['width'] - 2 * tile['model_padding']} x {tile['height'] - 2 * tile['model_padding']} pixels")
    if tile["batch_size"]:
        text += f"; batch size fixed to {tile['batch_size']}"
    return text


def _backend_text(backend: dict[str, Any]) -> str:
    if backend.get("opened"):
        return str(backend["description"])
    return f"not opened: {backend.get('reason', 'unknown reason')}"


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as short lines for the Processing log."""
    lines = [
        f"Model type: {report['model_type']}",
        f"Framework: {report['framework'] or '(not given)'}",
        f"Origin: {report['origin']} ({report['origin_text']})" + (f" {report['package']}" if report["package"] else ""),
        f"Model file: {report['model_file'] or report['model_file_text'] or '(none)'} [{report['model_file_status']}]",
        f"Backend: {_backend_text(report['backend'])}",
    ]
    if report.get("arcgis_learn"):
        lines.append(f"Architecture: {report['arcgis_learn']['text']}")
    backend = report["backend"]
    if backend.get("opened"):
        lines.append(f"Device: {backend['device']}")
        for inp in backend["inputs"]:
            lines.append(f"Input '{inp['name']}': {inp['shape_text']} {inp['dtype']}")
        for out in backend["outputs"]:
            lines.append(f"Output '{out['name']}': {out['shape_text']} {out['dtype']}")
    exp = report["expected_input"]
    lines.append(f"Input expected from the definition ({exp['layout']}): {_shape(exp['shape'])}")
    lines.append(f"Tile size: {_tile_text(report)}")
    lines.append(f"Bands: {report['bands']['text']}")
    lines.append(f"Normalisation: {report['normalization']['text']}")
    if report["classes"]:
        lines.append(f"Classes ({len(report['classes'])}):")
        for c in report["classes"]:
            colour = f" {c['hex']}" if c["hex"] else ""
            lines.append(f"  {c['value']}: {c['name']}{colour}")
    else:
        lines.append("Classes: none")
    for tool, rows in report["arguments"].items():
        args = "; ".join(f"{r['name']} {r['used']}" + (" (fixed)" if r["fixed"] else "")
                         + (f" ({r['note']})" if r["note"] else "") for r in rows)
        lines.append(f"Arguments for {TOOL_TITLES.get(tool, tool)}: {args}")
    for w in report["warnings"]:
        lines.append(f"Warning: {w}")
    if report["extra_keys"]:
        lines.append(f"Other keys kept: {', '.join(report['extra_keys'])}")
    return lines


# ------------------------------------------------------------------------------------------ HTML
_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.4em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
.swatch { display: inline-block; width: 1.4em; height: 1em; border: 1px solid #555; vertical-align: middle; }
.warning { color: #9a3b00; }
"""


def _e(value: Any) -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(str(value))


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _tensor_table(tensors: list[dict[str, Any]]) -> str:
    body = "".join(f"<tr><td>{_e(t['name'])}</td><td>{_e(t['shape_text'])}</td><td>{_e(t['dtype'])}</td></tr>"
                   for t in tensors)
    return f"<table><tr><th>Name</th><th>Shape</th><th>Type</th></tr>{body}</table>"


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the report, with a colour swatch per class."""
    if report["model_name"]:
        title = report["model_name"]
    elif report["origin"] == "json":
        title = "model definition JSON text"
    else:
        title = os.path.basename(report["source"])
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>Describe Model: {_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Describe Model: {_e(title)}</h1>",
        "<h2>Model</h2>",
        _kv_table([
            ("Source", report["source"]),
            ("Origin", f"{report['origin']} ({report['origin_text']})"),
            ("Package", report["package"]),
            ("Model type", report["model_type"]),
            ("Framework", report["framework"]),
            ("Model configuration", report["model_configuration"]),
            ("Model name", report["model_name"]),
            ("Model file", f"{report['model_file'] or report['model_file_text'] or ''} ({report['model_file_status']})"),
            ("Inference function", report["inference_function"]),
        ] + ([("Architecture", report["arcgis_learn"]["text"])] if report.get("arcgis_learn") else [])),
        "<h2>Backend</h2>",
    ]
    backend = report["backend"]
    rows: list[tuple[str, Any]] = [("Backend", _backend_text(backend))]
    if backend.get("opened"):
        rows += [("Device", backend["device"]), ("Provider", backend["provider"]),
                 ("Fixed batch", backend["fixed_batch"])]
    parts.append(_kv_table(rows))
    if backend.get("opened"):
        parts += ["<h3>Inputs</h3>", _tensor_table(backend["inputs"]),
                  "<h3>Outputs</h3>", _tensor_table(backend["outputs"])]
    exp = report["expected_input"]
    parts += [
        "<h2>Input</h2>",
        _kv_table([
            ("Expected input", f"{_shape(exp['shape'])} ({exp['layout']})"),
            ("Tile size", _tile_text(report)),
            ("Bands", report["bands"]["text"]),
            ("Normalisation", report["normalization"]["text"]),
        ]),
        f"<h2>Classes ({len(report['classes'])})</h2>",
    ]
    if report["classes"]:
        body = []
        for c in report["classes"]:
            swatch = (f'<span class="swatch" style="background:{c["hex"]}"></span> {_e(c["hex"])}'
                      if c["hex"] else "&mdash;")
            body.append(f"<tr><td>{_e(c['value'])}</td><td>{_e(c['name'])}</td><td>{swatch}</td></tr>")
        parts.append(f"<table><tr><th>Value</th><th>Name</th><th>Colour</th></tr>{''.join(body)}</table>")
    else:
        parts.append("<p>The definition lists no classes.</p>")
    parts.append("<h2>Model arguments</h2>")
    for tool, specs in report["arguments"].items():
        body = "".join(
            f"<tr><td>{_e(r['name'])}</td><td>{_e(r['type'])}</td><td>{_e(r['used'])}"
            f"{' (fixed by the model)' if r['fixed'] else ''}{' (' + _e(r['note']) + ')' if r['note'] else ''}</td>"
            f"<td>{_e(r['default'])}</td><td>{_e(r['help'])}</td></tr>" for r in specs)
        parts.append(f"<h3>{_e(TOOL_TITLES.get(tool, tool))}</h3>"
                     "<table><tr><th>Name</th><th>Type</th><th>Used in a run</th><th>Default</th><th>Meaning</th></tr>"
                     f"{body}</table>")
    parts.append("<h2>Warnings</h2>")
    if report["warnings"]:
        parts.append("<ul>" + "".join(f'<li class="warning">{_e(w)}</li>' for w in report["warnings"]) + "</ul>")
    else:
        parts.append("<p>None.</p>")
    if report["extra_keys"]:
        parts.append(f"<h2>Other keys</h2><p>{_e(', '.join(report['extra_keys']))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

# SPDX-License-Identifier: GPL-2.0-or-later
"""The model arguments a tool will offer for a model, as rows a dialog or a report can show.

Rows come from the tool's own argument specs for models the plugin runs (their defaults
follow the .emd keys ``Padding``, ``BatchSize``, ``Threshold``... and the Deepness ONNX
metadata ``tiles_overlap``, ``seg_thresh``...), or, for a model run by its own Python
function, from that function's ``getParameterInfo()`` read from its source with
:mod:`ast`, never run.  Values stay in ArcGIS's string form (``"padding 64;batch_size 4"``):
:func:`arguments_text` writes it, :func:`..arguments.parse_arguments_text` reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ArgumentError
from ..model.definition import ModelDefinition
from ..model.function_source import check_argument, function_path, model_arguments, parameter_info_from_source
from .specs import ArgSpec, _convert, argument_specs, decide_batch, parse_arguments_text

_KINDS = {"numeric": "float", "boolean": "bool", "string": "str"}


@dataclass
class ArgumentRow:
    """One row of the arguments table."""

    name: str
    default: str
    description: str
    kind: str = "str"  # int, float, bool, str, choice
    choices: tuple[str, ...] = ()
    fixed: bool = False
    spec: ArgSpec | None = None
    param: dict[str, Any] | None = field(default=None, repr=False)

    def check(self, raw: str) -> str:
        """'' when ``raw`` is acceptable, else the reason (the run would refuse it)."""
        if raw.strip() == "":
            return ""
        if self.param is not None:
            return check_argument(self.param, raw)
        if self.spec is not None:
            try:
                _convert(self.spec, raw)
            except ArgumentError as exc:
                return str(exc)
        return ""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def argument_rows(md: ModelDefinition, tool: str) -> tuple[list[ArgumentRow], str]:
    """The rows for ``tool`` (classify_pixels, classify_objects, detect_change) and a note ('' if none)."""
    if md.custom_function:
        path = function_path(md)
        if path is None:
            return [], f"the model's Python function '{md.inference_function}' was not found"
        params, note = parameter_info_from_source(path)
        rows = []
        for p in model_arguments(params):
            kind = _KINDS.get(str(p.get("dataType", "string")).lower(), "str")
            domain = tuple(str(d) for d in (p.get("domain") or ()))
            desc = str(p.get("description") or p.get("displayName") or "")
            rows.append(ArgumentRow(str(p["name"]), _text(p.get("value")), desc, "choice" if domain else kind,
                                    domain, param=p))
        source = f"read from getParameterInfo() in '{path.name}' without running it"
        return rows, f"{source}; {note}" if note else source
    rows = []
    for spec in argument_specs(md, tool):
        desc = spec.help
        if spec.name == "padding" and md.tile_overlap_percent is not None and not md.model_padding:
            desc += f" Default from the model's metadata (tiles_overlap {md.tile_overlap_percent:g}%)."
        if spec.name == "threshold" and md.deepness_metadata and md.threshold is not None:
            desc += " Default from the model's metadata."
        rows.append(ArgumentRow(spec.name, _text(spec.default), desc, spec.kind, spec.choices, spec.fixed, spec))
    return rows, ""


def arguments_text(values: dict[str, str], rows: list[ArgumentRow] | None = None) -> str:
    """``{name: value}`` -> ``"name value;..."``, leaving out empty values and (with ``rows``) unchanged defaults."""
    defaults = {r.name: r.default for r in rows or []}
    parts = []
    for name, value in values.items():
        value = str(value).strip()
        if not value or (name in defaults and value == defaults[name]):
            continue
        parts.append(f"{name} {value}")
    return ";".join(parts)


def effective_arguments(md: ModelDefinition, tool: str, given: str | dict | None = None,
                        fixed_batch: int | None = None) -> list[dict[str, Any]]:
    """The values a run will really use: the given ones over the defaults, batch_size after ArcGIS's square
    rule and the model's fixed batch dimension (``fixed_batch``)."""
    rows, _ = argument_rows(md, tool)
    given_values = {k.lower(): v for k, v in parse_arguments_text(given).items()}
    out = []
    for row in rows:
        raw = given_values.get(row.name.lower())
        value = row.default if raw in (None, "") or row.fixed else raw
        note = ""
        if row.fixed and raw not in (None, "") and raw != row.default:
            note = f"fixed by the model; {raw} would be ignored"
        if row.name == "batch_size" and not md.custom_function and value.strip():
            try:
                requested = int(float(value))
            except ValueError:
                requested = None
            if requested is not None:
                decision = decide_batch(requested, fixed_batch)
                value, note = str(decision.used), decision.why
        problem = row.check(value)
        out.append({"name": row.name, "value": value, "default": row.default, "note": note or problem,
                    "valid": not problem, "help": row.description})
    return out



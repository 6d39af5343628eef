# SPDX-License-Identifier: GPL-2.0-or-later
"""A model's own Python function read without running it: where it is, its hash, its getParameterInfo() by AST."""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ArgumentError
from ..flags import parse_bool
from .definition import ModelDefinition
from .emd import local_function_file, not_regular

#: Parameters of getParameterInfo() that are the tool's own inputs, not model arguments.
RESERVED_PARAMETERS = ("raster", "rasters", "raster2", "model", "device")


def function_path(md: ModelDefinition) -> Path | None:
    """The local ``.py`` named by ``InferenceFunction``, or None (absent, or Pro's bundled ``[Functions]`` form).

    A package's function must be inside the package.
    """
    path = local_function_file(md.inference_function, md.base_dir)
    if path is not None and md.origin == "dlpk" and md.base_dir is not None:
        try:
            path.resolve().relative_to(md.base_dir.resolve())
        except ValueError:
            return None
    return path


def shown_path(md: ModelDefinition, path: Path) -> str:
    """The function's file named the way the user gave the model (a symbolic link stays as given)."""
    name = (md.inference_function or path.name).replace("\\", "/")
    if md.origin == "dlpk":
        return f"{md.source} › {name}"
    if md.origin in ("emd", "ecd") and not Path(name).is_absolute():
        return os.path.join(os.path.dirname(md.source), name)
    return str(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: List methods whose effect on getParameterInfo's list the reader follows (append, extend) or gives up on.
_LIST_METHODS = ("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse")


#: A Python raster function's source is a few kilobytes; one larger than this is not parsed (a 30 MB file took
#: 80 s and 3.9 GB, on the dialog's thread).
MAX_SOURCE_BYTES = 2 * 1024**2


def _source_tree(path: Path) -> ast.Module | str:
    """The parsed source, or why it cannot be read: never an exception (a NUL byte, a 5,000-digit number, 200,000
    terms or 5,000 unary minus signs make the parser raise ValueError, RecursionError or MemoryError)."""
    special = not_regular(path)
    if special:
        return f"it is {special}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        return f"its source cannot be read ({exc.strerror or exc})"
    if len(data) > MAX_SOURCE_BYTES:
        return f"its source is larger than {MAX_SOURCE_BYTES // 1024**2} MB, more than a raster function needs"
    try:
        return ast.parse(data.decode("utf-8-sig"), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        reason = "it nests too deeply" if isinstance(exc, (RecursionError, MemoryError)) else str(exc)
        return f"its source cannot be read ({reason})"


def _literal(node: ast.expr | None) -> Any:
    """``ast.literal_eval`` that raises only ValueError (a number of 5,000 digits, deep nesting, a non-literal)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


@functools.lru_cache(maxsize=16)
def _cached_info(path: str, size: int, mtime: int) -> tuple[tuple[dict[str, Any], ...], str]:
    params, note = _parameter_info(Path(path))
    return tuple(params), note


def parameter_info_from_source(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], str]:
    """``getParameterInfo()`` read from the source with :mod:`ast`, never running it; parsed once per version
    of the file (the dialog, the table and a run ask for it several times).

    Returns the parameters (values that are computed at run time come back as None)
    and a note saying what could not be read, empty when everything was literal.
    """
    try:
        st = os.stat(path)
        params, note = _cached_info(str(path), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        return [], f"its source cannot be read ({exc.strerror or exc})"
    return [dict(p) for p in params], note


def _parameter_info(path: Path) -> tuple[list[dict[str, Any]], str]:
    tree = _source_tree(path)
    if isinstance(tree, str):
        return [], tree
    method = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "getParameterInfo":
            method = node
            break
    if method is None:
        return [], "it has no getParameterInfo method"
    assigned: dict[str, ast.expr] = {}
    for node in tree.body:  # module-level lists (a shared PARAMS) may be part of the returned list
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
    returned: ast.expr | None = None
    changes: dict[str, list[tuple[int, int, str, ast.expr | None]]] = {}  # a list grown after it is assigned
    for node in ast.walk(method):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
        elif isinstance(node, ast.Return) and node.value is not None:
            returned = node.value
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            changes.setdefault(node.target.id, []).append(
                (node.lineno, node.col_offset, "extend" if isinstance(node.op, ast.Add) else "?", node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.attr in _LIST_METHODS:
            kind = node.func.attr if node.func.attr in ("append", "extend") and len(node.args) == 1 else "?"
            changes.setdefault(node.func.value.id, []).append(
                (node.lineno, node.col_offset, kind, node.args[0] if node.args else None))
    computed: list[str] = []

    def entries(expr: ast.expr | None, depth: int = 0) -> list[ast.expr] | None:
        if expr is None or depth > 5:
            return None
        if isinstance(expr, ast.List):
            return list(expr.elts)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            left, right = entries(expr.left, depth + 1), entries(expr.right, depth + 1)
            return None if left is None or right is None else left + right
        if isinstance(expr, ast.Name) and expr.id in assigned:
            found = entries(assigned[expr.id], depth + 1)
            for _, _, kind, arg in sorted(changes.get(expr.id, []), key=lambda c: c[:2]):  # in source order
                more = [arg] if kind == "append" and arg is not None else \
                    entries(arg, depth + 1) if kind == "extend" else None
                if found is None or more is None:
                    return None
                found = found + more
            return found
        if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Slice):  # PARAMS[1:]
            base = entries(expr.value, depth + 1)
            try:
                bounds = [None if b is None else _literal(b)
                          for b in (expr.slice.lower, expr.slice.upper, expr.slice.step)]
            except ValueError:
                return None
            return None if base is None else base[slice(*bounds)]
        return None

    items = entries(returned)
    if items is None:
        return [], ("getParameterInfo builds its list in a way that cannot be read without running it (only list "
                    "literals, +, .append and .extend of them are read), so its arguments are only known when it runs")
    params: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, ast.Dict):
            computed.append("an entry that is not a literal dict")
            continue
        entry: dict[str, Any] = {}
        for key, value in zip(item.keys, item.values):
            if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
                continue
            try:
                entry[key.value] = _literal(value)
            except ValueError:
                entry[key.value] = None
                if key.value == "value":
                    computed.append(str(entry.get("name", "?")))
        if "name" in entry:
            params.append(entry)
    note = f"defaults computed at run time: {', '.join(computed)}" if computed else ""
    return params, note


RASTER_TYPES = ("raster", "rasters")


def raster_parameters(params: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of getParameterInfo() whose ``dataType`` is ``raster`` or ``rasters``, in order (Esri passes
    each one's pixels as ``<name>_pixels``, whatever its name)."""
    return [p for p in params if str(p.get("dataType", "")).strip().lower() in RASTER_TYPES]


def model_arguments(params: Sequence[dict[str, Any]], inputs: int = 1) -> list[dict[str, Any]]:
    """The entries of getParameterInfo() that are tool arguments: all but model/device and the first ``inputs``
    raster parameters, which the tool fills with its input raster(s); a further raster parameter is an argument
    whose value is a raster path."""
    first = {str(p.get("name", "")).lower() for p in raster_parameters(params)[:inputs]}
    return [p for p in params if str(p.get("name", "")).lower() not in RESERVED_PARAMETERS + tuple(first)]


def typed_value(param: dict[str, Any], raw: str) -> Any:
    """An argument as ArcGIS hands it to a PRF: numbers as numbers, booleans and text as strings."""
    kind = str(param.get("dataType", "string")).lower()
    name = param.get("name")
    text = str(raw).strip()
    if kind == "numeric":
        try:
            number = float(text)
        except ValueError:
            raise ArgumentError(f"Model argument '{name}' must be a number, not '{raw}'") from None
        return int(number) if number.is_integer() and "." not in text else number
    if kind == "boolean":
        flag = parse_bool(text)
        if flag is None:
            raise ArgumentError(f"Model argument '{name}' must be True or False, not '{raw}'")
        return "True" if flag else "False"
    domain = param.get("domain")
    if domain and text not in [str(d) for d in domain]:
        raise ArgumentError(f"Model argument '{name}' must be one of {', '.join(str(d) for d in domain)}, "
                            f"not '{raw}'")
    return text


def check_argument(param: dict[str, Any], raw: str) -> str:
    """'' when ``raw`` is a valid value for ``param``, else why not (for the dialog)."""
    try:
        typed_value(param, raw)
    except ArgumentError as exc:
        return str(exc)
    return ""

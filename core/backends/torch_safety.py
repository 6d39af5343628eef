# SPDX-License-Identifier: GPL-2.0-or-later
"""What a PyTorch model file may do before and while it runs.

TorchScript archives and ``torch.export`` programs are programs, and they come
from strangers.  Two rules keep them to tensor arithmetic:

* **Nothing is unpickled.**  A ``.pt2`` archive may hold pickled weights,
  constants, custom objects or compiled (AOTInductor) libraries, and
  ``torch.export.load`` unpickles them with the full Python unpickler.  Before
  torch opens the file, :func:`check_pt2_archive` reads its JSON payload
  configuration and refuses every member that would need unpickling or loading
  native code; the load itself then runs with ``torch.load`` forced to its
  weights-only unpickler (:func:`weights_only_loading`), which builds tensors and
  nothing else.  A TorchScript archive that defines ``__setstate__`` (which
  TorchScript runs *while loading*) is refused before loading.
* **Only tensor-math operators run.**  After loading and before the first batch,
  every graph of every method of every (sub)module is inlined and walked,
  blocks included (:func:`check_torchscript_module`, :func:`check_exported_program`).
  Operators must come from :data:`ALLOWED_NAMESPACES`; :data:`REFUSED_OPERATORS`
  are refused even there (they read or write files, print, or reach the network).
  The error names the operator, the method and the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import BackendError

#: Operator namespaces whose operators only compute on tensors (and scalars, lists, strings in memory).
ALLOWED_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "_quantized", "torchvision"})

#: Operators refused even in an allowed namespace, with why.
REFUSED_OPERATORS = {
    "aten::from_file": "it reads (and with shared=True writes) a file on disk",
    "aten::save": "it writes a file on disk",
    "prim::rpc_async": "it calls another process over the network",
    "prim::rpc_sync": "it calls another process over the network",
    "prim::rpc_remote": "it calls another process over the network",
    "prim::PythonOp": "it runs Python code",
    "prim::CallFunction": "it calls a function whose code cannot be inspected before the run",
}


def _refusal(op: str, where: str, path: Path, why: str | None = None) -> BackendError:
    reason = why or REFUSED_OPERATORS.get(op) or (
        f"its namespace '{op.split('::', 1)[0]}' is not one of the tensor-math namespaces "
        f"({', '.join(sorted(ALLOWED_NAMESPACES))})")
    return BackendError(
        f"Model '{path.name}' is refused: {where} uses the operator '{op}', and {reason}. Models may only compute on "
        "tensors; export the network again without it (see 'Security and safety' in the README)")


def check_operator(op: str, where: str, path: Path) -> None:
    """Raise if ``op`` (``namespace::name``) is not a tensor-math operator."""
    namespace = op.split("::", 1)[0] if "::" in op else ""
    if op in REFUSED_OPERATORS or namespace not in ALLOWED_NAMESPACES:
        raise _refusal(op, where, path)


# ---------------------------------------------------------------------------------------------- TorchScript
_SETSTATE = b"__setstate__"


def _mentions(zf: zipfile.ZipFile, info: zipfile.ZipInfo, word: bytes) -> bool:
    """Whether the member contains ``word``, read in 1 MiB pieces (any size: a limit would be a way around)."""
    tail = b""
    with zf.open(info) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if word in tail + chunk:
                return True
            tail = chunk[-len(word):]
    return False


def check_torchscript_archive_code(path: Path) -> None:
    """Refuse, before ``torch.jit.load``, an archive whose code mentions ``__setstate__`` (TorchScript runs it while
    loading). Any mention counts, however the ``def`` is spelt (``def \\`` + newline + ``__setstate__(`` is one)
    and however large the file."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                if "code" in parts and info.filename.endswith(".py") and _mentions(zf, info, _SETSTATE):
                    raise BackendError(
                        f"Model '{path.name}' is refused: its TorchScript code '{info.filename}' defines "
                        "__setstate__, which TorchScript runs while loading the file, before it can be inspected")
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackendError(f"'{path.name}' cannot be read as a TorchScript archive: {exc}") from exc


def _walk_block(block: Any, where: str, path: Path) -> None:
    for node in block.nodes():
        kind = node.kind()
        check_operator(kind, where, path)
        if kind == "prim::CallMethod":
            owner = node.inputsAt(0).type()
            name = getattr(owner, "name", lambda: None)() if hasattr(owner, "name") else None
            if name and ".torch.classes." in f".{name}":
                raise _refusal(f"{name}.{node.s('name')}", where, path,
                               "it is a method of a native (C++) class whose code cannot be inspected")
        for sub in node.blocks():
            _walk_block(sub, where, path)
        if node.hasAttribute("Subgraph"):
            _walk_block(node.g("Subgraph"), where, path)


def check_torchscript_module(module: Any, path: Path) -> None:
    """Walk the inlined graph of every method of ``module`` and its submodules; raise on a refused operator.

    Fails closed: a module whose graphs cannot be walked is refused, never run uninspected.
    """
    try:
        _check_torchscript_module(module, path)
    except BackendError:
        raise
    except Exception as exc:  # torch's introspection raises RuntimeError and others on odd archives
        raise BackendError(f"Model '{path.name}' is refused: its TorchScript graphs could not be inspected "
                           f"({type(exc).__name__}: {exc}), so it is not run") from exc


def _check_torchscript_module(module: Any, path: Path) -> None:
    import torch

    if isinstance(module, torch.jit.ScriptFunction):
        graph = module.graph.copy()
        torch._C._jit_pass_inline(graph)
        _walk_block(graph, "its function", path)
        return
    for sub in module.modules():
        c = getattr(sub, "_c", None)
        if c is None:
            continue
        owner = getattr(sub, "original_name", type(sub).__name__)
        for name in c._method_names():  # every method, overloads (forward__0, forward__1) included
            graph = c._get_method(name).graph.copy()
            torch._C._jit_pass_inline(graph)
            _walk_block(graph, f"method '{owner}.{name}'", path)
        # hooks registered before scripting run with forward but are not among the methods
        for kind in ("_get_forward_pre_hooks", "_get_forward_hooks"):
            for hook in getattr(c, kind, lambda: [])():
                graph = hook.graph.copy()
                torch._C._jit_pass_inline(graph)
                _walk_block(graph, f"hook '{owner}.{getattr(hook, 'name', 'hook')}'", path)


# ---------------------------------------------------------------------------------------------- torch.export
def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Member names without the archive's root folder (``model/data/weights/x`` -> ``data/weights/x``)."""
    out = {}
    for info in zf.infolist():
        parts = PurePosixPath(info.filename).parts
        if len(parts) > 1:
            out["/".join(parts[1:])] = info
        out.setdefault(info.filename, info)
    return out


def _payload_config(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(zf.read(info).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"torch.export program '{path.name}': '{info.filename}' is not valid JSON ({exc})") from exc
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise BackendError(f"torch.export program '{path.name}': '{info.filename}' has no payload 'config' object")
    return config


def check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` that torch could only load by unpickling or by loading native code."""
    import torch

    pickled = "torch.export program '{}' is refused: {} would be unpickled to load it, and unpickling runs " \
              "arbitrary code from the file. Save the program again with torch.export.save from plain tensors"
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(zf)
            if "archive_format" not in members:
                raise BackendError(
                    f"'{path.name}' is not a torch.export program in the PT2 archive format (older torch.export "
                    "files unpickle their weights and are refused): save it again with torch.export.save")
            for name, info in members.items():
                if name.startswith(("data/aotinductor/", "data/mtia/")):
                    raise BackendError(f"torch.export program '{path.name}' is refused: it contains compiled native "
                                       f"code ('{info.filename}'), which would be loaded and run")
                if name.startswith("data/") and name.endswith("_config.json"):
                    for fqn, meta in _payload_config(zf, info, path).items():
                        if not isinstance(meta, dict):
                            continue
                        file = str(meta.get("path_name", ""))
                        if meta.get("use_pickle") or file.startswith(("custom_obj", "opaque_obj")):
                            raise BackendError(pickled.format(path.name, f"'{fqn}' ({info.filename})"))
            for name, info in members.items():
                if name.startswith("data/sample_inputs/"):
                    _check_weights_only(torch, zf.read(info), path, info.filename, pickled)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackendError(f"'{path.name}' cannot be read as a torch.export program: {exc}") from exc


def _check_weights_only(torch: Any, data: bytes, path: Path, member: str, pickled: str) -> None:
    """The sample inputs are a torch.save file: they must load with the weights-only unpickler."""
    try:
        with weights_only_loading():
            torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # the weights-only unpickler raises UnpicklingError, RuntimeError ...
        raise BackendError(pickled.format(path.name, f"its sample inputs ('{member}')")
                           + f" [{type(exc).__name__}]") from exc


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """Force every ``torch.load`` inside the block to the weights-only unpickler (torch's own switch)."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _target_name(target: Any) -> str:
    """``torch.ops.aten.add.Tensor`` -> ``aten::add``; Python callables -> ``python::module.name``."""
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return schema.name
    namespace = getattr(target, "namespace", None)
    if namespace:
        return f"{namespace}::{getattr(target, '__name__', target)}"
    module = getattr(target, "__module__", None) or ""
    return f"python::{module}.{getattr(target, '__qualname__', getattr(target, '__name__', repr(target)))}"


#: Python callables an exported graph may call: tuple/list indexing of multi-output operators.
_PYTHON_TARGETS = frozenset({"python::_operator.getitem", "python::operator.getitem"})


def check_exported_program(program: Any, module: Any, path: Path) -> None:
    """Every node of every graph of the exported program (and its unlifted module) calls a tensor-math operator.

    Fails closed, like :func:`check_torchscript_module`.
    """
    try:
        _check_exported_program(program, module, path)
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"Model '{path.name}' is refused: its torch.export graph could not be inspected "
                           f"({type(exc).__name__}: {exc}), so it is not run") from exc


def _check_exported_program(program: Any, module: Any, path: Path) -> None:
    graphs = []
    for gm in (getattr(program, "graph_module", None), module):
        if gm is not None and hasattr(gm, "modules"):
            graphs.extend(m.graph for m in gm.modules() if hasattr(m, "graph"))
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "call_function":
                name = _target_name(node.target)
                if name in _PYTHON_TARGETS:
                    continue
                check_operator(name, f"node '{node.name}'", path)
            elif node.op == "call_method":
                raise _refusal(f"python::Tensor.{node.target}", f"node '{node.name}'", path,
                               "exported programs call operators, not Python methods")

# SPDX-License-Identifier: GPL-2.0-or-later
"""core/ is layered: no module imports, directly or through others, a module that imports it back.

Every ``import`` and ``from ... import`` in every core/ module counts, at module level and inside
functions alike (a deferred import only postpones a circle, it does not remove it).  Relative imports
are resolved against the importing module; ``from . import x`` names the submodule ``x`` when there is
one.  A package's ``__init__`` is an edge only where a module names the package itself: Python loading
the parent package of a submodule is not a design dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
PACKAGE = "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The core/ modules that ``name`` imports anywhere in its text."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # "dltools.core.x" (absolute, as the plugin's folder is named) is the same module as "core.x"
        if target.startswith("dltools."):
            target = target[len("dltools."):]
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, name, is_package)
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            if submodules:
                for sub in submodules:
                    add(sub)
                if len(submodules) < len(node.names):
                    add(target)
            else:
                add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circular_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per circular group, as a path a -> ... -> a."""
    cycles = []
    for comp in circular_groups(graph):
        members = set(comp)
        start = comp[0]
        # shortest path back to start inside the component (breadth first)
        previous: dict[str, str] = {}
        frontier = [start]
        seen = {start}
        end = None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w == start:
                        end = v
                        break
                    if w not in seen:
                        seen.add(w)
                        previous[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        path = [start]
        v = end
        while v is not None and v != start:
            path.insert(1, v)
            v = previous.get(v)
        cycles.append(path + [start])
    return cycles


def test_graph_sees_deferred_and_relative_imports(tmp_path):
    """The parser itself: deferred, relative, ``from . import x`` and absolute ``dltools.core`` imports are edges."""
    files = {
        "core/__init__.py": "",
        "core/a.py": "import os\n\ndef f():\n    from .b import thing\n    return thing\n",
        "core/b.py": "from . import c\nfrom .sub import d\n",
        "core/c.py": "import dltools.core.a\n",
        "core/sub/__init__.py": "from .d import x\n",
        "core/sub/d.py": "from ..c import y\nfrom .. import errors\n",
        "core/errors.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    modules = {m: tmp_path / rel for rel in files
               for m in [".".join(Path(rel).with_suffix("").parts).removesuffix(".__init__")]}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["core.a"] == {"core.b"}  # deferred into a function; os is not core
    assert graph["core.b"] == {"core.c", "core.sub.d"}
    assert graph["core.c"] == {"core.a"}
    assert graph["core.sub"] == {"core.sub.d"}
    assert graph["core.sub.d"] == {"core.c", "core.errors"}
    assert find_cycles(graph) == [["core.a", "core.b", "core.c", "core.a"]]
    real = import_graph()
    assert "core.errors" in real["core.progress"]
    assert all(d.startswith("core") for deps in real.values() for d in deps)


def test_find_cycles_reports_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_core_has_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    groups = circular_groups(graph)
    text = "\n".join(f"{' -> '.join(c)}   (circular group: {', '.join(g)})" for c, g in zip(cycles, groups))
    print(text)
    assert not cycles, f"core/ has import cycles (module-level or deferred):\n{text}"


#: core/'s floors, bottom first.  A module may import modules of its own floor and of the floors below it,
#: never above: the folder tree is the architecture diagram (README "Architecture", docs/architecture.md).
LAYERS: list[tuple[str, ...]] = [
    ("core.errors", "core.flags"),  # leaves: the exceptions, the one reading of a true/false value
    ("core.progress", "core.threads", "core.safe_output", "core.trust", "core.memory"),
    ("core.installer",),  # the plugin's own libraries: QGIS's interpreter, pip into a private folder, the report
    ("core.backends",),  # runtimes: ONNX Runtime, torch, the arcgis.learn rebuilds; know nothing of definitions
    ("core.model",),  # what a model is: definition types, .emd/.ecd/.dlpk readers, probe, the loader
    ("core.arguments",),  # the run's arguments and the dialog's table rows
    ("core.raster",),  # GDAL I/O, grids, the raster request, styling
    ("core.engine",),  # blocks, tile reader, normalisation, augmentation, decoding of scores, Dask
    ("core.detection",),  # detection decoding, NMS, seam merge, geometry
    ("core.prf",),  # the Esri raster function host
    ("core.tools",),  # one package per tool
    ("core.runner",),  # a tool's run in a child process: dispatches to the tools by name
]


def layer_of(name: str) -> int:
    for i, floor in enumerate(LAYERS):
        if any(name == top or name.startswith(top + ".") for top in floor):
            return i
    raise AssertionError(f"{name} belongs to no floor of LAYERS: put it in a package named for its layer")


def tool_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "tools" else None


def test_every_module_has_a_floor():
    for name in core_modules():
        if name != "core":
            layer_of(name)


def test_core_layers():
    """No module imports a module on a floor above its own."""
    graph = import_graph()
    wrong = [f"{name} (floor {layer_of(name)}) imports {dep} (floor {layer_of(dep)})"
             for name, deps in graph.items() if name != "core" for dep in sorted(deps)
             if dep != "core" and layer_of(dep) > layer_of(name)]
    assert not wrong, "imports run up the floors:\n" + "\n".join(wrong)


def test_no_tool_imports_another_tool():
    """What two tools share moves down a floor; a tool's package imports no other tool's."""
    graph = import_graph()
    wrong = [f"{name} imports {dep}" for name, deps in graph.items() for dep in sorted(deps)
             if tool_of(name) and tool_of(dep) and tool_of(dep) != tool_of(name)]
    assert not wrong, "\n".join(wrong)


def test_layer_rules_can_fail():
    """The two rules see a violation when there is one (so a green run means something)."""
    assert layer_of("core.engine.blocks") > layer_of("core.raster.grid")
    assert tool_of("core.tools.detect_objects.pipeline") == "detect_objects"
    assert tool_of("core.engine.pixels") is None
    graph = {"core.raster.grid": {"core.engine.blocks"}}
    assert [d for n, ds in graph.items() for d in ds if layer_of(d) > layer_of(n)] == ["core.engine.blocks"]


def test_leaves_and_definition_types():
    graph = import_graph()
    leaves = {"core.errors": set(), "core.threads": set(), "core.progress": {"core.errors"}}
    for name, allowed in leaves.items():
        assert graph[name] <= allowed, f"{name} imports {sorted(graph[name] - allowed)}"
    # the model definition's data types need nothing but errors
    assert graph["core.model.definition"] <= {"core.errors"}
    # what only reads a definition imports its types, not the loader (which pulls in every reader and backend)
    for name, deps in graph.items():
        if name.startswith(("core.arguments", "core.raster", "core.engine", "core.detection")):
            assert "core.model.loader" not in deps, f"{name} imports the loader core.model.loader"


def _model_openers(path: Path) -> set[str]:
    """What in a module loads a model file itself: onnxruntime imports, InferenceSession, torch.jit.load, torch.export.load."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "onnxruntime")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "onnxruntime":
            found.add(node.module or "")
        elif isinstance(node, ast.Attribute):
            if node.attr == "InferenceSession":
                found.add("InferenceSession")
            elif node.attr == "load" and isinstance(node.value, ast.Attribute) and node.value.attr in ("jit", "export"):
                found.add(f"{node.value.attr}.load")
    return found


def test_only_backends_open_models():
    """One backend path: model files are loaded by core/backends/ only; .ecd and the probes go through it."""
    for name, path in core_modules().items():
        if not name.startswith("core.backends"):
            assert not _model_openers(path), f"{name} loads models itself: {sorted(_model_openers(path))}"
    assert _model_openers(CORE / "backends" / "onnx_backend.py") >= {"InferenceSession"}  # the check sees them
    assert "core.backends" in import_graph()["core.model.ecd_writer"]

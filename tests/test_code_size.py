# SPDX-License-Identifier: GPL-2.0-or-later
"""The style rule on size, kept by a test: in the plugin's code (algorithms/, core/ and the top-level modules) no
function is longer than about 100 lines and no class longer than about 250 (a little slack: 110 and 270), so a
reader sees one thing at a time. Larger pieces are split into modules named for what they do."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 110
MAX_CLASS_LINES = 270


def _plugin_files() -> list[Path]:
    return sorted([*ROOT.glob("*.py"), *(ROOT / "algorithms").rglob("*.py"), *(ROOT / "core").rglob("*.py")])


def _too_long(path: Path, base: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        lines = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines > MAX_FUNCTION_LINES:
            found.append(f"{path.relative_to(base)}:{node.lineno} function {node.name}: {lines} lines")
        elif isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
            found.append(f"{path.relative_to(base)}:{node.lineno} class {node.name}: {lines} lines")
    return found


def test_no_function_or_class_is_too_long_to_read():
    files = _plugin_files()
    assert len(files) > 50
    assert [line for path in files for line in _too_long(path)] == []


def test_the_check_sees_a_long_function_and_a_long_class(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n", encoding="utf-8")
    assert _too_long(tmp_path / "long.py", tmp_path) == [f"long.py:1 function f: {MAX_FUNCTION_LINES + 1} lines"]
    methods = "\n".join(f"    def m{i}(self):\n        return {i}\n" for i in range(MAX_CLASS_LINES // 3 + 1))
    (tmp_path / "big.py").write_text(f"class C:\n{methods}", encoding="utf-8")
    assert _too_long(tmp_path / "big.py", tmp_path) == [f"big.py:1 class C: {3 * (MAX_CLASS_LINES // 3 + 1)} lines"]

# SPDX-License-Identifier: GPL-2.0-or-later
"""A model's .py read for its arguments (Describe Model, the dialog's table) never raises a traceback: a 5,000-digit
default, a NUL byte, a link to a /proc file, 200,000-term sums, 5,000 unary minus signs, a source of megabytes;
and it is parsed once per version of the file."""

from __future__ import annotations

import os
import time

import pytest
from dltools.core.model import function_source
from dltools.core.model.function_source import parameter_info_from_source

HEAD = "class F:\n    def getParameterInfo(self):\n        return [{'name': 'a', 'dataType': 'numeric', 'value': "


@pytest.mark.parametrize("case,body,note", [
    ("digits", HEAD + "9" * 5000 + "}]\n", ""),
    ("nul", HEAD + "1}]\n# \x00\n", "its source cannot be read"),
    ("sum", HEAD + "+".join(["1"] * 200_000) + "}]\n", ""),
    ("minus", HEAD + "-" * 5000 + "1}]\n", ""),
    ("big", HEAD + "1}]\n" + "#" * (3 * 1024**2) + "\n", "its source is larger than 2 MB"),
])
def test_hostile_sources_give_a_note_not_a_traceback(tmp_path, case, body, note):
    path = tmp_path / f"{case}.py"
    path.write_text(body, encoding="utf-8")
    started = time.perf_counter()
    params, said = parameter_info_from_source(path)
    assert time.perf_counter() - started < 20
    assert said.startswith(note) if note else True
    if not note.startswith("its source"):
        assert params == [] or params[0]["name"] == "a"
        assert not params or params[0]["value"] is None or case == "minus"  # not a readable literal: None


def test_a_link_to_a_proc_file_and_a_fifo(tmp_path):
    link = tmp_path / "proc.py"
    os.symlink("/proc/self/status", link)
    params, said = parameter_info_from_source(link)
    assert params == [] and said.startswith("its source cannot be read")
    fifo = tmp_path / "fifo.py"
    os.mkfifo(fifo)
    params, said = parameter_info_from_source(fifo)  # would block for ever if opened
    assert params == [] and said == "it is a pipe, socket or device (reading it could wait for ever or never end)"


def test_parsed_once_per_version_of_the_file(tmp_path, monkeypatch):
    path = tmp_path / "f.py"
    path.write_text(HEAD + "1}]\n", encoding="utf-8")
    calls = []
    real = function_source._source_tree
    monkeypatch.setattr(function_source, "_source_tree", lambda p: calls.append(p) or real(p))
    function_source._cached_info.cache_clear()
    for _ in range(8):
        assert parameter_info_from_source(path)[0][0]["value"] == 1
    assert len(calls) == 1
    path.write_text(HEAD + "22}]\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)
    assert parameter_info_from_source(path)[0][0]["value"] == 22 and len(calls) == 2

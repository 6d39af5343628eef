# SPDX-License-Identifier: GPL-2.0-or-later
"""One reading of true/false everywhere (an .emd key, a tool argument, a model function's argument, a raster
function's configuration, an arcgis.learn flag), and one atomic JSON/text writer."""

from __future__ import annotations

import json

import pytest
from dltools.core.arguments.specs import ArgSpec, _convert
from dltools.core.backends.arcgis_learn.families import as_flag
from dltools.core.errors import ArgumentError, ModelDefinitionError, OutputError
from dltools.core.flags import FALSE_WORDS, TRUE_WORDS, is_true, parse_bool
from dltools.core.model.function_source import typed_value
from dltools.core.model.validators import as_bool
from dltools.core.prf.configuration import as_bool as prf_flag
from dltools.core.safe_output import write_json_atomic, write_texts

WORDS = [(w, True) for w in TRUE_WORDS] + [(w, False) for w in FALSE_WORDS]


@pytest.mark.parametrize(("word", "value"), WORDS + [(w.upper(), v) for w, v in WORDS] + [(f" {w} ", v) for w, v in WORDS])
def test_every_reader_takes_the_same_words(word, value):
    assert parse_bool(word) is value and is_true(word) is value
    assert as_bool(word, "Key 'X'") is value
    assert _convert(ArgSpec("blend", "bool", False, ""), word) is value
    assert typed_value({"name": "flag", "dataType": "boolean"}, word) == str(value)
    assert prf_flag(word) is value and as_flag(word) is value


@pytest.mark.parametrize("word", ["maybe", "2", "truee", "on"])
def test_what_is_not_a_boolean_is_refused_or_false(word):
    assert parse_bool(word) is None and is_true(word) is False
    with pytest.raises(ModelDefinitionError, match="Key 'X' must be true or false"):
        as_bool(word, "Key 'X'")
    with pytest.raises(ArgumentError, match="Argument 'blend' must be True or False"):
        _convert(ArgSpec("blend", "bool", False, ""), word)
    with pytest.raises(ArgumentError, match="Model argument 'flag' must be True or False"):
        typed_value({"name": "flag", "dataType": "boolean"}, word)
    assert prf_flag(word) is False and as_flag(word) is False


def test_numbers_and_empty():
    assert [parse_bool(v) for v in (1, 0, 1.0, 0.0, True, False, 2, None, "")] == \
        [True, False, True, False, True, False, None, None, None]
    assert as_bool("", "Key 'X'") is False  # an empty .emd value is false, as before


def test_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    out = tmp_path / "doc.json"
    assert write_json_atomic({"a": [1, 2], "é": True}, out) == out
    assert out.read_text(encoding="utf-8") == '{\n    "a": [\n        1,\n        2\n    ],\n    "é": true\n}\n'
    assert json.loads(out.read_text(encoding="utf-8")) == {"a": [1, 2], "é": True}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OutputError, match=r"^Cannot write the output '.*doc.json': disk full$"):
        write_json_atomic({"b": 1}, out)
    assert json.loads(out.read_text(encoding="utf-8")) == {"a": [1, 2], "é": True}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_texts_are_written_together(tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.json"
    write_texts({a: "<p>x</p>", b: "{}\n"})
    assert (a.read_text(encoding="utf-8"), b.read_text(encoding="utf-8")) == ("<p>x</p>", "{}\n")
    with pytest.raises(OutputError, match="Output folder .* does not exist"):
        write_texts({a: "new", tmp_path / "missing" / "c.txt": "c"})
    assert a.read_text(encoding="utf-8") == "<p>x</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.json"]

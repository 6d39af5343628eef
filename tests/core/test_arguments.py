# SPDX-License-Identifier: GPL-2.0-or-later
"""Model arguments: the ArcGIS text form, dicts, defaults from the definition, typing and warnings."""

from __future__ import annotations

import json

import pytest
from builders import RecordingProgress
from dltools.core.arguments.specs import (
    TOOLS,
    argument_specs,
    default_padding,
    parse_arguments_text,
    resolve_arguments,
    square_batch_size,
)
from dltools.core.arguments.table import arguments_text
from dltools.core.errors import ArgumentError
from dltools.core.model.definition import ModelDefinition
from dltools.core.model.loader import load_model_definition
from dltools.core.threads import thread_count


def _md(**keys) -> ModelDefinition:
    data = {"Framework": "ONNX", "ModelType": "ImageClassification", "ModelFile": "m.onnx",
            "ImageHeight": 256, "ImageWidth": 256, "ExtractBands": [0, 1, 2]}
    data.update(keys)
    return load_model_definition(json.dumps(data), check_file=False)


CP_NAMES = ["padding", "batch_size", "edge_fill", "block_size", "threshold", "predict_background",
            "test_time_augmentation", "merge_policy", "blend", "threads", "half_precision"]


def test_arcgis_text_form():
    assert parse_arguments_text("padding 64;batch_size 4") == {"padding": "64", "batch_size": "4"}
    assert parse_arguments_text(" padding  64 ; ;batch_size 4;\nthreshold 0.3 ") == \
        {"padding": "64", "batch_size": "4", "threshold": "0.3"}
    assert parse_arguments_text('save_chips "C:/my chips";merge_policy \'max\'') == \
        {"save_chips": "C:/my chips", "merge_policy": "max"}


def test_name_equals_value_and_dict_forms():
    assert parse_arguments_text("padding=64;batch_size = 9") == {"padding": "64", "batch_size": "9"}
    assert parse_arguments_text({"padding": 32, "blend": True, "save_chips": None}) == \
        {"padding": "32", "blend": "True", "save_chips": ""}
    assert parse_arguments_text(None) == {}
    assert parse_arguments_text("") == {}


def test_argument_without_a_name():
    with pytest.raises(ArgumentError) as info:
        parse_arguments_text("padding 4;=5")
    assert str(info.value) == "Model argument '=5' has no name: write 'name value', separated by ';'"


def test_resolve_with_defaults_and_types():
    progress = RecordingProgress()
    values = resolve_arguments(_md(), "classify_pixels", "padding 64;batch_size 9;Threshold 0.25;blend yes", progress)
    assert values == {"padding": 64, "batch_size": 9, "edge_fill": "mirror", "block_size": 0, "threshold": 0.25,
                      "predict_background": True,
                      "test_time_augmentation": False, "merge_policy": "mean", "blend": True, "threads": 0,
                      "half_precision": False}
    assert progress.warnings == []
    assert arguments_text({"padding": "64", "blend": "True"}) == "padding 64;blend True"  # the text form, back


def test_dict_arguments():
    values = resolve_arguments(_md(), "classify_objects", {"batch_size": 16, "score_threshold": "0.7"})
    assert (values["batch_size"], values["score_threshold"], values["padding"]) == (16, 0.7, 0)


def test_unknown_name_warns_listing_the_known_ones():
    progress = RecordingProgress()
    values = resolve_arguments(_md(), "detect_change", "paddding 10;batch_size 1", progress)
    assert values == {"padding": 32, "batch_size": 1, "edge_fill": "mirror", "block_size": 0, "threads": 0,
                      "half_precision": False}
    assert progress.warnings == ["Model argument 'paddding' is not used by this tool and was ignored; known arguments: "
                                 "batch_size, block_size, edge_fill, half_precision, padding, threads"]


@pytest.mark.parametrize(("text", "message"), [
    ("padding abc", "Argument 'padding' must be a whole number, not 'abc'"),
    ("batch_size 2.5", "Argument 'batch_size' must be a whole number, not '2.5'"),
    ("batch_size 0", "Argument 'batch_size' must be at least 1, not 0"),
    ("threshold high", "Argument 'threshold' must be a number, not 'high'"),
    ("threshold 1.5", "Argument 'threshold' must be at most 1, not 1.5"),
    ("threshold nan", "Argument 'threshold' must be a finite number, not 'nan'"),
    ("blend maybe", "Argument 'blend' must be True or False, not 'maybe'"),
    ("merge_policy median", "Argument 'merge_policy' must be one of mean, max, min, not 'median'"),
    ("padding -1", "Argument 'padding' must be at least 0, not -1"),
])
def test_wrong_types_name_the_argument(text, message):
    with pytest.raises(ArgumentError) as info:
        resolve_arguments(_md(), "classify_pixels", text)
    assert str(info.value) == message


def test_fixed_padding_with_model_padding():
    md = _md(ModelPadding=64)
    spec = {s.name: s for s in argument_specs(md, "classify_pixels")}["padding"]
    assert (spec.default, spec.fixed) == (64, True)
    progress = RecordingProgress()
    values = resolve_arguments(md, "classify_pixels", "padding 16", progress)
    assert values["padding"] == 64
    assert progress.warnings == ["Argument 'padding' is fixed by the model to 64; 16 was ignored"]
    quiet = RecordingProgress()
    assert resolve_arguments(md, "classify_pixels", "padding 64", quiet)["padding"] == 64
    assert quiet.warnings == []


def test_square_batch_size():
    assert [square_batch_size(n) for n in (6, 10, 1, 4, 9, 15, 16, 0)] == [4, 9, 1, 4, 9, 9, 16, 1]


def test_default_padding_rules():
    assert default_padding(_md(), 256) == 32  # tile // 8
    assert default_padding(_md(Padding=10), 256) == 10
    assert default_padding(_md(ModelPadding=20, Padding=10), 256) == 20
    assert default_padding(_md(Framework="arcgis.learn.models._inferencing", ModelFile="m.pt"), 256) == 64


def test_defaults_come_from_the_definition():
    md = _md(BatchSize=3, Threshold=0.8, test_time_augmentation=True, SupportsVariableTileSize=True)
    cp = {s.name: s.default for s in argument_specs(md, "classify_pixels")}
    assert cp == {"tile_size": 256, "padding": 32, "batch_size": 3, "edge_fill": "mirror", "block_size": 0,
                  "threshold": 0.8, "predict_background": True,
                  "test_time_augmentation": True, "merge_policy": "mean", "blend": False, "threads": 0,
                  "half_precision": False}
    co = [s.name for s in argument_specs(md, "classify_objects")]
    assert co == ["batch_size", "padding", "test_time_augmentation", "score_threshold", "save_chips", "threads",
                  "half_precision"]
    assert [s.name for s in argument_specs(_md(), "classify_pixels")] == CP_NAMES


def test_unknown_tool():
    assert TOOLS == ("classify_pixels", "classify_objects", "detect_change", "detect_objects")
    with pytest.raises(ValueError, match="unknown tool 'segment_anything'"):
        argument_specs(_md(), "segment_anything")


def test_detect_objects_arguments_follow_arcgis_learn_defaults():
    md = _md()
    specs = {s.name: s for s in argument_specs(md, "detect_objects")}
    assert {"padding", "threshold", "nms_overlap", "batch_size", "exclude_pad_detections",
            "test_time_augmentation", "threads"} <= set(specs)
    assert specs["nms_overlap"].default == 0.1 and specs["exclude_pad_detections"].default is True
    assert specs["threshold"].default == 0.5


def test_thread_count(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert thread_count(3) == 3
    monkeypatch.setenv("DLTOOLS_THREADS", "5")
    assert thread_count(0) == 5
    monkeypatch.setenv("DLTOOLS_THREADS", "100000")
    assert thread_count(0) == 8
    monkeypatch.delenv("DLTOOLS_THREADS")
    assert thread_count(None) == 8
    assert thread_count(100000) == 8  # capped to the cores: 100000 threads crash ONNX Runtime


def test_threads_argument_capped_with_a_warning(monkeypatch):
    import os

    from builders import RecordingProgress

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    progress = RecordingProgress()
    assert resolve_arguments(_md(), "classify_pixels", "threads 100000", progress)["threads"] == 2
    assert progress.warnings == ["Argument 'threads' 100000 is more than the 2 CPU cores this process may use: using 2"]

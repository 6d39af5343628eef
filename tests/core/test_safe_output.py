# SPDX-License-Identifier: GPL-2.0-or-later
"""Outputs go to a temporary file and replace the target only on success."""

from __future__ import annotations

import os

import pytest
from dltools.core.errors import OutputError
from dltools.core.safe_output import OutputSet, refuse_overlap, replacing


def test_success_replaces_target_and_its_side_files(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    (tmp_path / "out.tif.aux.xml").write_text("stale statistics")
    (tmp_path / "out.qml").write_text("old style")
    with OutputSet() as outs:
        tmp = outs.path_for(target)
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".tif") and tmp != str(target)
        with open(tmp, "wb") as f:
            f.write(b"new")
        with open(os.path.splitext(tmp)[0] + ".qml", "w") as f:
            f.write("new style")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert (tmp_path / "out.qml").read_text() == "new style"
    assert not (tmp_path / "out.tif.aux.xml").exists()  # statistics of the old file are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.qml", "out.tif"]


def test_failure_leaves_target_and_style_exactly_as_they_were(tmp_path):
    target = tmp_path / "out.gpkg"
    target.write_bytes(b"old")
    (tmp_path / "out.qml").write_text("old style")
    with pytest.raises(RuntimeError), OutputSet() as outs:
        tmp = outs.path_for(target)
        open(tmp, "wb").write(b"partial")
        open(tmp + "-journal", "wb").write(b"journal")
        raise RuntimeError("cancelled")
    assert target.read_bytes() == b"old"
    assert (tmp_path / "out.qml").read_text() == "old style"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gpkg", "out.qml"]


def test_replacing_single_output_and_missing_output_is_an_error(tmp_path):
    target = tmp_path / "result.json"
    with replacing(target) as tmp:
        open(tmp, "w").write("{}")
    assert target.read_text() == "{}"
    with pytest.raises(OutputError, match="never written"), replacing(tmp_path / "nothing.json"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        OutputSet().path_for(tmp_path / "missing" / "out.tif")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        OutputSet().path_for(tmp_path / "file" / "out.tif")
    with pytest.raises(OutputError, match="is a folder"):
        OutputSet().path_for(tmp_path)


def test_refuse_overlap_names_both_parameters(tmp_path):
    src = tmp_path / "in.tif"
    src.write_bytes(b"x")
    link = tmp_path / "link.tif"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="OUTPUT .* input INPUT"):
        refuse_overlap({"OUTPUT": str(link)}, {"INPUT": str(src)})
    with pytest.raises(OutputError, match="OUTPUT and OUTPUT_PROBABILITIES"):
        refuse_overlap({"OUTPUT": str(tmp_path / "a.tif"), "OUTPUT_PROBABILITIES": str(tmp_path / "." / "a.tif")}, {})
    with pytest.raises(OutputError, match="FEATURES"):
        refuse_overlap({"OUTPUT": f"{tmp_path}/f.gpkg"}, {"FEATURES": f"{tmp_path}/f.gpkg|layername=roofs"})
    refuse_overlap({"OUTPUT": str(tmp_path / "b.tif"), "OUTPUT_PROBABILITIES": None}, {"INPUT": str(src)})
    refuse_overlap({"OUTPUT": "TEMPORARY_OUTPUT"}, {"INPUT": "TEMPORARY_OUTPUT"})


def test_a_plain_temporary_name_has_no_dot_but_the_extensions_and_follows_the_same_rules(tmp_path):
    """For writers that read everything after a name's first dot as its extension (QGIS's ogr:dbname= destinations):
    the name is visible and dot-free but for the extension, and it is committed or discarded like any other."""
    target = tmp_path / "my.data.gpkg"
    with OutputSet() as outs:
        tmp = outs.path_for(target, plain_name=True)
        name = os.path.basename(tmp)
        assert name.startswith("my_data_dltools-") and name.count(".") == 1 and name.endswith(".gpkg")
        open(tmp, "wb").write(b"new")
        open(os.path.splitext(tmp)[0] + ".qml", "w").write("style")
    assert target.read_bytes() == b"new" and (tmp_path / "my.data.qml").read_text() == "style"
    with pytest.raises(RuntimeError), OutputSet() as outs:
        tmp = outs.path_for(target, plain_name=True)
        open(tmp, "wb").write(b"partial")
        open(tmp + "-journal", "wb").write(b"journal")
        raise RuntimeError("failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.data.gpkg", "my.data.qml"]


def test_one_result_under_two_names(tmp_path):
    """OutputSet.copy_of: a written output (and its side files) also becomes another target, committed or discarded
    with the rest; a copy of what was not written is refused."""
    first, second = tmp_path / "a.tif", tmp_path / "b" / "a_copy.tif"
    second.parent.mkdir()
    with OutputSet() as outputs:
        tmp = outputs.path_for(first)
        with open(tmp, "wb") as fh:
            fh.write(b"raster")
        with open(os.path.splitext(tmp)[0] + ".qml", "w", encoding="utf-8") as fh:
            fh.write("<qgis/>")
        outputs.copy_of(first, second)
    assert first.read_bytes() == second.read_bytes() == b"raster"
    assert (tmp_path / "a.qml").read_text(encoding="utf-8") == (second.parent / "a_copy.qml").read_text(encoding="utf-8")
    assert sorted(p.name for p in second.parent.iterdir()) == ["a_copy.qml", "a_copy.tif"]
    with pytest.raises(RuntimeError), OutputSet() as outputs:
        with open(outputs.path_for(first), "wb") as fh:
            fh.write(b"new")
        outputs.copy_of(first, second)
        raise RuntimeError("the run failed after both were written")
    assert first.read_bytes() == second.read_bytes() == b"raster"
    assert sorted(p.name for p in second.parent.iterdir()) == ["a_copy.qml", "a_copy.tif"]
    with pytest.raises(OutputError, match="was not written before its copy"), OutputSet() as outputs:
        outputs.copy_of(tmp_path / "never.tif", second)

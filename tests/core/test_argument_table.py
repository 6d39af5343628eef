# SPDX-License-Identifier: GPL-2.0-or-later
"""The arguments table the dialogs and Describe Model show: rows from the tool's specs with the model's defaults
(.emd keys, Deepness ONNX metadata), checks, the ArcGIS text form, and the values a run really uses."""

from __future__ import annotations

from builders import conv_module, export_onnx, write_emd
from dltools.core.arguments.table import argument_rows, arguments_text, effective_arguments
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.describe.device import device_summary


def test_deepness_metadata_gives_the_defaults(tmp_path):
    meta = {"model_type": "Segmentor", "class_names": {"0": "bg", "1": "roof"}, "tiles_size": 64,
            "tiles_overlap": 15, "seg_thresh": 0.4}
    path = export_onnx(conv_module(3, 2, 1), tmp_path / "d.onnx", 3, 64, dynamic_hw=True, metadata=meta)
    md = load_model_definition(path)
    rows = {r.name: r for r in argument_rows(md, "classify_pixels")[0]}
    assert (rows["tile_size"].default, rows["padding"].default, rows["threshold"].default) == ("64", "5", "0.4")
    assert "tiles_overlap 15%" in rows["padding"].description
    assert "metadata" in rows["threshold"].description
    assert rows["threshold"].check("1.5") and not rows["threshold"].check("0.7")
    assert rows["merge_policy"].check("median") and rows["predict_background"].check("maybe")
    assert "CPU" in device_summary(md, "cpu")


def test_text_form_and_what_a_run_uses(tmp_path):
    conv = conv_module(3, 2, 1)
    export_onnx(conv, tmp_path / "m.onnx", 3, 32, fixed_batch=1)
    md = load_model_definition(write_emd(tmp_path / "m.emd", "m.onnx", classes=((1, "a", (1, 2, 3)),), Padding=6))
    rows = argument_rows(md, "classify_pixels")[0]
    assert arguments_text({"padding": "6", "batch_size": "9", "blend": ""}, rows) == "batch_size 9"
    used = {u["name"]: u for u in effective_arguments(md, "classify_pixels", "batch_size 10;padding 4")}
    assert (used["batch_size"]["value"], used["padding"]["value"]) == ("9", "4")
    assert "not a perfect square" in used["batch_size"]["note"]
    used = {u["name"]: u for u in effective_arguments(md, "classify_pixels", "batch_size 10", fixed_batch=1)}
    assert used["batch_size"]["value"] == "1" and "fixed at 1" in used["batch_size"]["note"]
    bad = {u["name"]: u for u in effective_arguments(md, "classify_pixels", "padding x")}
    assert not bad["padding"]["valid"] and "whole number" in bad["padding"]["note"]

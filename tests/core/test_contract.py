# SPDX-License-Identifier: GPL-2.0-or-later
"""The model contract: one layout rule, one batch rule, the tile size, TTA, thresholds and the probe inputs,
decided once per run from the definition, the arguments and what the model declares; the dialog's table and
Describe Model show the same batch a run uses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from builders import conv_module, export_onnx, write_emd
from dltools.core.arguments.specs import decide_batch, resolve_arguments
from dltools.core.arguments.table import effective_arguments
from dltools.core.backends import TensorInfo
from dltools.core.engine.contract import decide_contract, declared_fixed_batch, fixed_batch
from dltools.core.errors import InputDataError
from dltools.core.model.layout import input_layout
from dltools.core.model.loader import load_model_definition


@pytest.mark.parametrize(("shape", "bands", "layout"), [
    ((None, 3, 64, 64), 3, "NCHW"), ((None, 64, 64, 3), 3, "NHWC"), ((1, None, 64, 64), 3, "NCHW"),
    ((1, 3, 64, 3), 3, "NCHW"), ((1, 4, 64, 64), 3, None), ((1, 64, 64, 4), 3, None),
    ((None, 3, 64, 64), None, "NCHW"), ((None, 64, 64, 3), None, "NHWC"), ((None, None, None, 4), None, "NHWC"),
    ((None, 32, 32, 32), None, "NCHW"), ((None, 3, 8, 8), None, "NCHW"), ((None, 16, 16, 3), None, "NHWC"),
    ((None, 8, 8, 8), None, "NCHW"), ((None, 16, None, None), None, "NCHW"),
])
def test_one_layout_rule(shape, bands, layout):
    """The band axis is the one holding the bands; without a band count, the small axis (NCHW when both are)."""
    assert input_layout(shape, bands) == layout


def test_one_batch_rule():
    assert decide_batch(6) == dataclasses.replace(decide_batch(6), used=4)
    assert (decide_batch(6).used, decide_batch(6).why) == (4, "6 is not a perfect square: lowered as ArcGIS does")
    assert decide_batch(6).log_line() == "batch_size 6 is not a perfect square: using 4"
    assert (decide_batch(9).used, decide_batch(9).why, decide_batch(9).log_line()) == (9, "", "")
    fixed = decide_batch(4, fixed=1)
    assert (fixed.used, fixed.why, fixed.fixed) == (1, "the model's batch dimension is fixed at 1", True)
    assert fixed.log_line() == "The model's batch dimension is fixed at 1: using batch size 1"
    assert decide_batch(16, fixed=16).why == ""


def _md(tmp_path, **emd):
    export_onnx(conv_module(3, 2, 1), tmp_path / "m.onnx", 3, 16)
    return load_model_definition(write_emd(tmp_path / "m.emd", "m.onnx", tile=16, **emd))


def _t(*shape):
    return TensorInfo("x", tuple(shape), "float32")


def test_contract_is_decided_once_from_model_and_arguments(tmp_path):
    md = _md(tmp_path)
    args = resolve_arguments(md, "classify_pixels", "batch_size 6;test_time_augmentation true;merge_policy max")
    c = decide_contract(md, args, "classify_pixels", inputs=[_t(None, 3, 16, 16)], outputs=[_t(None, 2, 16, 16)],
                        channels=3)
    assert (c.layout, c.tile_height, c.tile_width, c.bands, c.inputs, c.batch_size) == ("NCHW", 16, 16, 3, 1, 4)
    assert (c.transforms, c.merge_policy, c.threshold) == (tuple(range(8)), "max", 0.5)
    assert c.augmentation_text() == ", test-time augmentation x8"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.layout = "NHWC"
    # the probe inputs are the same on every call: one decision, whatever the raster or the batch
    zeros, noise = c.probe_inputs()
    assert zeros.shape == noise.shape == (1, 3, 16, 16) and not zeros.any()
    np.testing.assert_array_equal(noise, c.probe_inputs()[1])
    assert float(np.abs(noise).max()) > 10.0


def test_contract_feeds_nhwc_and_two_dates(tmp_path):
    md = dataclasses.replace(_md(tmp_path), model_format="NHWC")
    args = resolve_arguments(md, "detect_change", None)
    c = decide_contract(md, args, "detect_change", inputs=[_t(None, 16, 16, 2), _t(None, 16, 16, 2)], channels=4)
    assert (c.nhwc, c.bands, c.inputs, c.channels) == (True, 2, 2, 4)
    arr = np.arange(2 * 4 * 16 * 16, dtype=np.float32).reshape(2, 4, 16, 16)
    first, second = c.feeds(arr)
    np.testing.assert_array_equal(first, arr[:, :2].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(second, arr[:, 2:].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(c.output_nchw(first), arr[:, :2])


def test_contract_batch_follows_the_model(tmp_path):
    md = _md(tmp_path)
    args = resolve_arguments(md, "classify_pixels", "batch_size 9")
    assert decide_contract(md, args, "classify_pixels", inputs=[_t(1, 3, 16, 16)], channels=3).batch_size == 1
    # any batch in, but the output's batch is baked in at 1
    c = decide_contract(md, args, "classify_pixels", inputs=[_t(None, 3, 16, 16)], outputs=[_t(1, 2, 16, 16)],
                        channels=3)
    assert (c.batch_size, c.probe_batch, c.batch.why) == (1, 1, "the model's batch dimension is fixed at 1")
    det = resolve_arguments(md, "detect_objects", "batch_size 4;threshold 0.3;nms_overlap 0.2")
    c = decide_contract(md, det, "detect_objects", inputs=[_t(None, 3, 16, 16)], channels=3, per_image_outputs=True)
    assert (c.batch_size, c.threshold, c.nms_overlap) == (1, 0.3, 0.2)


@pytest.mark.parametrize(("tool", "inputs", "channels", "message"), [
    ("classify_pixels", [_t(None, 4, 16, 16)], 3, "The model takes 4 bands per image but 3 are read"),
    ("classify_pixels", [_t(None, 3, 32, 32)], 3, "The model takes 32x32 tiles but ImageWidth/ImageHeight say 16x16"),
    ("classify_objects", [_t(None, 3, 32, 32)], None, "The model takes 32x32 chips but"),
    ("classify_objects", [_t(None, 3, 16, 16)] * 2, None, "The model has 2 inputs; this tool feeds it one image"),
    ("detect_objects", [_t(None, 48)], 3, r"takes an input of shape \[\?, 48\], not an image batch"),
    ("detect_change", [_t(None, 3, 16, 16)] * 3, 6, "only one .* or two .* are supported"),
    ("detect_change", [_t(None, 3, 16, 16)] * 2, 5, "The model takes two images but 5 bands were read"),
])
def test_contract_refuses_what_the_model_cannot_take(tmp_path, tool, inputs, channels, message):
    md = _md(tmp_path)
    with pytest.raises(InputDataError, match=message):
        decide_contract(md, resolve_arguments(md, tool, None), tool, inputs=inputs, channels=channels)


def test_classify_objects_reads_the_bands_the_model_declares(tmp_path):
    md = _md(tmp_path)
    args = resolve_arguments(md, "classify_objects", "score_threshold 0.7")
    c = decide_contract(md, args, "classify_objects", inputs=[_t(None, 5, 16, 16)])
    assert (c.bands, c.declared_bands, c.threshold) == (5, 5, 0.7)
    c = decide_contract(md, args, "classify_objects", inputs=[_t(None, None, 16, 16)])
    assert (c.bands, c.declared_bands) == (3, None)  # ExtractBands [0, 1, 2]


def test_table_and_describe_show_the_batch_a_run_uses(tmp_path):
    """The dialog's table reads the fixed batch from the ONNX file's declared shapes (nothing run) and shows
    batch_size 1 and why; a model that takes any batch shows the square rule."""
    export_onnx(conv_module(3, 2, 1), tmp_path / "fixed.onnx", 3, 16, fixed_batch=1)
    fixed = load_model_definition(write_emd(tmp_path / "fixed.emd", "fixed.onnx", tile=16))
    assert declared_fixed_batch(fixed) == 1
    used = {u["name"]: u for u in effective_arguments(fixed, "classify_pixels", "batch_size 4",
                                                      declared_fixed_batch(fixed))}
    assert (used["batch_size"]["value"], used["batch_size"]["note"]) == ("1", "the model's batch dimension is fixed at 1")
    free = _md(tmp_path)
    assert declared_fixed_batch(free) is None
    used = {u["name"]: u for u in effective_arguments(free, "classify_pixels", "batch_size 10",
                                                      declared_fixed_batch(free))}
    assert (used["batch_size"]["value"], used["batch_size"]["note"]) == ("9", "10 is not a perfect square: lowered as "
                                                                              "ArcGIS does")
    assert fixed_batch([_t(None, 3, 16, 16)], [_t(None, 2, 16, 16)]) is None


def test_code_bearing_models_are_not_opened_for_the_table(tmp_path):
    md = dataclasses.replace(_md(tmp_path), model_format_kind="torchscript")
    assert declared_fixed_batch(md) is None

# SPDX-License-Identifier: GPL-2.0-or-later
"""PROCESSING_MODE with a VRT mosaic (the analogue of a mosaic dataset): classified as one image, or item by
item into OUTPUT_FOLDER; and the .emd JSON text as MODEL."""

from __future__ import annotations

import json

import numpy as np
from builders import conv_module, export_onnx, numpy_conv_mirror, read_raster, write_emd, write_raster
from osgeo import gdal
from recording_feedback import RecordingFeedback

CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
VALUES = np.array([1, 2, 5])
WEIGHT = np.random.default_rng(11).integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)  # pointwise: exact anywhere


def _case(tmp_path):
    rng = np.random.default_rng(12)
    left = rng.integers(0, 9, size=(3, 20, 24)).astype(np.uint8)
    right = rng.integers(0, 9, size=(3, 20, 16)).astype(np.uint8)
    a = write_raster(tmp_path / "left.tif", left, origin=(500000.0, 4000000.0))
    b = write_raster(tmp_path / "right.tif", right, origin=(500024.0, 4000000.0))
    vrt = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), [str(a), str(b)]).FlushCache()
    export_onnx(conv_module(3, 3, 1, weight=WEIGHT), tmp_path / "m.onnx", 3, 16)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=16, classes=CLASSES)

    def expected(image):
        return VALUES[np.argmax(numpy_conv_mirror(image, WEIGHT, np.zeros(3)), axis=0)]

    return vrt, emd, expected(left), expected(right), expected(np.concatenate([left, right], axis=2))


def test_mosaic_is_one_image_by_default(context, tmp_path):
    import processing

    vrt, emd, _, _, whole = _case(tmp_path)
    out = tmp_path / "mosaic_classes.tif"
    processing.run("dltools:classifypixels", {"INPUT": str(vrt), "MODEL": str(emd), "ARGUMENTS": "padding 2",
                                              "OUTPUT": str(out)}, context=context)
    assert np.array_equal(read_raster(out), whole)


def test_items_separately_into_the_output_folder(context, tmp_path):
    import processing

    vrt, emd, left, right, _ = _case(tmp_path)
    folder = tmp_path / "items"
    out = tmp_path / "first.tif"
    feedback = RecordingFeedback()
    result = processing.run("dltools:classifypixels", {
        "INPUT": str(vrt), "MODEL": str(emd), "ARGUMENTS": "padding 2", "PROCESSING_MODE": 1,
        "OUTPUT_FOLDER": str(folder), "OUTPUT": str(out)}, context=context, feedback=feedback)
    assert result["OUTPUT_FOLDER"] == str(folder)
    assert np.array_equal(read_raster(folder / "left_classified.tif"), left)
    assert np.array_equal(read_raster(folder / "right_classified.tif"), right)
    assert (folder / "left_classified.qml").is_file() and (folder / "right_classified.qml").is_file()
    assert np.array_equal(read_raster(out), left)  # OUTPUT holds the first item, so models can chain the tool
    assert any("Item 2/2" in line for line in feedback.infos)


def test_the_first_item_runs_once_and_fills_output_and_probabilities(context, tmp_path):
    """OUTPUT (and OUTPUT_PROBABILITIES) hold the first item's result without running the model on it again: one
    run per item, the first item's raster written under both names (its style too)."""
    import processing

    vrt, emd, left, right, _ = _case(tmp_path)
    folder, out, probs = tmp_path / "items", tmp_path / "first.tif", tmp_path / "first_probs.tif"
    feedback = RecordingFeedback()
    processing.run("dltools:classifypixels", {
        "INPUT": str(vrt), "MODEL": str(emd), "ARGUMENTS": "padding 2", "PROCESSING_MODE": 1,
        "OUTPUT_FOLDER": str(folder), "OUTPUT": str(out), "OUTPUT_PROBABILITIES": str(probs)},
        context=context, feedback=feedback)
    runs = [line for line in feedback.infos if line.startswith("Tiles: ")]
    assert len(runs) == 2, runs  # one model run per item, none again for OUTPUT
    assert np.array_equal(read_raster(out), left) and np.array_equal(read_raster(folder / "left_classified.tif"), left)
    assert np.array_equal(read_raster(folder / "right_classified.tif"), right)
    assert read_raster(probs).shape == (3,) + left.shape  # the first item's probabilities
    assert (folder / "left_classified.qml").read_text(encoding="utf-8") == \
        out.with_suffix(".qml").read_text(encoding="utf-8")
    names = sorted(p.name for p in folder.iterdir())
    # the copy brings the same side files as a run writes (style, statistics), and no temporary file stays
    assert [n.replace("left_", "") for n in names if n.startswith("left_")] == \
        [n.replace("right_", "") for n in names if n.startswith("right_")]
    assert all(n.startswith(("left_classified", "right_classified")) for n in names), names


def test_model_given_as_json_text(context, tmp_path):
    import processing

    vrt, emd, _, _, whole = _case(tmp_path)
    data = json.loads(emd.read_text())
    data["ModelFile"] = str(tmp_path / "m.onnx")  # JSON text has no folder: the model file path is absolute
    out = tmp_path / "json_classes.tif"
    processing.run("dltools:classifypixels", {"INPUT": str(vrt), "MODEL": json.dumps(data), "ARGUMENTS": "padding 2",
                                              "OUTPUT": str(out)}, context=context)
    assert np.array_equal(read_raster(out), whole)

# SPDX-License-Identifier: GPL-2.0-or-later
"""What a tile sees badly at its edge does not become an object: the tile whose centre holds a box judges it
(arcgis.learn's ``exclude_pad_detections``), so a model's sliver in a tile's padding is left out, and a whole object
beside a piece stretched to a tile's edge stays an object of its own in the seam merge.  Both were seen with a
FasterRCNN trained here (tests/core/test_train_rcnn_learns.py) before they were fixed."""

from __future__ import annotations

import numpy as np
import pytest
from builders import write_raster
from dltools.core.detection import seams
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.detect_objects.pipeline import detect_objects
from many_boxes import constant_detector
from osgeo import ogr

pytest.importorskip("onnxruntime")

TILE, PAD, SIZE = 64, 16, 128  # 4 x 4 tiles, centres 32 pixels wide: tile (r, c) starts at (32 c - 16, 32 r - 16)


def _boxes(result) -> list[tuple[float, float, float, float]]:
    """Objects -> (x1, y1, x2, y2) in pixels (write_raster's grid: 1 m, north-up)."""
    out = []
    for o in result.objects:
        minx, maxx, miny, maxy = ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope()
        out.append((minx - 500000.0, 4000000.0 - maxy, maxx - 500000.0, 4000000.0 - miny))
    return sorted(out)


@pytest.mark.parametrize("edge_fill", ["mirror", "zero"])
def test_a_sliver_in_a_tiles_padding_is_left_out(tmp_path, edge_fill):
    """Every tile answers a 16-pixel object in its centre and a 5 x 1-pixel sliver at its left edge, in the
    padding (cut by the edge in every tile but the first column's): the 16 objects come out, no sliver (the plugin
    kept the 12 slivers inside the raster as pieces of objects cut by the tile's edge)."""
    rows = np.array([[32.0, 32.0, 16.0, 16.0, 0.9], [2.5, 44.5, 5.0, 1.0, 0.8]]).T  # cx, cy, w, h, score
    model = constant_detector(tmp_path / "answers.onnx", TILE, rows, {0: "thing"})
    raster = write_raster(tmp_path / "dark.tif", np.zeros((3, SIZE, SIZE), np.uint8))
    result = detect_objects(str(raster), load_model_definition(str(model)),
                            f"padding {PAD};threshold 0.5;edge_fill {edge_fill}")
    want = sorted((32.0 * c + 8, 32.0 * r + 8, 32.0 * c + 24, 32.0 * r + 24) for r in range(4) for c in range(4))
    assert _boxes(result) == want
    assert result.before_merge == 16  # the slivers never reach the merge


def test_a_whole_object_beside_a_piece_cut_by_a_seam_stays_apart():
    """Half a disc that the model stretched to its tile's right edge (x 48, cut) and the whole disc beside it, seen
    by the next tile, only meet at the seam: two objects.  Two pieces cut by one seam (tiles without padding) are
    one."""
    boxes = np.array([[26.0, 80.0, 48.0, 91.3], [48.3, 68.7, 70.8, 89.7]])
    scores, classes, chips = np.array([0.6, 0.9]), np.array([1, 1]), np.array([0, 1])
    apart = seams.seam_merge(boxes, scores, classes, chips, np.array([True, False]), 0.1)
    assert [g.tolist() for g in apart] == [[1], [0]]
    pieces = seams.seam_merge(boxes, scores, classes, chips, np.array([True, True]), 0.1)
    assert [g.tolist() for g in pieces] == [[1, 0]]
    # a piece that covers half of the whole object on both axes is still united with it
    inside = np.array([[50.0, 70.0, 60.0, 89.0], [48.3, 68.7, 70.8, 89.7]])
    assert [g.tolist() for g in seams.seam_merge(inside, scores, classes, chips, np.array([True, False]), 0.1)] \
        == [[1, 0]]

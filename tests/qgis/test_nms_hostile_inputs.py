# SPDX-License-Identifier: GPL-2.0-or-later
"""Non Maximum Suppression and Detect Objects' run_nms on inputs that used to stop or fool them: invalid polygons
(QGIS's own validity check stopped the loop, and in QGIS 3.22 broke the interpreter) and a NaN overlap ratio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.core import QgsFeatureRequest, QgsProcessingContext, QgsProcessingException
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_non_maximum_suppression import polygon_layer, rect, survivors  # noqa: E402

ALG = "dltools:nonmaximumsuppression"
BOW_TIE = "POLYGON((20 0,30 10,30 0,20 10,20 0))"  # self-intersecting: invalid


def test_invalid_polygons_are_repaired_and_counted_not_a_stop(context):
    import processing

    context.setInvalidGeometryCheck(QgsFeatureRequest.GeometryAbortOnInvalid)  # the GUI's default
    layer = polygon_layer([(rect(0, 0, 10, 10), 95.0, "car"), (rect(1, 0, 11, 10), 90.0, "car"),
                           (BOW_TIE, 80.0, "car"), (rect(20, 0, 30, 10), 70.0, "car")])
    feedback = RecordingFeedback()
    result = processing.run(ALG, {"INPUT": layer, "OUTPUT": "memory:", "MAX_OVERLAP_RATIO": 0.3}, context=context,
                            feedback=feedback)
    # the bow tie, made valid (two triangles: half the square's area), suppresses the lower square beside it
    assert survivors(result) == [0, 2]
    assert "1 invalid polygons were made valid to measure their overlaps" in feedback.errors
    assert ogr_calls_still_work()


def ogr_calls_still_work() -> bool:
    from osgeo import ogr

    return ogr.CreateGeometryFromWkt("POINT (1 2)").GetX() == 1.0


@pytest.mark.parametrize("tool", ["nms", "detect"])
def test_nan_overlap_ratio_is_refused(context, tmp_path, tool):
    import processing

    layer = polygon_layer([(rect(0, 0, 10, 10), 95.0, "car"), (rect(1, 0, 11, 10), 90.0, "car")])
    with pytest.raises(QgsProcessingException) as info:
        if tool == "nms":
            processing.run(ALG, {"INPUT": layer, "OUTPUT": "memory:", "MAX_OVERLAP_RATIO": float("nan")},
                           context=context)
        else:
            import numpy as np
            from builders import write_emd, write_raster

            raster = write_raster(tmp_path / "in.tif", np.zeros((3, 16, 16), np.uint8))
            emd = write_emd(tmp_path / "m.emd", "absent.onnx", model_type="ObjectDetection", tile=16)
            processing.run("dltools:detectobjects", {"INPUT": str(raster), "MODEL": str(emd), "RUN_NMS": True,
                                                     "MAX_OVERLAP_RATIO": float("nan"), "OUTPUT": "memory:"},
                           context=context)
    assert "MAX_OVERLAP_RATIO must be a number from 0 to 1, not nan" in str(info.value)
    assert isinstance(context, QgsProcessingContext)

# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugin's warnings also go to QGIS's Log Messages panel, under its own "Deep Learning Tools" tab, as QGIS
plugins do: the dialog's log is gone once the dialog closes, and a script's run has none."""

from __future__ import annotations

import numpy as np
from builders import conv_module, export_onnx, write_raster


def test_a_runs_warnings_reach_the_log_messages_panel_under_the_plugins_tab(context, tmp_path):
    import processing
    from qgis.core import Qgis, QgsApplication
    from recording_feedback import RecordingFeedback

    raster = write_raster(tmp_path / "image.tif", np.zeros((3, 32, 32), np.uint8))
    onnx = export_onnx(conv_module(3, 2, 1), tmp_path / "bare.onnx", 3, 32)  # no metadata: a warning says so
    seen: list[tuple[str, str, int]] = []

    def record(message, tag, level) -> None:  # noqa: ANN001 - the signal's arguments
        seen.append((message, tag, int(level)))

    log = QgsApplication.messageLog()
    log.messageReceived.connect(record)
    feedback = RecordingFeedback()
    try:
        processing.run("dltools:classifypixels", {"INPUT": str(raster), "MODEL": str(onnx),
                                                  "OUTPUT": str(tmp_path / "out.tif")}, context=context,
                       feedback=feedback)
        QgsApplication.processEvents()
    finally:
        log.messageReceived.disconnect(record)
    warning = next(e for e in feedback.errors if "no normalisation metadata" in e)
    assert (warning, "Deep Learning Tools", int(Qgis.Warning)) in seen
    assert not [m for m, tag, _ in seen if tag == "Deep Learning Tools" and m not in feedback.errors]

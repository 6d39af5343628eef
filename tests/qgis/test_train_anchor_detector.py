# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model, SingleShotDetector and RetinaNet, in QGIS: one .model3 (Export Training Data as
PASCAL_VOC_rectangles from polygons -> Train -> Detect Objects on the trained folder), processing.run and
qgis_process.  The runs are tiny (64-pixel chips, one epoch): they prove the folder is one the plugin's own
inference runs; the scores are the core tests' (tests/core/test_train_anchor_detectors.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from recording_feedback import RecordingFeedback  # noqa: E402
from training_data_builders import write_pascal_voc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402
from test_train_detector import export_train_detect  # noqa: E402

#: MODEL_TYPE index -> (family, its ARGUMENTS)
FAMILIES = {5: ("SingleShotDetector", "grids [4];threads 2"), 6: ("RetinaNet", "scales [0.4, 0.6, 0.8];threads 2")}
TINY = {"BACKBONE": 0, "BATCH_SIZE": 4, "LEARNING_RATE": 0.001, "VALIDATION_PERCENT": 34, "MAX_EPOCHS": 1,
        "DEVICE": 1}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_model3_export_train_detect(context, tmp_path, model_type):
    family, arguments = FAMILIES[model_type]
    emd, layer, feedback = export_train_detect(
        context, tmp_path, 1, {**TINY, "MODEL_TYPE": model_type, "ARGUMENTS": arguments},
        {"DEVICE": 1, "ARGUMENTS": "threshold 0.1"})
    assert emd["ModelName"] == family and set(emd["average_precision_score"]) == {"1", "2"}
    assert (tmp_path / "boxes" / "boxes.dlpk").is_file()
    assert layer.isValid() and {"Class", "Confidence"} <= set(layer.fields().names())
    assert {f["Class"] for f in layer.getFeatures()} <= {"1", "2"}
    assert any("mAP" in line for line in feedback.infos)
    assert any("anchors:" in line for line in feedback.infos)


def test_processing_run_refuses_an_argument_of_the_other_family(context, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    chips = write_pascal_voc(tmp_path / "chips", count=2, chip=64, seed=5)
    with pytest.raises(QgsProcessingException, match="grids is for SingleShotDetector, not RetinaNet"):
        processing.run("dltools:trainmodel", {**TINY, "MODEL_TYPE": 6, "INPUT_FOLDER": str(chips),
                                              "OUTPUT_FOLDER": str(tmp_path / "out"), "ARGUMENTS": "grids [4]"},
                       context=context, feedback=RecordingFeedback())
    assert not (tmp_path / "out" / "out.emd").exists()


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
def test_qgis_process_trains_single_shot_detector(tmp_path):
    chips = write_pascal_voc(tmp_path / "chips", count=4, chip=64, seed=5)
    answer = qgis_process_util.qgis_process_json(
        "dltools:trainmodel", {**TINY, "MODEL_TYPE": 5, "ARGUMENTS": "grids [4];threads 1",
                               "INPUT_FOLDER": str(chips), "OUTPUT_FOLDER": str(tmp_path / "cli"),
                               "VALIDATION_PERCENT": 50}, tmp_path, timeout=400)
    assert answer["results"]["OUTPUT_MODEL"] == str(tmp_path / "cli" / "cli.emd")
    emd = json.loads((tmp_path / "cli" / "cli.emd").read_text())
    assert emd["ModelName"] == "SingleShotDetector" and emd["Grids"] == [4]
    assert "mAP" in json.dumps(answer.get("log", answer))

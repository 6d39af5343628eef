# SPDX-License-Identifier: GPL-2.0-or-later
"""What the tools' dialogs check and show, without a window: MODEL takes pasted .emd JSON text, the help page."""

from __future__ import annotations

import pytest

TOOLS = ["classifypixels", "classifyobjects", "detectchange", "describemodel"]


@pytest.mark.parametrize("name", TOOLS)
def test_model_accepts_pasted_json_in_the_dialog_check(qgis_app, name):
    from qgis.core import QgsApplication

    param = QgsApplication.processingRegistry().algorithmById(f"dltools:{name}").parameterDefinition("MODEL")
    for text in ('{"ModelType": "ImageClassification"}', '{\n  "ModelType": "ObjectClassification",\n'
                 '  "ModelFile": "/models/m.onnx"\n}', "/models/m.emd", "/models/m.dlpk"):
        assert param.checkValueIsAcceptable(text), text


def test_help_page_renders_the_readme(tmp_path):
    from dltools.algorithms.help_page import markdown_to_html, render_help

    page = markdown_to_html("# Title\n\nSome `code` and **bold**.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- x\n- y\n\n"
                            "```\nprocessing.run()\n```\n![shot](docs/s.png)\n")
    assert '<h1 id="title">Title</h1>' in page and "<code>code</code>" in page and "<strong>bold</strong>" in page
    assert "<td>1</td>" in page and "<li>x</li>" in page and "<pre><code>processing.run()" in page
    assert '<img alt="shot" src="docs/s.png">' in page
    target = render_help(tmp_path / "help" / "index.html")
    assert 'id="classify-pixels-using-deep-learning"' in target.read_text(encoding="utf-8")


def test_create_package_reads_as_one_choice(qgis_app):
    """The dialog shows one required Model field (a definition or a model file) and the class info that goes with a
    model file; MODEL_FILE stays for scripts and saved models, hidden from the dialog."""
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    alg = QgsApplication.processingRegistry().algorithmById("dltools:packagemodel")
    params = {p.name(): p for p in alg.parameterDefinitions()}
    shown = [n for n, p in params.items() if not p.flags() & QgsProcessingParameterDefinition.FlagHidden]
    assert shown[:2] == ["MODEL_DEFINITION", "CLASS_INFO"] and "MODEL_FILE" not in shown
    assert not params["MODEL_DEFINITION"].flags() & QgsProcessingParameterDefinition.FlagOptional
    assert params["MODEL_DEFINITION"].description() == \
        "Model: its definition (.emd, .ecd) or a model file (.onnx, .pt, …)"
    assert params["CLASS_INFO"].description() == "Class info JSON (only with a model file)"
    assert not any("(A)" in p.description() or "(B)" in p.description() for p in params.values())
    assert "*.onnx" in params["MODEL_DEFINITION"].fileFilter() and "*.emd" in params["MODEL_DEFINITION"].fileFilter()


def test_the_summary_says_when_the_model_gives_no_class_colours(qgis_app, tmp_path):
    """A plain ONNX export names its classes but gives no colours: the summary shows the palette the output will
    use and says so; a model definition with its own colours shows those and says nothing of a palette."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from detection_models import yolo_v8_onnx
    from dltools.algorithms.model_summary import model_summary_html

    onnx = yolo_v8_onnx(tmp_path / "yolo.onnx", 64, {0: "car", 1: "truck"})
    text, md = model_summary_html(str(onnx))
    assert md is not None and "no class colours" in text and "colour-blind-safe palette" in text
    assert "background-color:#cc6677" in text and "background-color:#332288" in text  # the palette's first two
    emd = tmp_path / "own.emd"
    emd.write_text(json.dumps({"Framework": "ONNX", "ModelType": "ObjectDetection", "ModelFile": "yolo.onnx",
                               "ImageHeight": 64, "ImageWidth": 64,
                               "Classes": [{"Value": 1, "Name": "car", "Color": [230, 20, 20]},
                                           {"Value": 2, "Name": "truck", "Color": [20, 200, 20]}]}))
    text, md = model_summary_html(str(emd))
    assert md is not None and "palette" not in text and "background-color:#e61414" in text

# SPDX-License-Identifier: GPL-2.0-or-later
"""A Graphical Modeler model chaining the three file tools: Model To Ecd -> Create Package (from the .ecd) ->
Extract Package, saved as .model3, reloaded and run; the extracted model then classifies exactly."""

from __future__ import annotations

import json

import numpy as np
from builders import conv_module, export_onnx, numpy_conv_mirror, read_raster, write_raster
from recording_feedback import RecordingFeedback

WEIGHT = np.array([[[[1]], [[0]]], [[[0]], [[1]]]], np.float32)  # 1x1: class = the larger of the two bands


def test_model3_ecd_package_extract(context, tmp_path):
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
    )

    onnx = export_onnx(conv_module(2, 2, 1, weight=WEIGHT, bias=[0.5, 0.0]), tmp_path / "m.onnx", 2, 8)
    info = tmp_path / "classInfo.json"
    info.write_text(json.dumps({
        "ImportDeepLearningModelToEsriExtraInfo": 0, "Version": 1, "Classifier": "ONNX", "NumberRasterBands": 2,
        "Classes": [{"Value": 10, "Name": "first", "Color": [255, 0, 0]},
                    {"Value": 20, "Name": "second", "Color": [0, 0, 255]}]}))

    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("ecd package extract", "dltools tests")
    model.addModelParameter(QgsProcessingParameterFile("model_file", "Model file"),
                            QgsProcessingModelParameter("model_file"))
    model.addModelParameter(QgsProcessingParameterFile("class_info", "Class info"),
                            QgsProcessingModelParameter("class_info"))

    ecd = QgsProcessingModelChildAlgorithm("dltools:modeltoecd")
    ecd.setChildId("ecd")
    ecd.addParameterSources("MODEL_FILE", [src.fromModelParameter("model_file")])
    ecd.addParameterSources("CLASS_INFO", [src.fromModelParameter("class_info")])
    ecd.addParameterSources("OUTPUT", [src.fromStaticValue(str(tmp_path / "m.ecd"))])
    model.addChildAlgorithm(ecd)

    pkg = QgsProcessingModelChildAlgorithm("dltools:packagemodel")
    pkg.setChildId("pkg")
    pkg.addParameterSources("MODEL_DEFINITION", [src.fromChildOutput("ecd", "OUTPUT")])
    pkg.addParameterSources("TAGS", [src.fromStaticValue("test,modeler")])
    pkg.addParameterSources("OUTPUT", [src.fromStaticValue(str(tmp_path / "m.dlpk"))])
    model.addChildAlgorithm(pkg)

    ext = QgsProcessingModelChildAlgorithm("dltools:extractpackage")
    ext.setChildId("ext")
    ext.addParameterSources("INPUT", [src.fromChildOutput("pkg", "OUTPUT")])
    out = QgsProcessingModelOutput("extracted")
    out.setChildId("ext")
    out.setChildOutputName("OUTPUT_FOLDER")
    ext.setModelOutputs({"extracted": out})
    model.addChildAlgorithm(ext)

    path = tmp_path / "ecd_package_extract.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    assert sorted(c.algorithmId() for c in loaded.childAlgorithms().values()) == [
        "dltools:extractpackage", "dltools:modeltoecd", "dltools:packagemodel"]
    out_name = next(p.name() for p in loaded.destinationParameterDefinitions())
    folder = tmp_path / "extracted"
    result = processing.run(loaded, {"model_file": str(onnx), "class_info": str(info), out_name: str(folder)},
                            context=context, feedback=RecordingFeedback())
    assert result[out_name] == str(folder)
    emds = list(folder.glob("*.emd"))
    assert len(emds) == 1 and (folder / "m.onnx").read_bytes() == onnx.read_bytes()
    emd = json.loads(emds[0].read_text())
    assert emd["QGISPlugin"]["tags"] == "test,modeler"

    # the extracted definition classifies as the model says: band 0 + 0.5 vs band 1
    image = np.random.default_rng(3).integers(0, 5, size=(2, 11, 13)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    classified = tmp_path / "classes.tif"
    processing.run("dltools:classifypixels", {"INPUT": str(raster), "MODEL": str(emds[0]), "ARGUMENTS": "padding 0",
                                              "OUTPUT": str(classified)}, context=context)
    scores = numpy_conv_mirror(image, WEIGHT, np.array([0.5, 0.0]))
    expected = np.where(np.argmax(scores, axis=0) == 0, 10, 20)
    assert np.array_equal(read_raster(classified), expected)

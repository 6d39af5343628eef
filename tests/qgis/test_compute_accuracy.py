# SPDX-License-Identifier: GPL-2.0-or-later
"""Compute Accuracy For Pixel Classification / Object Detection through processing.run, qgis_process and a .model3
(Classify Pixels -> Compute Accuracy): hand-made rasters and polygons with a known confusion matrix, kappa, TP/FP/FN
and AP."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from builders import conv_module, export_onnx, write_emd, write_raster

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

PIXELS = "dltools:computeaccuracypixelclassification"
OBJECTS = "dltools:computeaccuracyobjectdetection"
X0, Y0 = 500000.0, 4000000.0
CLASSIFIED = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 2, 255]], np.uint8)
REFERENCE = np.array([[10, 10, 11, 11], [10, 11, 11, 11], [12, 10, 11, 12], [12, 12, 12, 12]], np.uint8)
EXPECTED = [[3, 1, 0], [0, 5, 1], [1, 0, 4]]
KAPPA = (12 / 15 - 77 / 225) / (1 - 77 / 225)


def table(path) -> list[dict]:
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(str(path), "t", "ogr")
    assert layer.isValid(), path
    return [dict(zip(layer.fields().names(), f.attributes())) for f in layer.getFeatures()]


@pytest.fixture
def rasters(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED, origin=(X0, Y0), nodata=255)
    reference = write_raster(tmp_path / "reference.tif", REFERENCE, origin=(X0, Y0))
    return classified, reference


def test_pixel_accuracy_processing_run(context, rasters, tmp_path):
    import processing

    classified, reference = rasters
    html = tmp_path / "report.html"
    result = processing.run(PIXELS, {
        "INPUT": str(classified), "REFERENCE": str(reference), "CLASS_MAPPING": "10:0;11:1;12:2",
        "OUTPUT": str(tmp_path / "matrix.csv"), "OUTPUT_METRICS": str(tmp_path / "metrics.csv"),
        "OUTPUT_HTML": str(html)}, context=context)
    assert result["KAPPA"] == pytest.approx(KAPPA)
    assert result["OVERALL_ACCURACY"] == pytest.approx(0.8)
    rows = table(tmp_path / "matrix.csv")
    assert [r["ClassValue"] for r in rows] == ["C_0", "C_1", "C_2", "Total", "P_Accuracy", "Kappa"]
    assert [[float(r[f"C_{j}"]) for j in range(3)] for r in rows[:3]] == EXPECTED
    assert float(rows[0]["U_Accuracy"]) == pytest.approx(0.75)
    assert float(rows[4]["C_1"]) == pytest.approx(5 / 6)
    assert float(rows[4]["U_Accuracy"]) == pytest.approx(0.8)
    assert float(rows[5]["Kappa"]) == pytest.approx(KAPPA)
    metrics = table(tmp_path / "metrics.csv")
    assert [(m["ClassValue"], int(m["Classified"]), int(m["Reference"])) for m in metrics] == [
        ("0", 4, 4), ("1", 6, 6), ("2", 5, 5)]
    assert float(metrics[0]["IoU"]) == pytest.approx(0.6)
    assert "background: rgb(" in html.read_text()


def test_pixel_accuracy_with_polygons_and_a_bad_mapping(context, rasters, tmp_path):
    import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsProcessingException, QgsVectorLayer

    classified, _ = rasters
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=Value:integer", "ref", "memory")
    f = QgsFeature(layer.fields())
    f.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({X0} {Y0},{X0 + 2} {Y0},{X0 + 2} {Y0 - 4},{X0} {Y0 - 4},{X0} {Y0}))"))
    f.setAttributes([0])
    layer.dataProvider().addFeatures([f])
    result = processing.run(PIXELS, {"INPUT": str(classified), "REFERENCE": layer, "OUTPUT": "memory:",
                                     "OUTPUT_METRICS": "memory:"}, context=context)
    assert result["OVERALL_ACCURACY"] == pytest.approx(0.5)  # the left half: four 0 and four 2 against 0
    with pytest.raises(QgsProcessingException, match="CLASS_MAPPING"):
        processing.run(PIXELS, {"INPUT": str(classified), "REFERENCE": layer, "CLASS_MAPPING": "zero:1",
                                "OUTPUT": "memory:", "OUTPUT_METRICS": "memory:"}, context=context)


def polygons(rows, fields, crs="EPSG:32633"):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    layer = QgsVectorLayer(f"Polygon?crs={crs}&{fields}", "objects", "memory")
    feats = []
    for wkt, *attrs in rows:
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        f.setAttributes(list(attrs))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def box(x0, y0, x1, y1) -> str:
    return f"POLYGON(({X0 + x0} {Y0 + y0},{X0 + x1} {Y0 + y0},{X0 + x1} {Y0 + y1},{X0 + x0} {Y0 + y1},{X0 + x0} {Y0 + y0}))"


DETECTIONS = [(box(0, 0, 10, 10), "car", 90.0), (box(0, 0, 10, 10), "car", 80.0), (box(30, 30, 40, 40), "car", 80.0),
              (box(100, 0, 110, 10), "tree", 40.0)]
TRUTHS = [(box(0, 0, 10, 10), "car"), (box(1, 0, 11, 10), "car"), (box(50, 50, 60, 60), "car"),
          (box(100, 0, 110, 10), "tree")]


def test_object_accuracy_processing_run(context, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    dets = polygons(DETECTIONS, "field=ClassValue:string&field=Confidence:double")
    truths = polygons(TRUTHS, "field=Classvalue:string")
    html = tmp_path / "objects.html"
    result = processing.run(OBJECTS, {"DETECTED_FEATURES": dets, "GROUND_TRUTH_FEATURES": truths,
                                      "OUTPUT": str(tmp_path / "acc.csv"), "OUTPUT_HTML": str(html)}, context=context)
    rows = table(tmp_path / "acc.csv")
    assert [(r["Class"], int(r["True_Positive"]), int(r["False_Positive"]), int(r["False_Negative"])) for r in rows] == [
        ("car", 2, 1, 1), ("tree", 1, 0, 0), ("All classes", 3, 1, 1)]
    assert float(rows[0]["AP"]) == pytest.approx(2 / 3)
    assert float(rows[2]["AP"]) == pytest.approx((2 / 3 + 1) / 2) and float(rows[2]["Precision"]) == pytest.approx(0.75)
    assert result["MEAN_AP"] == pytest.approx((2 / 3 + 1) / 2)
    assert html.read_text().count("<svg") == 2
    # no class field on either side (nor Classvalue / Value): everything is one class, as ArcGIS does
    one = polygons([(w, c) for w, _, c in DETECTIONS], "field=Confidence:double")
    plain = polygons([(w, "x") for w, _ in TRUTHS], "field=Name:string")
    result = processing.run(OBJECTS, {"DETECTED_FEATURES": one, "GROUND_TRUTH_FEATURES": plain, "OUTPUT": "memory:"},
                            context=context)
    rows = [f.attributes() for f in result["OUTPUT"].getFeatures()]
    assert [(r[0], r[5], r[6], r[7]) for r in rows] == [("", 3, 1, 1), ("All classes", 3, 1, 1)]
    with pytest.raises(QgsProcessingException, match="no field 'Kind'"):
        processing.run(OBJECTS, {"DETECTED_FEATURES": dets, "GROUND_TRUTH_FEATURES": truths,
                                 "GROUND_TRUTH_CLASS_FIELD": "Kind", "OUTPUT": "memory:"}, context=context)


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process is not installed")
def test_qgis_process_both(tmp_path, rasters, qgis_app):
    from qgis.core import QgsVectorFileWriter

    classified, reference = rasters
    answer = qgis_process_util.qgis_process_json(PIXELS, {
        "INPUT": str(classified), "REFERENCE": str(reference), "CLASS_MAPPING": "10:0;11:1;12:2",
        "OUTPUT": str(tmp_path / "m.csv"), "OUTPUT_METRICS": str(tmp_path / "k.csv")}, tmp_path)
    assert float(answer["results"]["KAPPA"]) == pytest.approx(KAPPA)
    assert "nearest neighbour" in str(answer["log"])
    files = {}
    for name, rows, fields in (("dets", DETECTIONS, "field=Value:string&field=Confidence:double"),
                               ("truths", TRUTHS, "field=Classvalue:string")):
        layer = polygons(rows, fields)
        files[name] = tmp_path / f"{name}.gpkg"
        QgsVectorFileWriter.writeAsVectorFormat(layer, str(files[name]), "utf-8", layer.crs(), "GPKG")
    answer = qgis_process_util.qgis_process_json(OBJECTS, {
        "DETECTED_FEATURES": str(files["dets"]), "GROUND_TRUTH_FEATURES": str(files["truths"]),
        "OUTPUT": str(tmp_path / "o.csv")}, tmp_path)
    assert float(answer["results"]["MEAN_AP"]) == pytest.approx((2 / 3 + 1) / 2)
    assert "Mean average precision (mAP) at IoU 0.5" in str(answer["log"])


def test_model3_classify_pixels_then_compute_accuracy(context, tmp_path):
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )

    rng = np.random.default_rng(3)
    image = np.stack([rng.permutation(3) for _ in range(20 * 24)]).T.reshape(3, 20, 24).astype(np.uint8)
    raster = write_raster(tmp_path / "image.tif", image, origin=(X0, Y0))
    export_onnx(conv_module(3, 3, 1, weight=np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)), tmp_path / "id.onnx", 3, 16)
    emd = write_emd(tmp_path / "id.emd", "id.onnx", tile=16,
                    classes=[(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))])
    predicted = np.array([1, 2, 5])[np.argmax(image, axis=0)]
    truth = predicted.copy()
    truth[0, :6] = 5  # six pixels wrong
    reference = write_raster(tmp_path / "truth.tif", truth.astype(np.uint8), origin=(X0, Y0))
    src = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("classify and assess", "dltools tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("image", "Image"), QgsProcessingModelParameter("image"))
    model.addModelParameter(QgsProcessingParameterFile("model", "Model"), QgsProcessingModelParameter("model"))
    model.addModelParameter(QgsProcessingParameterRasterLayer("truth", "Truth"), QgsProcessingModelParameter("truth"))
    classify = QgsProcessingModelChildAlgorithm("dltools:classifypixels")
    classify.setChildId("classify")
    classify.addParameterSources("INPUT", [src.fromModelParameter("image")])
    classify.addParameterSources("MODEL", [src.fromModelParameter("model")])
    model.addChildAlgorithm(classify)
    assess = QgsProcessingModelChildAlgorithm(PIXELS)
    assess.setChildId("assess")
    assess.addParameterSources("INPUT", [src.fromChildOutput("classify", "OUTPUT")])
    assess.addParameterSources("REFERENCE", [src.fromModelParameter("truth")])
    outputs = {}
    for name, child_output in (("matrix", "OUTPUT"), ("metrics", "OUTPUT_METRICS")):
        out = QgsProcessingModelOutput(name)
        out.setChildId("assess")
        out.setChildOutputName(child_output)
        outputs[name] = out
    assess.setModelOutputs(outputs)
    model.addChildAlgorithm(assess)
    path = tmp_path / "classify_assess.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    result = processing.run(loaded, {"image": str(raster), "model": str(emd), "truth": str(reference),
                                     "assess:matrix": str(tmp_path / "matrix.csv"),
                                     "assess:metrics": str(tmp_path / "metrics.csv")}, context=context)
    rows = table(result["assess:matrix"])
    wrong = (truth != predicted)
    assert sum(float(r[f"C_{v}"]) for r in rows[:3] for v in (1, 2, 5) if r["ClassValue"] == f"C_{v}") == \
        20 * 24 - wrong.sum()
    assert float(rows[-2]["U_Accuracy"]) == pytest.approx(1 - wrong.mean())  # overall accuracy

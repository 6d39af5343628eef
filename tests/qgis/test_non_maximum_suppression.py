# SPDX-License-Identifier: GPL-2.0-or-later
"""Non Maximum Suppression through processing.run and qgis_process: hand-made polygons, known survivors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

ALG = "dltools:nonmaximumsuppression"


def polygon_layer(rows: list[tuple[str, float | None, object]], class_field: str | None = "Class",
                  geometry: str = "Polygon", conf_type: str = "double"):
    """A memory layer with (wkt, confidence, class) rows; the id field records the input order."""
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    fields = f"field=id:integer&field=Confidence:{conf_type}" + (f"&field={class_field}:string" if class_field else "")
    layer = QgsVectorLayer(f"{geometry}?crs=EPSG:32633&{fields}", "dets", "memory")
    feats = []
    for i, (wkt, conf, cls) in enumerate(rows):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        attrs = [i, conf] + ([cls] if class_field else [])
        f.setAttributes(attrs)
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def rect(x1, y1, x2, y2) -> str:
    return f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))"


CHAIN = [(rect(0, 0, 10, 10), 95.0, "car"), (rect(8, 0, 18, 10), 90.0, "truck"), (rect(16, 0, 26, 10), 80.0, "truck")]


def survivors(result) -> list[int]:
    from qgis.core import QgsProcessingUtils

    layer = result["OUTPUT"]
    if isinstance(layer, str):
        layer = QgsProcessingUtils.mapLayerFromString(layer, result["context"]) if "context" in result else None
    return sorted(f["id"] for f in layer.getFeatures())


def run(context, layer, **params):
    import processing

    params = {"INPUT": layer, "OUTPUT": "memory:", **params}
    return processing.run(ALG, params, context=context)


def test_chain_two_pass_and_single_class(context):
    layer = polygon_layer(CHAIN)
    # per class first (truck: 90 removes 80), then across classes (car 95 removes truck 90): only the car
    assert survivors(run(context, layer, CLASS_FIELD="Class")) == [0]
    # no class field and no Classvalue/Value: one class, plain greedy keeps the third (its remover is gone)
    assert survivors(run(context, layer)) == [0, 2]
    out = run(context, layer, CLASS_FIELD="Class")["OUTPUT"]
    feat = next(out.getFeatures())
    assert feat["Class"] == "car" and feat["Confidence"] == 95.0 and out.crs().authid() == "EPSG:32633"


def test_classvalue_fallback_and_ratio(context):
    layer = polygon_layer(CHAIN, class_field="Classvalue")
    assert survivors(run(context, layer)) == [0]  # Classvalue used: two-pass
    assert survivors(run(context, layer, MAX_OVERLAP_RATIO=0.12)) == [0, 1, 2]  # IoU 20/180 = 0.111


def test_same_class_duplicates_and_attributes_kept(context):
    rows = [(rect(0, 0, 10, 10), 50.0, "a"), (rect(1, 1, 11, 11), 70.0, "a"), (rect(100, 0, 110, 10), 10.0, "a"),
            ("POLYGON((200 0,210 0,200 10,200 0))", 20.0, "b"), ("POLYGON((210 10,210 2,202 10,210 10))", 30.0, "b")]
    out = run(context, polygon_layer(rows), CLASS_FIELD="Class", MAX_OVERLAP_RATIO=0.5)["OUTPUT"]
    assert sorted(f["id"] for f in out.getFeatures()) == [1, 2, 3, 4]  # the two triangles do not overlap
    assert [f.name() for f in out.fields()] == ["id", "Confidence", "Class"]


def test_clear_errors(context):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="no field 'Score'"):
        run(context, polygon_layer(CHAIN), CONFIDENCE_FIELD="Score")
    with pytest.raises(QgsProcessingException, match="not a number|numeric"):
        run(context, polygon_layer(CHAIN, conf_type="string"), CONFIDENCE_FIELD="Class")
    with pytest.raises(QgsProcessingException, match="no features"):
        run(context, polygon_layer([]))
    with pytest.raises(QgsProcessingException, match="no confidence"):
        run(context, polygon_layer([(rect(0, 0, 1, 1), None, "a")]))
    points = polygon_layer([("POINT(1 1)", 1.0, "a")], geometry="Point")
    with pytest.raises(QgsProcessingException, match="polygon|Polygon|Point"):
        run(context, points)


def test_many_features_are_fast(context):
    import time

    rows = []
    for k in range(20000):
        x, y = (k % 200) * 12.0, (k // 200) * 12.0
        rows.append((rect(x, y, x + 10, y + 10), float(k % 97), "a"))
        if k % 10 == 0:
            rows.append((rect(x + 1, y, x + 11, y + 10), float(k % 97) - 0.5, "a"))  # a weaker duplicate
    layer = polygon_layer(rows)
    start = time.perf_counter()
    out = run(context, layer, CLASS_FIELD="Class")["OUTPUT"]
    seconds = time.perf_counter() - start
    assert out.featureCount() == 20000
    assert seconds < 60  # generous: 2 shared cores; `make bench` measures the speed


@pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process is not installed")
def test_qgis_process(tmp_path, qgis_app):
    from qgis.core import QgsVectorFileWriter, QgsVectorLayer

    layer = polygon_layer(CHAIN)
    src = tmp_path / "dets.gpkg"
    QgsVectorFileWriter.writeAsVectorFormat(layer, str(src), "utf-8", layer.crs(), "GPKG")
    out = tmp_path / "kept.gpkg"
    answer = qgis_process_util.qgis_process_json(ALG, {"INPUT": str(src), "CLASS_FIELD": "Class",
                                                       "OUTPUT": str(out)}, tmp_path)
    assert "3 features in, 1 kept, 2 removed" in str(answer["log"])
    kept = QgsVectorLayer(str(out), "kept", "ogr")
    assert [f["id"] for f in kept.getFeatures()] == [0]
    message = qgis_process_util.qgis_process_failure(ALG, {"INPUT": str(src), "CONFIDENCE_FIELD": "Nope",
                                                           "OUTPUT": str(tmp_path / "x.gpkg")}, tmp_path)
    assert "Nope" in message

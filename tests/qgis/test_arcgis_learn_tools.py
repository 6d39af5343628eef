# SPDX-License-Identifier: GPL-2.0-or-later
"""arcgis.learn packages in the real tools: processing.run and qgis_process for Classify Pixels (UnetClassifier),
Classify Objects (FeatureClassifier) and Detect Objects (SingleShotDetector), and Describe Model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from arcgis_learn_builders import (  # noqa: E402
    arcgis_emd,
    decoded_detections,
    imagenet_normalise,
    reference_feature_classifier,
    reference_ssd,
    reference_unet,
    write_package,
)
from builders import read_raster, write_raster  # noqa: E402
from osgeo import ogr  # noqa: E402
from recording_feedback import RecordingFeedback  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/qgis is not on sys.path (importlib mode)
import qgis_process_util  # noqa: E402

needs_qgis_process = pytest.mark.skipif(not qgis_process_util.available(), reason="qgis_process.bin is not installed")
SIZE = 64


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("arcgis_learn")
    image = np.random.default_rng(21).integers(0, 256, (3, SIZE, SIZE)).astype(np.uint8)
    raster = write_raster(folder / "scene.tif", image, origin=(0.0, float(SIZE)))
    unet = reference_unet("resnet18", 2, 32, seed=22)
    unet_emd = arcgis_emd("UnetClassifier", "resnet18", 2, 32, model_type="ImageClassification", config="_unet",
                          values=[1, 4])
    fc = reference_feature_classifier("resnet18", 2, seed=23)
    fc_emd = arcgis_emd("FeatureClassifier", "resnet18", 2, 32, model_type="ObjectClassification",
                        config="_FeatureClassifier", CropSizeFixed=1, BlackenAroundFeature=0)
    ssd_emd = arcgis_emd("SingleShotDetector", "resnet34", 2, SIZE, model_type="ObjectDetection",
                         config="_DynamicSSD", Grids=[2, 1], Zooms=[1.0], Ratios=[[1.0, 1.0]])
    ssd = reference_ssd("resnet34", 2, SIZE, ssd_emd, seed=24)
    features = folder / "features.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(features))
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    layer = ds.CreateLayer("features", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    centres = [(20, 20), (40, 30), (30, 44)]
    for i, (cx, cy) in enumerate(centres):
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("name", f"f{i}")
        x0, x1, y0, y1 = cx - 4, cx + 4, SIZE - cy - 4, SIZE - cy + 4
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"))
        layer.CreateFeature(f)
    ds = None
    with torch.no_grad():
        tiles = np.stack([image[:, r:r + 32, c:c + 32] for r in (0, 32) for c in (0, 32)])
        idx = unet(torch.from_numpy(imagenet_normalise(tiles))).numpy().argmax(axis=1)
        classes = np.zeros((SIZE, SIZE), np.int64)
        for k, (r, c) in enumerate([(0, 0), (0, 32), (32, 0), (32, 32)]):
            classes[r:r + 32, c:c + 32] = np.array([0, 1, 4])[idx[k]]
        chips = np.stack([image[:, cy - 16:cy + 16, cx - 16:cx + 16] for cx, cy in centres])
        labels = [f"class{1 + int(i)}" for i in fc(torch.from_numpy(imagenet_normalise(chips))).numpy().argmax(axis=1)]
    return {
        "folder": folder, "raster": raster, "features": features, "expected_classes": classes,
        "expected_labels": labels,
        "unet": write_package(folder / "unet", unet_emd, unet.state_dict()),
        "fc": write_package(folder / "fc", fc_emd, fc.state_dict(), form="model"),
        "ssd": write_package(folder / "ssd", ssd_emd, ssd.state_dict()),
    }


def _run(alg: str, params: dict, context) -> tuple[dict, RecordingFeedback]:
    import processing

    feedback = RecordingFeedback()
    return processing.run(alg, params, context=context, feedback=feedback), feedback


def _no_python_ran(case: dict) -> None:
    assert not list(Path(case["folder"]).rglob("IMPORTED_ARCGIS_PY"))


def _ssd_expected(case: dict) -> int:
    from dltools.core.backends import open_backend
    from dltools.core.backends.base import DeviceRequest
    from dltools.core.model.loader import load_model_definition

    md = load_model_definition(case["ssd"])
    backend = open_backend(md.model_file, md.model_format_kind, DeviceRequest("cpu"), definition=md.raw)
    image = read_raster(case["raster"])[None]
    found = decoded_detections(backend, imagenet_normalise(image), threshold=0.5, nms_overlap=0.1)[0]
    return len(found["scores"])


def test_processing_run_each_tool(case, context, tmp_path):
    from qgis.core import QgsVectorLayer

    out = tmp_path / "classes.tif"
    _, feedback = _run("dltools:classifypixels", {"INPUT": str(case["raster"]), "MODEL": str(case["unet"]),
                                                  "ARGUMENTS": "padding 0", "DEVICE": 1, "OUTPUT": str(out)}, context)
    assert np.array_equal(read_raster(out), case["expected_classes"])
    assert any("arcgis.learn UnetClassifier, resnet18" in line for line in feedback.infos)

    objects = tmp_path / "objects.gpkg"
    _run("dltools:classifyobjects", {"INPUT": str(case["raster"]), "FEATURES": str(case["features"]),
                                     "MODEL": str(case["fc"]), "DEVICE": 1, "OUTPUT": str(objects)}, context)
    layer = QgsVectorLayer(str(objects), "objects", "ogr")
    assert [f["ClassLabel"] for f in layer.getFeatures()] == case["expected_labels"]

    detections = tmp_path / "detections.gpkg"
    _, feedback = _run("dltools:detectobjects", {"INPUT": str(case["raster"]), "MODEL": str(case["ssd"]),
                                                 "ARGUMENTS": "padding 0", "DEVICE": 1, "OUTPUT": str(detections)},
                       context)
    layer = QgsVectorLayer(str(detections), "detections", "ogr")
    assert layer.featureCount() == _ssd_expected(case) > 0
    assert {f["Class"] for f in layer.getFeatures()} <= {"class1", "class2"}
    _no_python_ran(case)


def test_describe_model_names_the_family(case, context, tmp_path):
    report_path = tmp_path / "d.json"
    _, feedback = _run("dltools:describemodel", {"MODEL": str(case["ssd"]), "OUTPUT_JSON": str(report_path),
                                                 "OUTPUT_HTML": str(tmp_path / "d.html")}, context)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["arcgis_learn"]["family"] == ("arcgis.learn SingleShotDetector, resnet34 with an SSD head, rebuilt "
                                                "with torchvision and the plugin's fastai-v1 modules")
    assert any(line.startswith("Architecture: arcgis.learn SingleShotDetector") and "threshold 0.5, nms_overlap 0.1"
               in line for line in feedback.infos)
    assert "Architecture" in (tmp_path / "d.html").read_text(encoding="utf-8")


@needs_qgis_process
def test_qgis_process_each_tool(case, tmp_path):
    out = tmp_path / "qp.tif"
    qgis_process_util.qgis_process_json("dltools:classifypixels", {
        "INPUT": case["raster"], "MODEL": case["unet"], "ARGUMENTS": "padding 0", "DEVICE": 1, "OUTPUT": out}, tmp_path)
    assert np.array_equal(read_raster(out), case["expected_classes"])
    objects = tmp_path / "qp.gpkg"
    qgis_process_util.qgis_process_json("dltools:classifyobjects", {
        "INPUT": case["raster"], "FEATURES": case["features"], "MODEL": case["fc"], "DEVICE": 1, "OUTPUT": objects},
        tmp_path)
    ds = ogr.Open(str(objects))
    assert [f.GetField("ClassLabel") for f in ds.GetLayer()] == case["expected_labels"]
    ds = None
    detections = tmp_path / "qp_det.gpkg"
    answer = qgis_process_util.qgis_process_json("dltools:detectobjects", {
        "INPUT": case["raster"], "MODEL": case["ssd"], "ARGUMENTS": "padding 0", "DEVICE": 1, "OUTPUT": detections},
        tmp_path)
    assert "after the seam merge" in str(answer["log"])
    ds = ogr.Open(str(detections))
    assert ds.GetLayer().GetFeatureCount() == _ssd_expected(case) > 0
    ds = None
    message = qgis_process_util.qgis_process_failure("dltools:classifypixels", {
        "INPUT": case["raster"], "MODEL": _refused(case), "OUTPUT": tmp_path / "x.tif"}, tmp_path)
    assert "arcgis.learn model 'MMSegmentation' cannot be run: it is built by MMSegmentation" in message
    _no_python_ran(case)


def _refused(case: dict) -> Path:
    folder = Path(case["folder"]) / "refused"
    folder.mkdir(exist_ok=True)
    emd = arcgis_emd("MMSegmentation", "deeplabv3", 2, 32, model_type="ImageClassification", config="_mmseg")
    (folder / "MMSegmentation.pth").write_bytes(b"never read")
    path = folder / "mmseg.emd"
    path.write_text(json.dumps(emd), encoding="utf-8")
    return path


def test_classify_pixels_on_a_local_cluster(case, context, tmp_path):
    """SCHEDULER local:1: the worker rebuilds the UnetClassifier from the shipped .pth and the definition."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    out = tmp_path / "dask.tif"
    _, feedback = _run("dltools:classifypixels", {"INPUT": str(case["raster"]), "MODEL": str(case["unet"]),
                                                  "ARGUMENTS": "padding 0;block_size 32", "DEVICE": 1,
                                                  "SCHEDULER": "local:1", "OUTPUT": str(out)}, context)
    assert np.array_equal(read_raster(out), case["expected_classes"])
    assert any(line.startswith("Dask: ") for line in feedback.infos)
    _no_python_ran(case)


def _detections(path: Path) -> list[tuple]:
    ds = ogr.Open(str(path))
    found = sorted((f.GetGeometryRef().ExportToWkt(), f.GetField("Class"), round(f.GetField("Confidence"), 4))
                   for f in ds.GetLayer())
    ds = None
    return found


def test_detect_objects_on_a_local_cluster_uses_the_runs_threshold(case, context, tmp_path):
    """SCHEDULER local:1: the worker's rebuilt SingleShotDetector thresholds inside the network with the run's
    threshold and nms_overlap (not the family's 0.5 / 0.1), so it finds the same objects as in-process."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    params = {"INPUT": str(case["raster"]), "MODEL": str(case["ssd"]),
              "ARGUMENTS": "padding 0;threshold 0.3;nms_overlap 0.5", "DEVICE": 1}
    _run("dltools:detectobjects", {**params, "OUTPUT": str(tmp_path / "here.gpkg")}, context)
    _, feedback = _run("dltools:detectobjects", {**params, "SCHEDULER": "local:1",
                                                 "OUTPUT": str(tmp_path / "dask.gpkg")}, context)
    here = _detections(tmp_path / "here.gpkg")
    assert any(line.startswith("Dask: ") and "ran on 1 worker" in line for line in feedback.infos)
    assert _detections(tmp_path / "dask.gpkg") == here
    assert len(here) > _ssd_expected(case)  # more than the family's threshold 0.5 keeps: the 0.3 reached the net
    assert min(conf for _, _, conf in here) < 50.0
    _no_python_ran(case)


def test_detect_objects_runs_version_one_ssds_and_refuses_grids_version_one_cannot_build(case, context, tmp_path):
    """No SSDVersion (or 1) in the .emd means arcgis.learn's version-1 head: on grids [4] from a 2 x 2 map it pads
    by 2 where version 2 upsamples, with the same weights; Detect Objects finds what that head decodes.  Grids [14]
    no version-1 convolution reaches: refused by name, nothing written."""
    from qgis.core import QgsProcessingException, QgsVectorLayer

    trained = arcgis_emd("SingleShotDetector", "resnet18", 2, SIZE, model_type="ObjectDetection",
                         config="_DynamicSSD", Grids=[4], Zooms=[1.0], Ratios=[[1.0, 1.0]], SSDVersion=1)
    state = reference_ssd("resnet18", 2, SIZE, trained, seed=21).state_dict()
    v1 = {"ssd": write_package(tmp_path / "v1", trained, state), "raster": case["raster"]}
    out = tmp_path / "v1.gpkg"
    _run("dltools:detectobjects", {"INPUT": str(case["raster"]), "MODEL": str(v1["ssd"]), "ARGUMENTS": "padding 0",
                                   "DEVICE": 1, "OUTPUT": str(out)}, context)
    assert QgsVectorLayer(str(out), "v1", "ogr").featureCount() == _ssd_expected(v1) > 0
    unbuildable = write_package(tmp_path / "v14", dict(trained, Grids=[14]), state)
    out = tmp_path / "v14.gpkg"
    with pytest.raises(QgsProcessingException, match=r"SSDVersion 1 and Grids \[14\] on 64-pixel chips"):
        _run("dltools:detectobjects", {"INPUT": str(case["raster"]), "MODEL": str(unbuildable), "DEVICE": 1,
                                       "OUTPUT": str(out)}, context)
    assert not out.exists()

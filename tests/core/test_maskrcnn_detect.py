# SPDX-License-Identifier: GPL-2.0-or-later
"""A real torchvision Mask R-CNN, scripted with torch.jit.script as arcgis.learn exports it, runs end to end
through Detect Objects; each output polygon covers the model's own mask (threshold 0.5) with IoU >= 0.95."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import write_raster
from dltools.core.model.loader import load_model_definition
from dltools.core.tools.detect_objects.pipeline import detect_objects
from dltools.core.trust import CodeTrust
from osgeo import gdal, ogr

TRUSTED = CodeTrust.all()  # these tests' own TorchScript files

TILE = 128
GT = (500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5)


def rasterise(wkb: bytes, size: int) -> np.ndarray:
    ds = gdal.GetDriverByName("MEM").Create("", size, size, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(GT)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = mem.CreateLayer("p", geom_type=ogr.wkbMultiPolygon)
    feat = ogr.Feature(layer.GetLayerDefn())
    feat.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
    layer.CreateFeature(feat)
    gdal.RasterizeLayer(ds, [1], layer, burn_values=[1])
    return ds.ReadAsArray().astype(bool)


def test_scripted_maskrcnn_end_to_end(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=TILE, max_size=TILE, box_detections_per_img=20)
    scripted = torch.jit.script(net.eval())
    model = tmp_path / "maskrcnn.pt"
    torch.jit.save(scripted, str(model))
    emd = tmp_path / "maskrcnn.emd"
    emd.write_text(json.dumps({
        "Framework": "PyTorch", "ModelConfiguration": "MaskRCNN", "ModelType": "InstanceDetection",
        "ModelFile": "maskrcnn.pt", "ImageHeight": TILE, "ImageWidth": TILE, "ExtractBands": [0, 1, 2],
        "Classes": [{"Value": 1, "Name": "building", "Color": [200, 0, 0]},
                    {"Value": 2, "Name": "pool", "Color": [0, 0, 200]}]}))
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (3, TILE, TILE)).astype(np.float32)  # 0-1 floats: what torchvision expects
    raster = write_raster(tmp_path / "img.tif", image, origin=(GT[0], GT[3]), cell=GT[1])

    result = detect_objects(str(raster), load_model_definition(str(emd), trust=TRUSTED), "padding 0;batch_size 1;threshold 0.3")
    assert result.layout == "torchvision" and result.geometry_type == "MultiPolygon"
    with torch.inference_mode():
        _, detections = scripted([torch.from_numpy(image)])
    det = {k: v.numpy() for k, v in detections[0].items()}
    keep = det["scores"] >= 0.3
    assert keep.sum() >= 1 and len(result.objects) >= 1
    kept_boxes = torchvision.ops.batched_nms(torch.from_numpy(det["boxes"][keep]), torch.from_numpy(det["scores"][keep]),
                                             torch.from_numpy(det["labels"][keep]), 0.1).numpy()
    empty = [i for i in kept_boxes if not (det["masks"][np.nonzero(keep)[0][i], 0] > 0.5).any()]
    # threshold, then NMS at nms_overlap 0.1 per class; an instance with an empty mask is no object
    assert len(result.objects) == len(kept_boxes) - len(empty)
    names = {1: "building", 2: "pool"}
    for obj in result.objects:
        k = int(np.argmin(np.abs(det["scores"] * 100 - obj.confidence)))
        assert obj.confidence == pytest.approx(det["scores"][k] * 100, abs=1e-3)
        assert obj.class_value == int(det["labels"][k]) and obj.class_name == names[obj.class_value]
        mask = det["masks"][k, 0] > 0.5
        drawn = rasterise(obj.wkb, TILE)
        iou = (mask & drawn).sum() / (mask | drawn).sum()
        assert iou >= 0.95, (k, iou)
        assert ogr.CreateGeometryFromWkb(obj.wkb).GetArea() == pytest.approx(mask.sum() * GT[1] ** 2)

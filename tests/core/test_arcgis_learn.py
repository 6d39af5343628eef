# SPDX-License-Identifier: GPL-2.0-or-later
"""Models trained with arcgis.learn: rebuilt networks against reference networks built in the test.

Each case builds the reference network (torchvision directly, or the fastai-v1 reference modules), gives it
seeded random weights, saves its state_dict the way arcgis.learn does (bare, or ``{"model": ...}``), writes the
.emd arcgis.learn writes and zips both with a dummy ``ArcGIS*.py`` into a .dlpk; the tool's output must equal
the reference network's on the same normalised chips, and the dummy Python must never be imported.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from arcgis_learn_builders import (  # noqa: E402
    arcgis_emd,
    decoded_detections,
    imagenet_normalise,
    reference_deeplab,
    reference_feature_classifier,
    reference_rcnn,
    reference_retinanet,
    reference_ssd,
    reference_unet,
    write_package,
)
from builders import read_raster, write_raster  # noqa: E402
from dltools.core.backends import open_backend  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.engine.normalize import build_normaliser  # noqa: E402
from dltools.core.errors import BackendError, DependencyMissingError, ModelDefinitionError  # noqa: E402
from dltools.core.model.loader import load_model_definition  # noqa: E402
from dltools.core.tools.classify_objects.classifier import classify_objects  # noqa: E402
from dltools.core.tools.classify_pixels.pipeline import classify_pixels  # noqa: E402

CPU = DeviceRequest("cpu")


def _no_python_ran(dlpk_or_dir) -> None:
    """Neither the ArcGIS*.py nor a ModelConfiguration.py left its marker anywhere near the package."""
    from pathlib import Path

    root = Path(dlpk_or_dir).parent
    assert not list(root.rglob("IMPORTED_ARCGIS_PY")), "an ArcGIS*.py of the package was imported"
    assert not list(root.rglob("MODEL_CONFIGURATION_RAN")), "ModelConfiguration.py was executed"
    cache = Path(__import__("os").environ["DLTOOLS_CACHE_DIR"])
    if cache.exists():
        assert not list(cache.rglob("IMPORTED_ARCGIS_PY")) and not list(cache.rglob("MODEL_CONFIGURATION_RAN"))


def _tiles(image: np.ndarray, tile: int) -> np.ndarray:
    """The (B, C, tile, tile) chips of an image whose sides are multiples of tile, row by row."""
    c, h, w = image.shape
    return np.stack([image[:, r:r + tile, q:q + tile] for r in range(0, h, tile) for q in range(0, w, tile)])


def _stitch(chips: np.ndarray, h: int, w: int) -> np.ndarray:
    tile = chips.shape[-1]
    out = np.zeros((h, w), chips.dtype)
    k = 0
    for r in range(0, h, tile):
        for q in range(0, w, tile):
            out[r:r + tile, q:q + tile] = chips[k]
            k += 1
    return out


def _reference_classes(net, normalised: np.ndarray, lut: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = net(torch.from_numpy(normalised))
    out = out["out"] if isinstance(out, dict) else out
    return np.asarray(lut)[out.numpy().argmax(axis=1)]


# ------------------------------------------------------------------------------------------ pixel models
def test_unet_classifier_through_classify_pixels(tmp_path):
    chip = 64
    net = reference_unet("resnet34", 2, chip, seed=1)
    emd = arcgis_emd("UnetClassifier", "resnet34", 2, chip, model_type="ImageClassification", config="_unet",
                     values=[2, 5])
    dlpk = write_package(tmp_path, emd, net.state_dict(), form="bare")
    image = np.random.default_rng(3).integers(0, 256, (3, 128, 128)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    md = load_model_definition(dlpk)
    assert md.model_format_kind == "arcgis_learn"
    assert md.arcgis_family.title == ("arcgis.learn UnetClassifier, resnet34 fastai-v1 DynamicUnet, rebuilt with "
                                      "torchvision and the plugin's fastai-v1 modules")
    out = tmp_path / "classes.tif"
    result = classify_pixels(str(raster), md, str(out), "padding 0;batch_size 4", device=CPU)
    assert result.tiles == 4
    expected = _stitch(_reference_classes(net, imagenet_normalise(_tiles(image, chip)), [0, 2, 5]), 128, 128)
    got = read_raster(out)
    assert np.array_equal(got, expected)
    assert len(np.unique(got)) >= 2  # the comparison is not between two constant images
    _no_python_ran(dlpk)


def test_unet_classifier_key_layout_is_fastai_v1():
    """The documented fastai-v1 DynamicUnet layout: layers 0 body .. 11 final 1x1 conv, channel counts for resnet34."""
    import torchvision
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    emd = arcgis_emd("UnetClassifier", "resnet34", 3, 64, model_type="ImageClassification", config="_unet")
    sd = build_module(resolve_family(emd), emd, torchvision).state_dict()
    tops = sorted({int(k.split(".")[1]) for k in sd})
    assert tops == [0, 1, 3, 4, 5, 6, 7, 8, 10, 11]  # 2 ReLU and 9 MergeLayer hold no weights
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["layers.0.0.weight"] == (64, 3, 7, 7)  # resnet conv1
    assert shapes["layers.1.weight"] == (512,)
    assert shapes["layers.3.0.0.weight"] == (1024, 512, 3, 3) and shapes["layers.3.1.0.weight"] == (512, 1024, 3, 3)
    assert shapes["layers.4.shuf.conv.0.weight"] == (1024, 512, 1, 1)
    assert shapes["layers.4.bn.weight"] == (256,)
    assert shapes["layers.4.conv1.0.weight"] == (512, 512, 3, 3)
    assert shapes["layers.7.conv2.0.weight"] == (96, 96, 3, 3)  # final block: (128 + 64) // 2
    assert shapes["layers.8.conv.0.weight"] == (384, 96, 1, 1)
    assert shapes["layers.10.layers.0.0.weight"] == (49, 99, 3, 3)  # bottle res_block on 96 + 3 input bands
    assert shapes["layers.11.0.weight"] == (4, 99, 1, 1)
    assert "layers.11.0.bias" in sd and "layers.3.0.0.bias" in sd  # norm_type None: convs with bias, no BN


def test_deeplab_through_classify_pixels_model_form(tmp_path):
    chip = 64
    net = reference_deeplab(2, seed=2)
    emd = arcgis_emd("DeepLab", "resnet101", 2, chip, model_type="ImageClassification", config="_deeplab_infrencing")
    dlpk = write_package(tmp_path, emd, net.state_dict(), form="model")
    image = np.random.default_rng(4).integers(0, 256, (3, 64, 128)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    out = tmp_path / "classes.tif"
    classify_pixels(str(raster), load_model_definition(dlpk), str(out), "padding 0;batch_size 4", device=CPU)
    expected = _stitch(_reference_classes(net, imagenet_normalise(_tiles(image, chip)), [0, 1, 2]), 64, 128)
    got = read_raster(out)
    assert np.array_equal(got, expected) and len(np.unique(got)) >= 2
    _no_python_ran(dlpk)


def test_multispectral_unet_uses_extract_bands_and_normalization_stats(tmp_path):
    chip = 32
    bands = [4, 0, 2, 1]
    stats = {"band_min_values": [10, 20, 30, 40, 50], "band_max_values": [1000, 2000, 3000, 4000, 5000],
             "band_mean_values": [500, 900, 1500, 2000, 2500], "band_std_values": [100] * 5,
             "scaled_min_values": [0] * 5, "scaled_max_values": [1] * 5,
             "scaled_mean_values": [0.4, 0.45, 0.5, 0.55, 0.6], "scaled_std_values": [0.2, 0.21, 0.22, 0.23, 0.24]}
    net = reference_unet("resnet18", 2, chip, in_channels=4, seed=3)
    emd = arcgis_emd("UnetClassifier", "resnet18", 2, chip, model_type="ImageClassification", config="_unet",
                     bands=bands, IsMultispectral=True, NormalizationStats=stats, DoNormalize=True)
    dlpk = write_package(tmp_path, emd, net.state_dict())
    image = np.random.default_rng(5).integers(0, 5000, (5, 32, 64)).astype(np.uint16)
    raster = write_raster(tmp_path / "in.tif", image)
    out = tmp_path / "classes.tif"
    classify_pixels(str(raster), load_model_definition(dlpk), str(out), "padding 0", device=CPU)
    picked = image[bands].astype(np.float64)
    lo = np.array(stats["band_min_values"])[bands][:, None, None]
    hi = np.array(stats["band_max_values"])[bands][:, None, None]
    mean = np.array(stats["scaled_mean_values"])[bands][:, None, None]
    std = np.array(stats["scaled_std_values"])[bands][:, None, None]
    normalised = (((picked - lo) / (hi - lo) - mean) / std).astype(np.float32)
    expected = _stitch(_reference_classes(net, _tiles(normalised, chip), [0, 1, 2]), 32, 64)
    got = read_raster(out)
    assert np.array_equal(got, expected) and len(np.unique(got)) >= 2


# ------------------------------------------------------------------------------------------ feature classifier
def test_feature_classifier_through_classify_objects(tmp_path):
    from osgeo import ogr

    chip = 32
    net = reference_feature_classifier("resnet18", 3, seed=4)
    emd = arcgis_emd("FeatureClassifier", "resnet18", 3, chip, model_type="ObjectClassification",
                     config="_FeatureClassifier", CropSizeFixed=1, BlackenAroundFeature=0)
    dlpk = write_package(tmp_path, emd, net.state_dict(), form="model")
    image = np.random.default_rng(6).integers(0, 256, (3, 96, 96)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image, origin=(0.0, 96.0))
    centres = [(32, 32), (64, 48), (48, 64), (40, 70)]

    def rect(cx: int, cy: int) -> bytes:
        x0, x1, y0, y1 = cx - 5, cx + 5, 96 - (cy + 5), 96 - (cy - 5)
        geom = ogr.CreateGeometryFromWkt(f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))")
        return bytes(geom.ExportToWkb())

    results = classify_objects(str(raster), [(i, rect(*c)) for i, c in enumerate(centres)],
                               load_model_definition(dlpk), "batch_size 4", device=CPU)
    chips = np.stack([image[:, cy - 16:cy + 16, cx - 16:cx + 16] for cx, cy in centres])
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(imagenet_normalise(chips))), dim=1).numpy()
    names = [c["Name"] for c in emd["Classes"]]
    assert [r.label for r in results] == [names[i] for i in probs.argmax(axis=1)]
    assert [r.class_value for r in results] == [emd["Classes"][i]["Value"] for i in probs.argmax(axis=1)]
    # ArcGIS writes a FeatureClassifier's confidence as the probability (0-1), not x 100
    np.testing.assert_allclose([r.confidence for r in results], probs.max(axis=1), atol=1e-5)
    _no_python_ran(dlpk)


# ------------------------------------------------------------------------------------------ detectors
def _detector_backend(dlpk):
    md = load_model_definition(dlpk)
    return md, open_backend(md.model_file, md.model_format_kind, CPU, definition=md.raw)


def _assert_same_detections(got: list[dict], want: list[dict], mask: bool = False) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g["scores"]) == len(w["scores"])
        # x / 255 is a float32 multiply in the tool and a division here: scores agree to ~1e-5
        np.testing.assert_allclose(g["boxes"], w["boxes"].numpy(), atol=0.02)
        np.testing.assert_allclose(g["scores"], w["scores"].numpy(), atol=1e-4)
        assert np.array_equal(g["labels"], w["labels"].numpy())
        if mask:
            np.testing.assert_allclose(g["masks"], w["masks"].numpy(), atol=1e-3)
    assert sum(len(g["scores"]) for g in got) > 0  # something was found: the comparison is not vacuous


def test_mask_rcnn_detections_equal_torchvision(tmp_path):
    chip = 64
    torch.manual_seed(0)
    net = reference_rcnn("MaskRCNN", "resnet50", 2, chip, seed=5)
    emd = arcgis_emd("MaskRCNN", "resnet50", 2, chip, model_type="InstanceDetection",
                     config="_maskrcnn_inferencing")
    dlpk = write_package(tmp_path, emd, net.state_dict())
    md, backend = _detector_backend(dlpk)
    assert md.threshold == 0.9  # arcgis.learn's MaskRCNN default
    image = np.random.default_rng(7).integers(0, 256, (2, 3, chip, chip)).astype(np.float32)
    norm = build_normaliser(md, [0, 1, 2], "uint8", lambda b: (0.0, 255.0))
    np.testing.assert_allclose(norm.scale, 1 / 255.0) and np.testing.assert_allclose(norm.offset, 0.0)
    got = backend.detect(norm.apply(image.copy()), threshold=0.2)
    net.roi_heads.score_thresh = 0.2
    with torch.no_grad():
        want = net(list(torch.from_numpy((image / 255.0).astype(np.float32))))
    _assert_same_detections(got, want, mask=True)
    assert got[0]["masks"].shape[1:] == (1, chip, chip)
    _no_python_ran(dlpk)


def test_faster_rcnn_multispectral_and_resnet101(tmp_path):
    chip = 64
    stats = {"band_min_values": [0, 0, 0, 0], "band_max_values": [1000, 1000, 1000, 1000],
             "scaled_mean_values": [0.3, 0.4, 0.5, 0.6], "scaled_std_values": [0.1, 0.2, 0.3, 0.4]}
    bands = [3, 2, 1, 0]
    mean = [0.6, 0.5, 0.4, 0.3]
    std = [0.4, 0.3, 0.2, 0.1]
    net = reference_rcnn("FasterRCNN", "resnet50", 1, chip, seed=6, in_channels=4, mean=mean, std=std)
    emd = arcgis_emd("FasterRCNN", "resnet50", 1, chip, model_type="ObjectDetection",
                     config="_model_extension_inferencing", bands=bands, NormalizationStats=stats,
                     IsMultispectral=True)
    dlpk = write_package(tmp_path / "ms", emd, net.state_dict(), form="model")
    md, backend = _detector_backend(dlpk)
    assert md.threshold == 0.5
    assert backend.net.module.transform.image_mean == mean and backend.net.module.transform.image_std == std
    image = np.random.default_rng(8).integers(0, 1000, (2, 4, chip, chip)).astype(np.float32)
    norm = build_normaliser(md, bands, "uint16", lambda b: (0.0, 1000.0))
    got = backend.detect(norm.apply(image.copy()), threshold=0.05, nms_overlap=0.1)
    net.roi_heads.score_thresh, net.roi_heads.nms_thresh = 0.05, 0.1
    with torch.no_grad():
        want = net(list(torch.from_numpy((image / 1000.0).astype(np.float32))))
    _assert_same_detections(got, want)

    net101 = reference_rcnn("FasterRCNN", "resnet101", 2, chip, seed=7)
    emd101 = arcgis_emd("FasterRCNN", "resnet101", 2, chip, model_type="ObjectDetection",
                        config="_model_extension_inferencing")
    md, backend = _detector_backend(write_package(tmp_path / "r101", emd101, net101.state_dict()))
    rgb = np.random.default_rng(9).integers(0, 256, (1, 3, chip, chip)).astype(np.float32)
    rgb = (rgb / 255.0).astype(np.float32)
    got = backend.detect(rgb, threshold=0.05, nms_overlap=0.1)
    net101.roi_heads.score_thresh, net101.roi_heads.nms_thresh = 0.05, 0.1
    with torch.no_grad():
        want = net101(list(torch.from_numpy(rgb)))
    _assert_same_detections(got, want)


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            x1, y1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x2, y2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            if inter / (area(boxes[i]) + area(boxes[j]) - inter) <= overlap:
                rest.append(j)
        order = rest
    return keep


def test_single_shot_detector_decoding(tmp_path):
    """SSD: raw head outputs decoded independently here (fast.ai anchors, tanh offsets, sigmoid, per-class NMS)."""
    chip = 64
    emd = arcgis_emd("SingleShotDetector", "resnet34", 2, chip, model_type="ObjectDetection", config="_DynamicSSD",
                     Grids=[2, 1], Zooms=[1.0, 0.7], Ratios=[[1.0, 1.0], [1.0, 0.5]], SSDVersion=2)
    emd["backbone"] = "resnet34"  # SSD also writes its backbone at the top level
    net = reference_ssd("resnet34", 2, chip, emd, seed=8)
    dlpk = write_package(tmp_path, emd, net.state_dict())
    md, backend = _detector_backend(dlpk)
    image = np.random.default_rng(10).integers(0, 256, (2, 3, chip, chip)).astype(np.float32)
    x = imagenet_normalise(image)
    got = decoded_detections(backend, x, threshold=0.3, nms_overlap=0.1)
    with torch.no_grad():
        cls, off = (t.numpy().astype(np.float64) for t in net(torch.from_numpy(x)))
    scales = [(z * i, z * j) for z in (1.0, 0.7) for i, j in ((1.0, 1.0), (1.0, 0.5))]
    anchors = []
    for g in (2, 1):
        for r in range(g):
            for c in range(g):
                for sh, sw in scales:
                    anchors.append(((r + 0.5) / g, (c + 0.5) / g, sh / g, sw / g, 1.0 / g))
    anc = np.array(anchors)
    assert cls.shape[1] == len(anc) == 4 * 4 + 4
    for b in range(2):
        t = np.tanh(off[b])
        cy, cx = t[:, 0] / 2 * anc[:, 4] + anc[:, 0], t[:, 1] / 2 * anc[:, 4] + anc[:, 1]
        h, w = (t[:, 2] / 2 + 1) * anc[:, 2], (t[:, 3] / 2 + 1) * anc[:, 3]
        boxes = np.stack([(cx - w / 2) * chip, (cy - h / 2) * chip, (cx + w / 2) * chip, (cy + h / 2) * chip], 1)
        probs = 1 / (1 + np.exp(-cls[b]))
        want = []
        for k in (1, 2):
            idx = np.nonzero(probs[:, k] > 0.3)[0]
            for i in _greedy_nms(boxes[idx], probs[idx, k], 0.1):
                want.append((k, probs[idx[i], k], *boxes[idx[i]]))
        want.sort(key=lambda d: -d[1])
        assert len(got[b]["scores"]) == len(want) > 0
        np.testing.assert_allclose(got[b]["scores"], [d[1] for d in want], atol=1e-5)
        assert got[b]["labels"].tolist() == [d[0] for d in want]
        np.testing.assert_allclose(got[b]["boxes"], [d[2:] for d in want], atol=1e-3)


def test_retinanet_decoding(tmp_path):
    """RetinaNet: anchors over the pyramid levels and the (0.1, 0.1, 0.2, 0.2) offsets, decoded here."""
    chip = 64
    emd = arcgis_emd("RetinaNet", "resnet34", 2, chip, model_type="ObjectDetection", config="_RetinaNet_Inference",
                     ModelParameters={"backbone": "resnet34", "scales": [1.0, 0.6], "ratios": [0.5, 1.0]})
    net = reference_retinanet("resnet34", 2, emd, seed=9)
    dlpk = write_package(tmp_path, emd, net.state_dict())
    md, backend = _detector_backend(dlpk)
    assert md.arcgis_family.num_classes == 2
    x = imagenet_normalise(np.random.default_rng(11).integers(0, 256, (1, 3, chip, chip)).astype(np.float32))
    got = decoded_detections(backend, x, threshold=0.5, nms_overlap=0.1)[0]
    with torch.no_grad():
        cls, off, sizes = net(torch.from_numpy(x))
    assert sizes == [[8, 8], [4, 4], [2, 2], [1, 1], [1, 1]]
    anchors = []
    for h, w in sizes:
        for r in range(h):
            for c in range(w):
                cy = -1 + (2 * r + 1) / h if h > 1 else 0.0
                cx = -1 + (2 * c + 1) / w if w > 1 else 0.0
                for ratio in (0.5, 1.0):
                    for s in (1.0, 0.6):
                        anchors.append((cy, cx, 4 * s * np.sqrt(ratio) * 2 / h, 4 * s * np.sqrt(1 / ratio) * 2 / w))
    anc = np.array(anchors)
    o = off[0].numpy().astype(np.float64) * [0.1, 0.1, 0.2, 0.2]
    cy, cx = anc[:, 0] + o[:, 0] * anc[:, 2], anc[:, 1] + o[:, 1] * anc[:, 3]
    h, w = anc[:, 2] * np.exp(o[:, 2]), anc[:, 3] * np.exp(o[:, 3])
    boxes = np.stack([(cx - w / 2 + 1) / 2 * chip, (cy - h / 2 + 1) / 2 * chip,
                      (cx + w / 2 + 1) / 2 * chip, (cy + h / 2 + 1) / 2 * chip], 1)
    probs = 1 / (1 + np.exp(-cls[0].numpy().astype(np.float64)))
    score, label = probs.max(axis=1), probs.argmax(axis=1) + 1
    idx = np.nonzero(score > 0.5)[0]
    keep = [idx[i] for i in _greedy_nms(boxes[idx], score[idx], 0.1)]
    assert len(keep) > 0 and len(got["scores"]) == len(keep)
    np.testing.assert_allclose(got["scores"], score[keep], atol=1e-5)
    assert got["labels"].tolist() == label[keep].tolist()
    np.testing.assert_allclose(got["boxes"], boxes[keep], atol=1e-3)


# ------------------------------------------------------------------------------------------ strict loading
@pytest.fixture(scope="module")
def small_classifier():
    net = reference_feature_classifier("resnet18", 2, seed=10)
    emd = arcgis_emd("FeatureClassifier", "resnet18", 2, 32, model_type="ObjectClassification",
                     config="_FeatureClassifier")
    return emd, net.state_dict()


def _open_error(tmp_path, emd, state, **kw) -> str:
    dlpk = write_package(tmp_path, emd, state, **kw)
    md = load_model_definition(dlpk)
    with pytest.raises(BackendError) as info:
        open_backend(md.model_file, md.model_format_kind, CPU, definition=md.raw)
    return str(info.value)


ARCH = "arcgis.learn FeatureClassifier, resnet18 with a fastai-v1 head, rebuilt with torchvision and the plugin's " \
       "fastai-v1 modules"


def test_strict_load_renamed_key(tmp_path, small_classifier):
    emd, state = small_classifier
    renamed = dict(state)
    renamed["1.8.weights"] = renamed.pop("1.8.weight")
    assert _open_error(tmp_path, emd, renamed) == (
        f"The weights in 'FeatureClassifier.pth' do not fit {ARCH}: first missing key '1.8.weight' (1 missing); "
        "first unexpected key '1.8.weights' (1 unexpected).")


def test_strict_load_changed_shape(tmp_path, small_classifier):
    emd, state = small_classifier
    changed = dict(state)
    changed["1.8.weight"] = torch.zeros(5, 512)
    message = _open_error(tmp_path, emd, changed, form="model")
    assert message.startswith(f"The weights in 'FeatureClassifier.pth' do not fit {ARCH}: first key of another shape "
                              "'1.8.weight': [5, 512] in the file, [2, 512] in the network (1 differ).")
    assert "check Classes" in message


def test_strict_load_module_prefix(tmp_path, small_classifier):
    emd, state = small_classifier
    message = _open_error(tmp_path, emd, {f"module.{k}": v for k, v in state.items()})
    assert message.startswith(f"The weights in 'FeatureClassifier.pth' do not fit {ARCH}: first missing key "
                              "'0.0.weight' (")
    assert "first unexpected key 'module.0.0.weight'" in message
    assert "Every key in the file starts with 'module.': it was saved from a wrapper" in message


def test_pickled_object_is_refused_without_running_it(tmp_path, small_classifier):
    emd, _ = small_classifier
    marker = tmp_path / "UNPICKLED"

    class Canary:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = tmp_path / "pkl"
    dlpk = write_package(folder, emd, {"x": torch.zeros(1)})
    import zipfile

    weights = folder / "FeatureClassifier_model" / "FeatureClassifier.pth"
    torch.save({"model": Canary()}, weights)
    with zipfile.ZipFile(dlpk, "w") as zf:
        for f in sorted(weights.parent.iterdir()):
            zf.write(f, f.name)
    md = load_model_definition(dlpk)
    with pytest.raises(BackendError, match=r"could not be read as PyTorch weights with torch.load\(weights_only=True\)"):
        open_backend(md.model_file, md.model_format_kind, CPU, definition=md.raw)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ refusals
REFUSALS = [
    ({"ModelName": "MaskRCNN", "ModelParameters": {"backbone": "timm:convnext_tiny"}},
     "arcgis.learn MaskRCNN with backbone 'timm:convnext_tiny' cannot be run: timm, Hugging Face and transformer "
     "(ViT) backbones are not rebuilt"),
    ({"ModelName": "UnetClassifier", "ModelParameters": {"backbone": "hf:nvidia/mit-b0"}},
     "arcgis.learn UnetClassifier with backbone 'hf:nvidia/mit-b0' cannot be run: timm, Hugging Face"),
    ({"ModelName": "FeatureClassifier", "ModelParameters": {"backbone": "vit_b_16"}},
     "arcgis.learn FeatureClassifier with backbone 'vit_b_16' cannot be run: timm, Hugging Face and transformer"),
    ({"ModelName": "MaskRCNN", "ModelParameters": {"backbone": "resnet50", "pointrend": True}},
     "arcgis.learn MaskRCNN with pointrend true cannot be run: the PointRend mask head is not rebuilt"),
    ({"ModelName": "MaskRCNN", "ModelParameters": {"backbone": "resnet101d"}},
     "arcgis.learn MaskRCNN with backbone 'resnet101d' cannot be run: this plugin rebuilds MaskRCNN on resnet18, "
     "resnet34, resnet50, resnet101, resnet152."),
    ({"ModelName": "MMDetection", "ModelParameters": {"backbone": "cascade_rcnn"}},
     "arcgis.learn model 'MMDetection' cannot be run: it is built by MMDetection, which needs mmcv"),
    ({"ModelName": "MMSegmentation", "ModelParameters": {"backbone": "deeplabv3"}},
     "arcgis.learn model 'MMSegmentation' cannot be run: it is built by MMSegmentation, which needs mmcv"),
    ({"ModelName": "ChangeDetector", "ModelParameters": {"backbone": "resnet18"}},
     "arcgis.learn model 'ChangeDetector' cannot be run: its STANet network"),
    ({"ModelName": "UnetClassifier", "ModelParameters": {"backbone": "resnet34"}, "ModelType": "ObjectDetection"},
     "arcgis.learn UnetClassifier is a pixel classifier, but the model definition says ModelType 'ObjectDetection': "
     "set ModelType to ImageClassification (arcgis.learn writes ImageClassification) and run it with Classify Pixels "
     "Using Deep Learning"),
    ({"ModelName": "DeepForest"},
     "arcgis.learn model 'DeepForest' is not one of the families this plugin rebuilds (MaskRCNN, FasterRCNN, DeepLab, "
     "UnetClassifier, FeatureClassifier, SingleShotDetector, RetinaNet)"),
]


@pytest.mark.parametrize("change, message", REFUSALS, ids=[f"{c['ModelName']}-{i}" for i, (c, _) in enumerate(REFUSALS)])
def test_refusals_name_model_reason_and_alternative(tmp_path, change, message):
    emd = arcgis_emd("MaskRCNN", "resnet50", 1, 64, model_type="ObjectDetection", config="_maskrcnn_inferencing")
    emd.update(change)
    (tmp_path / "MaskRCNN.pth").write_bytes(b"never read")
    (tmp_path / "m.emd").write_text(json.dumps(emd), encoding="utf-8")
    with pytest.raises(ModelDefinitionError) as info:
        load_model_definition(tmp_path / "m.emd")
    text = str(info.value)
    assert text.startswith(message), text
    if "says ModelType" not in message:  # a definition to fix, not a network that cannot be rebuilt
        assert "export the model from arcgis.learn to TorchScript or ONNX" in text


MODEL_CONFIGURATION = '''from pathlib import Path
Path(__file__).with_name("MODEL_CONFIGURATION_RAN").write_text("ran")


class MyFasterRCNN:
    def get_model(self, data, **kwargs):
        Path(__file__).with_name("MODEL_CONFIGURATION_RAN").write_text("ran")
'''


def test_model_configuration_py_is_never_executed(tmp_path):
    """A FasterRCNN "model extension" package: rebuilt from ModelName; its ModelConfiguration.py never runs."""
    chip = 64
    net = reference_rcnn("FasterRCNN", "resnet50", 1, chip, seed=11)
    emd = arcgis_emd("FasterRCNN", "resnet50", 1, chip, model_type="ObjectDetection",
                     config="_model_extension_inferencing", ModelConfigurationFile="ModelConfiguration.py",
                     ModelFileConfigurationClass="MyFasterRCNN", Kwargs={"pretrained_backbone": True})
    dlpk = write_package(tmp_path / "ok", emd, net.state_dict(),
                         extra_files={"ModelConfiguration.py": MODEL_CONFIGURATION})
    md, backend = _detector_backend(dlpk)
    rgb = np.random.default_rng(12).integers(0, 256, (1, 3, chip, chip)).astype(np.float32)
    backend.detect((rgb / 255.0).astype(np.float32), threshold=0.05)
    _no_python_ran(dlpk)
    # a model whose architecture only its own ModelConfiguration.py knows: refused, still not executed
    custom = dict(emd, ModelName="MyOwnDetector")
    dlpk = write_package(tmp_path / "custom", custom, net.state_dict(),
                         extra_files={"ModelConfiguration.py": MODEL_CONFIGURATION})
    with pytest.raises(ModelDefinitionError, match="arcgis.learn model 'MyOwnDetector' is not one of the families this "
                                                   "plugin rebuilds .* the package's own Python, which the plugin "
                                                   "never runs"):
        load_model_definition(dlpk)
    _no_python_ran(dlpk)


def test_without_torchvision_the_message_says_install_it(tmp_path, small_classifier, monkeypatch):
    emd, state = small_classifier
    dlpk = write_package(tmp_path, emd, state)
    md = load_model_definition(dlpk)  # reading the definition needs no torchvision
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(DependencyMissingError, match="torchvision is not installed in QGIS's Python, and models "
                                                     "trained with arcgis.learn are rebuilt with it: install it"):
        open_backend(md.model_file, md.model_format_kind, CPU, definition=md.raw)


def test_describe_model_names_the_family_and_defaults(tmp_path, small_classifier):
    from dltools.core.tools.describe.report import backend_info, describe_model, report_lines

    emd = arcgis_emd("MaskRCNN", "resnet50", 2, 64, model_type="InstanceDetection", config="_maskrcnn_inferencing")
    (tmp_path / "MaskRCNN.pth").write_bytes(b"not read by Describe without the backend")
    (tmp_path / "m.emd").write_text(json.dumps(emd), encoding="utf-8")
    report = describe_model(load_model_definition(tmp_path / "m.emd"))
    assert report["arcgis_learn"]["family"] == "arcgis.learn MaskRCNN, resnet50 FPN, rebuilt with torchvision"
    assert report["arcgis_learn"]["defaults"]["threshold"] == 0.9
    lines = report_lines(report)
    assert ("Architecture: arcgis.learn MaskRCNN, resnet50 FPN, rebuilt with torchvision; 2 classes + background, "
            "3 bands; runs in Detect Objects Using Deep Learning; defaults: threshold 0.9, nms_overlap 0.5, "
            "mask_threshold 0.5, batch_size 4, exclude_pad_detections True") in lines
    assert report["normalization"]["rule"] == "R-CNN"
    emd_c, state = small_classifier
    md = load_model_definition(write_package(tmp_path / "fc", emd_c, state))
    info = backend_info(md, CPU)
    assert info["opened"] and info["kind"] == "arcgis.learn"
    assert info["inputs"][0]["shape"] == [None, 3, None, None] and info["outputs"][0]["shape"] == [None, 2]


# ------------------------------------------------------------------------------------------ through Detect Objects
def test_mask_rcnn_through_detect_objects_outlines_its_masks(tmp_path):
    from dltools.core.tools.detect_objects.pipeline import detect_objects
    from osgeo import ogr

    chip = 64
    net = reference_rcnn("MaskRCNN", "resnet50", 2, chip, seed=5)
    emd = arcgis_emd("MaskRCNN", "resnet50", 2, chip, model_type="InstanceDetection", config="_maskrcnn_inferencing")
    dlpk = write_package(tmp_path, emd, net.state_dict())
    image = np.random.default_rng(7).integers(0, 256, (3, chip, chip)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image, origin=(0.0, float(chip)))
    result = detect_objects(str(raster), load_model_definition(dlpk), "padding 0;threshold 0.3", device=CPU)
    net.roi_heads.score_thresh = 0.3
    with torch.no_grad():
        want = net([torch.from_numpy((image / 255.0).astype(np.float32))])[0]
    masks = want["masks"][:, 0].numpy() > 0.5
    expected = [(f"class{int(lab)}", 100 * float(s), m) for lab, s, m in
                zip(want["labels"].tolist(), want["scores"].tolist(), masks) if m.any()]
    got = sorted(result.objects, key=lambda o: -o.confidence)
    assert len(got) == len(expected) > 0
    for obj, (name, conf, mask) in zip(got, expected):
        assert obj.class_name == name
        assert abs(obj.confidence - conf) < 0.01
        geom = ogr.CreateGeometryFromWkb(obj.wkb)
        assert abs(geom.GetArea() - mask.sum()) <= 0.02 * mask.sum() + 1  # the mask's pixels, holes kept
        rows, cols = np.nonzero(mask)
        xmin, xmax, ymin, ymax = geom.GetEnvelope()
        assert (xmin, xmax) == pytest.approx((cols.min(), cols.max() + 1), abs=1)
        assert (chip - ymax, chip - ymin) == pytest.approx((rows.min(), rows.max() + 1), abs=1)
    _no_python_ran(dlpk)


def test_retinanet_through_detect_objects_names_classes_by_position(tmp_path):
    from dltools.core.tools.detect_objects.pipeline import detect_objects

    chip = 64
    emd = arcgis_emd("RetinaNet", "resnet34", 2, chip, model_type="ObjectDetection", config="_RetinaNet_Inference",
                     values=[7, 3])
    net = reference_retinanet("resnet34", 2, emd, seed=9)
    dlpk = write_package(tmp_path, emd, net.state_dict())
    image = np.random.default_rng(11).integers(0, 256, (3, chip, chip)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image, origin=(0.0, float(chip)))
    md, backend = _detector_backend(dlpk)
    direct = decoded_detections(backend, imagenet_normalise(image[None]), threshold=0.5, nms_overlap=0.1)[0]
    result = detect_objects(str(raster), md, "padding 0", device=CPU)
    inside = [(lab, s) for lab, s, b in zip(direct["labels"], direct["scores"], direct["boxes"])
              if 0 <= (b[0] + b[2]) / 2 < chip and 0 <= (b[1] + b[3]) / 2 < chip]
    assert len(inside) > 0
    got = sorted(((o.class_name, o.class_value, round(o.confidence, 2)) for o in result.objects), key=lambda t: -t[2])
    want = sorted(((f"class{[7, 3][lab - 1]}", [7, 3][lab - 1], round(100 * float(s), 2)) for lab, s in inside),
                  key=lambda t: -t[2])
    assert got == want


# ------------------------------------------------------------------------------------------ every family, defaults
TORCHVISION_CASES = [("MaskRCNN", "resnet18"), ("MaskRCNN", "resnet34"), ("MaskRCNN", "resnet50"),
                     ("MaskRCNN", "resnet101"), ("MaskRCNN", "resnet152"), ("FasterRCNN", "resnet18"),
                     ("FasterRCNN", "resnet34"), ("FasterRCNN", "resnet50"), ("FasterRCNN", "resnet101"),
                     ("FasterRCNN", "resnet152")]


@pytest.mark.parametrize("name, backbone", TORCHVISION_CASES)
def test_every_rcnn_backbone_takes_the_reference_weights_strictly(name, backbone):
    import torchvision
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.backends.arcgis_learn.weights import load_strict

    emd = arcgis_emd(name, backbone, 3, 64, model_type="ObjectDetection", config="_maskrcnn_inferencing")
    reference = reference_rcnn(name, backbone, 3, 64, seed=13)
    mine = build_module(resolve_family(emd), emd, torchvision)
    load_strict(mine, reference.state_dict(), name, "weights.pth")  # raises naming the first differing key


#: arcgis.learn's resnet18/34 R-CNN keys: fastai's numbered body (conv1 0, bn1 1, layer1..4 4..7), one-map RPN head
SMALL_RCNN_KEYS = {"backbone.0.weight": (64, 3, 7, 7), "backbone.1.running_var": (64,),
                   "backbone.4.0.conv1.weight": (64, 64, 3, 3), "backbone.7.1.bn2.bias": (512,),
                   "rpn.head.conv.0.0.weight": (512, 512, 3, 3), "rpn.head.cls_logits.weight": (3, 512, 1, 1),
                   "rpn.head.bbox_pred.weight": (12, 512, 1, 1), "roi_heads.box_head.fc6.weight": (1024, 512 * 7 * 7),
                   "roi_heads.box_predictor.cls_score.weight": (3, 1024)}


@pytest.mark.parametrize("name", ["FasterRCNN", "MaskRCNN"])
def test_resnet18_rcnn_has_arcgis_learn_keys_and_its_patched_anchors(name):
    """The rebuilt one-map R-CNN gives the proposals and detections of arcgis.learn's (default anchor generator with
    its grid_anchors patched), weights loaded strictly: same keys, same anchors (3 of 32 pixels per cell)."""
    from collections import OrderedDict

    import torchvision
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.backends.arcgis_learn.weights import load_strict

    emd = arcgis_emd(name, "resnet18", 2, 64, model_type="ObjectDetection", config="x")
    family = resolve_family(emd)
    assert family.title == f"arcgis.learn {name}, resnet18 (one feature map, no FPN), rebuilt with torchvision"
    reference = reference_rcnn(name, "resnet18", 2, 64, seed=21)
    mine = build_module(family, emd, torchvision)
    load_strict(mine, reference.state_dict(), name, "weights.pth")
    own = mine.state_dict()
    assert {k: tuple(own[k].shape) for k in SMALL_RCNN_KEYS} == SMALL_RCNN_KEYS
    assert not any(k.startswith("backbone.body") or k.startswith("backbone.fpn") for k in own)
    x = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))]
    with torch.no_grad():
        found = []
        for net in (reference, mine):
            net.roi_heads.score_thresh = 0.0
            images, _ = net.transform(x)
            features = net.backbone(images.tensors)
            proposals, _ = net.rpn(images, OrderedDict([("0", features)]))
            found.append((net.rpn.anchor_generator(images, [features])[0], proposals[0], net(x)[0]))
    assert images.tensors.shape[-1] == 96 and found[1][0].shape == (27, 4)  # 3 x 3 cells of stride 32, 3 anchors
    assert torch.equal(found[1][0][1], torch.tensor([-16.0, -16.0, 16.0, 16.0]))  # 32 pixels, ratio 1, cell (0, 0)
    assert torch.equal(found[0][0], found[1][0]) and torch.equal(found[0][1], found[1][1])
    assert found[1][2]["boxes"].shape[0] > 0
    for key, value in found[0][2].items():
        assert torch.equal(value, found[1][2][key]), key


# UnetClassifier resnet50 (its middle convs alone hold 150 M weights) is left to scripts/check_against_fastai1.py
@pytest.mark.parametrize("name, backbone, task", [
    ("UnetClassifier", "resnet18", "pixels"), ("FeatureClassifier", "resnet34", "objects"),
    ("FeatureClassifier", "resnet50", "objects"), ("SingleShotDetector", "resnet50", "detection"),
    ("RetinaNet", "resnet50", "detection")])
def test_other_backbones_build_and_run(tmp_path, name, backbone, task):
    import torchvision
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    kind = {"pixels": "ImageClassification", "objects": "ObjectClassification", "detection": "ObjectDetection"}[task]
    emd = arcgis_emd(name, backbone, 2, 64, model_type=kind, config="x", Grids=[2, 1])
    module = build_module(resolve_family(emd), emd, torchvision)
    dlpk = write_package(tmp_path, emd, module.state_dict())
    md, backend = _detector_backend(dlpk)
    x = np.zeros((2, 3, 64, 64), np.float32)
    if task == "detection":
        assert len(backend.detect(x, threshold=0.5)) == 2
    else:
        out = backend.run(x)[0]
        assert out.shape == ((2, 3, 64, 64) if task == "pixels" else (2, 2))


def test_arcgis_learn_defaults_reach_the_tools(tmp_path):
    from dltools.core.arguments.specs import resolve_arguments

    for name, kind, threshold, nms in (("MaskRCNN", "InstanceDetection", 0.9, 0.5),
                                       ("FasterRCNN", "ObjectDetection", 0.5, 0.1)):
        emd = arcgis_emd(name, "resnet50", 1, 400, model_type=kind, config="x")
        (tmp_path / f"{name}.pth").write_bytes(b"not read")
        (tmp_path / f"{name}.emd").write_text(json.dumps(emd), encoding="utf-8")
        args = resolve_arguments(load_model_definition(tmp_path / f"{name}.emd"), "detect_objects", None)
        assert (args["threshold"], args["nms_overlap"], args["padding"], args["batch_size"]) == (threshold, nms, 100, 4)
        assert args["exclude_pad_detections"] is True


def test_predict_background_and_ignore_mapped_class(tmp_path):
    chip = 32
    net = reference_unet("resnet18", 3, chip, seed=14)
    image = np.random.default_rng(15).integers(0, 256, (3, 64, 64)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    with torch.no_grad():
        scores = net(torch.from_numpy(imagenet_normalise(_tiles(image, chip)))).numpy()
    lut = np.array([0, 1, 2, 3])
    winner = int(np.bincount(scores.argmax(axis=1).ravel(), minlength=4)[1:].argmax()) + 1  # most frequent class
    for extra, args, suppressed in (({}, "padding 0;predict_background False", [0]),
                                    ({"ignore_mapped_class": [winner]}, "padding 0", [winner])):
        emd = arcgis_emd("UnetClassifier", "resnet18", 3, chip, model_type="ImageClassification", config="_unet",
                         ModelParameters={"backbone": "resnet18", **extra})
        dlpk = write_package(tmp_path / str(suppressed[0]), emd, net.state_dict())
        out = tmp_path / f"out{suppressed[0]}.tif"
        classify_pixels(str(raster), load_model_definition(dlpk), str(out), args, device=CPU)
        masked = scores.copy()
        masked[:, suppressed] = -np.inf
        expected = _stitch(lut[masked.argmax(axis=1)], 64, 64)
        got = read_raster(out)
        assert np.array_equal(got, expected)
        assert not np.isin(got, lut[suppressed]).any() and np.isin(lut[suppressed], lut[scores.argmax(axis=1)]).all()


def test_a_dask_worker_rebuilds_the_network_from_the_shipped_definition(tmp_path, small_classifier):
    """What a worker does with SCHEDULER set: open the shipped .pth with the definition the client sent along."""
    from dltools.core.engine import cluster

    emd, state = small_classifier
    md = load_model_definition(write_package(tmp_path, emd, state))
    ref = cluster.ModelRef.for_file(md.model_file, md.model_format_kind, CPU, definition=md.raw)
    ref = __import__("pickle").loads(__import__("pickle").dumps(ref))  # as Dask ships it
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    cluster._staged_model(ref, worker_dir)
    backend = cluster._model_on_worker("run-1", ref, str(worker_dir))
    try:
        assert backend.family.title == ARCH
        assert backend.run(np.zeros((1, 3, 32, 32), np.float32))[0].shape == (1, 2)
    finally:
        cluster._forget_run("run-1")

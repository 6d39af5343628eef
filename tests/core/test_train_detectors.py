# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model, FasterRCNN on PASCAL_VOC_rectangles and MaskRCNN on RCNN_Masks chips: a tiny
real run (64-pixel chips, one epoch, one thread) whose model folder loads strictly into the network the inference
rebuilds, whose .emd has arcgis.learn's keys for the family, and whose validation AP comes from the shared matching
rule; plus the exact parts (box and mask augmentation, mask IoU, the AP table, refusals)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from builders import RecordingProgress  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.detection.matching import DetectionTally  # noqa: E402
from dltools.core.errors import ArgumentError, InputDataError  # noqa: E402
from dltools.core.tools.train.detection import _turn, _turn_masks, detection_metrics, mask_iou  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.metrics import metric_table  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import shape_boxes, shapes_scene, write_pascal_voc, write_rcnn_masks  # noqa: E402

CPU = DeviceRequest("cpu", threads=1)

#: the keys arcgis.learn 2.4.4 writes into a FasterRCNN .emd (ModelExtension._get_emd_params + _create_emd_template)
ARCGIS_FASTERRCNN_KEYS = {
    "Framework", "ModelType", "InferenceFunction", "ModelConfiguration", "ExtractBands", "Classes",
    "ModelConfigurationFile", "ModelFileConfigurationClass", "DatasetType", "Kwargs", "ModelFormat", "MinCellSize", "MaxCellSize",
    "SupportsVariableTileSize", "ArcGISLearnVersion", "ModelFile", "ImageHeight", "ImageWidth", "ImageSpaceUsed",
    "ModelName", "LearningRate", "ModelParameters", "IsImageNetNormalization", "resize_to",
    "average_precision_score"}


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return write_pascal_voc(tmp_path_factory.mktemp("voc") / "chips", count=6, chip=64, seed=3)


@pytest.fixture(scope="module")
def trained(voc, tmp_path_factory):
    progress = RecordingProgress()
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet50", max_epochs=1, batch_size=2,
                             learning_rate=1e-3, validation_percent=34, seed=0)
    result = train_model(TrainRequest(str(voc), str(tmp_path_factory.mktemp("out") / "frcnn"), settings,
                                      device=CPU), progress)
    return result, progress


def test_faster_rcnn_folder_loads_strictly_and_has_arcgis_keys(trained):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    result, _ = trained
    emd = json.loads(result.files["emd"].read_text())
    assert ARCGIS_FASTERRCNN_KEYS <= set(emd)
    assert emd["ModelName"] == "FasterRCNN" and emd["ModelType"] == "ObjectDetection"
    assert emd["InferenceFunction"].endswith("ArcGISObjectDetector.py")
    assert emd["DatasetType"] == "PASCAL_VOC_rectangles" and emd["ModelParameters"]["backbone"] == "resnet50"
    assert set(emd["average_precision_score"]) == {"square", "disc"}
    state = torch.load(str(result.files["pth"]), map_location="cpu", weights_only=True)
    module = build_module(resolve_family(emd), emd, torchvision)
    module.load_state_dict(state, strict=True)
    assert set(state) == set(module.state_dict())
    for key in ("html", "json", "loss_graph", "show_results", "dlpk"):
        assert result.files[key].is_file(), key


def test_faster_rcnn_validation_ap_is_in_the_log_html_and_json(trained):
    result, progress = trained
    history = json.loads(result.files["json"].read_text())
    metrics = history["metrics"][0]
    assert metrics["iou_threshold"] == 0.5 and set(metrics["average_precision"]) == {"square", "disc"}
    aps = [r["ap"] for r in metrics["average_precision"].values() if r["ap"] is not None]
    assert aps and metrics["map"] == pytest.approx(float(np.mean(aps)))
    assert any(line.startswith("epoch 1/1") and "mAP" in line for line in progress.infos)
    assert any(line.strip().startswith("mAP ") for line in progress.infos)
    html = result.files["html"].read_text()
    assert "Average Precision Score" in html and f"mAP {metrics['map']:.4f}" in html
    assert "objects" in progress.infos[0]


def test_mixed_precision_on_cuda_only_float32_on_the_cpu(trained):
    """The CUDA path (autocast + GradScaler) is chosen for CUDA devices only; it is not run here (no GPU)."""
    import warnings

    from dltools.core.tools.train.loop import mixed_precision

    assert mixed_precision(torch, torch.device("cpu")) == (False, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without CUDA the scaler warns that it disables itself
        on, scaler = mixed_precision(torch, torch.device("cuda"))
    assert on and isinstance(scaler, torch.amp.GradScaler)
    result, progress = trained
    assert not any("mixed precision" in line for line in progress.infos)
    state = torch.load(str(result.files["pth"]), weights_only=True)
    assert {v.dtype for v in state.values()} <= {torch.float32, torch.int64}


def test_box_sampling_and_monitor_arguments():
    from types import SimpleNamespace

    from dltools.core.backends.arcgis_learn.torchvision_nets import build_rcnn
    from dltools.core.tools.train.detection import set_box_sampling
    from dltools.core.tools.train.loop import EpochRecord, Trainer
    from dltools.core.tools.train.options import parse_arguments

    args = parse_arguments("box_batch_size_per_image 16;box_positive_fraction 0.5;monitor AVERAGE_PRECISION",
                           "FasterRCNN")
    assert args == {"box_batch_size_per_image": 16, "box_positive_fraction": 0.5, "monitor": "average_precision"}
    net = build_rcnn(torchvision, "MaskRCNN", "resnet18", 2, 64, 3)
    sampler = net.roi_heads.fg_bg_sampler
    assert (sampler.batch_size_per_image, sampler.positive_fraction) == (512, 0.25)  # torchvision's, arcgis.learn's
    assert set_box_sampling(net, args) == {"box_batch_size_per_image": 16, "box_positive_fraction": 0.5}
    assert (sampler.batch_size_per_image, sampler.positive_fraction) == (16, 0.5)
    assert set_box_sampling(net, {"seed": 1}) == {}
    for text, model, message in [
            ("box_batch_size_per_image 16", "UnetClassifier", "box_batch_size_per_image is for FasterRCNN and MaskRCNN"),
            ("monitor average_precision", "FeatureClassifier", "monitor average_precision is for the detectors"),
            ("monitor accuracy", "FasterRCNN", "monitor must be valid_loss or average_precision, not 'accuracy'"),
            ("box_positive_fraction 1.5", "MaskRCNN", "box_positive_fraction must be a number between 0 and 1")]:
        with pytest.raises(ArgumentError, match=message):
            parse_arguments(text, model)
    with pytest.raises(ArgumentError, match="box_batch_size_per_image must be 1 or more"):
        set_box_sampling(net, {"box_batch_size_per_image": 0})
    record = EpochRecord(epoch=1, train_loss=1.0, valid_loss=0.75, metrics={"map": 0.625}, seconds=1.0)
    for monitor, value in (("valid_loss", 0.75), ("average_precision", -0.625)):
        trainer = SimpleNamespace(s=TrainSettings(model_type="FasterRCNN", backbone="resnet18", monitor=monitor))
        assert Trainer.monitored(trainer, record) == value


def test_boxes_follow_the_pixels_when_turned_and_mirrored():
    image, mask = shapes_scene(40, 40, 3, 7)
    boxes = np.asarray([b for _, b in shape_boxes(mask)], np.float32)
    stack = np.concatenate([image, mask[None]]).astype(np.int64)
    for k in range(4):
        for flip in (False, True):
            turned, moved = _turn(stack, boxes, k, flip)
            expected = np.asarray([b for _, b in shape_boxes(turned[3].astype(np.uint8))], np.float32)
            assert sorted(map(tuple, moved.tolist())) == sorted(map(tuple, expected.tolist())), (k, flip)


def test_ap_table_from_the_shared_matching():
    tally = DetectionTally(min_iou=0.5)
    # chip 1: one square found (IoU 1), one disc missed; a false square at lower confidence
    tally.add_boxes(np.array([[0, 0, 10, 10], [30, 30, 40, 40]]), np.array([0.9, 0.4]), [1, 1],
                    np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), [1, 2])
    metrics = detection_metrics(tally, ["square", "disc"])
    assert metrics["average_precision"]["square"]["ap"] == 1.0
    assert metrics["average_precision"]["disc"]["ap"] == 0.0 and metrics["map"] == 0.5
    table = metric_table(metrics)
    assert table[1].split()[:2] == ["square", "1.0000"] and table[-1].strip() == "mAP 0.5000"


def test_refusals(voc, tmp_path):
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet200", max_epochs=1, batch_size=2)
    with pytest.raises(ArgumentError, match="BACKBONE resnet200: FasterRCNN is trained on the backbones its inference "
                                            "rebuilds \\(resnet18, resnet34, resnet50, resnet101, resnet152\\)"):
        train_model(TrainRequest(str(voc), str(tmp_path / "a"), settings, device=CPU), RecordingProgress())
    settings = TrainSettings(model_type="UnetClassifier", backbone="resnet18", max_epochs=1, batch_size=2)
    with pytest.raises(InputDataError, match="PASCAL_VOC_rectangles"):
        train_model(TrainRequest(str(voc), str(tmp_path / "b"), settings, device=CPU), RecordingProgress())
    bad = tmp_path / "bad"
    write_pascal_voc(bad, count=2, chip=32, seed=1)
    label = bad / "labels" / "000000001.xml"
    label.write_text(label.read_text().replace("<name>1</name>", "<name>9</name>").replace(
        "<name>2</name>", "<name>9</name>"))
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet50", max_epochs=1, batch_size=2)
    with pytest.raises(InputDataError, match="000000001.tif.*class '9'"):
        train_model(TrainRequest(str(bad), str(tmp_path / "c"), settings, device=CPU), RecordingProgress())


#: the keys arcgis.learn 2.4.4 writes into a MaskRCNN .emd (MaskRCNN._get_emd_params + _create_emd_template)
ARCGIS_MASKRCNN_KEYS = {
    "Framework", "ModelConfiguration", "InferenceFunction", "ModelType", "MaskRCNNkwargs", "ModelParameters",
    "ExtractBands", "SupportsVariableTileSize", "Classes", "ModelFormat", "MinCellSize", "MaxCellSize",
    "ArcGISLearnVersion", "ModelFile", "ImageHeight", "ImageWidth", "ImageSpaceUsed", "ModelName", "LearningRate",
    "IsImageNetNormalization", "resize_to", "average_precision_score"}


def test_mask_rcnn_tiny_run_loads_strictly_with_arcgis_keys_and_mask_ap(tmp_path):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    chips = write_rcnn_masks(tmp_path / "chips", count=6, chip=64, seed=4)
    progress = RecordingProgress()
    settings = TrainSettings(model_type="MaskRCNN", backbone="resnet50", max_epochs=1, batch_size=2,
                             learning_rate=1e-3, validation_percent=34, seed=0)
    result = train_model(TrainRequest(str(chips), str(tmp_path / "masks"), settings, device=CPU), progress)
    emd = json.loads(result.files["emd"].read_text())
    assert ARCGIS_MASKRCNN_KEYS <= set(emd)
    assert emd["ModelType"] == "InstanceDetection" and emd["ModelConfiguration"] == "_maskrcnn_inferencing"
    assert emd["ModelParameters"]["pointrend"] is False and emd["SupportsVariableTileSize"] is True
    state = torch.load(str(result.files["pth"]), map_location="cpu", weights_only=True)
    module = build_module(resolve_family(emd), emd, torchvision)
    module.load_state_dict(state, strict=True)
    assert set(state) == set(module.state_dict())
    metrics = json.loads(result.files["json"].read_text())["metrics"][0]
    assert set(metrics["average_precision"]) == {"square", "disc"} and 0.0 <= metrics["map"] <= 1.0
    assert any(line.strip().startswith("mAP ") for line in progress.infos)
    assert "objects" in progress.infos[0]


def test_mask_iou_and_turned_masks_keep_their_boxes():
    a = np.zeros((1, 6, 6), bool)
    a[0, :2, :3] = True  # 6 pixels
    b = np.zeros((2, 6, 6), bool)
    b[0, :2, :2] = True  # 4 pixels inside a
    b[1, 4:, 4:] = True
    assert mask_iou(a, b).tolist() == [[4 / 6, 0.0]]
    _, mask = shapes_scene(40, 40, 3, 9)
    masks = np.stack([mask == 1, mask == 2]).astype(np.uint8)
    for k in range(4):
        for flip in (False, True):
            turned = _turn_masks(masks, k, flip)
            _, moved = _turn(np.zeros((1, 40, 40)), _bounds(masks), k, flip)
            assert np.array_equal(moved, _bounds(turned)), (k, flip)
    assert mask_iou(np.zeros((0, 6, 6), bool), b).shape == (0, 2)  # no detection


def _bounds(masks: np.ndarray) -> np.ndarray:
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return np.asarray(out, np.float32)


def test_rcnn_masks_refusals(tmp_path):
    chips = write_rcnn_masks(tmp_path / "chips", count=2, chip=32, seed=1)
    (chips / "labels" / "7").mkdir()
    settings = TrainSettings(model_type="MaskRCNN", backbone="resnet50", max_epochs=1, batch_size=2)
    with pytest.raises(InputDataError, match="class value 7"):
        train_model(TrainRequest(str(chips), str(tmp_path / "m"), settings, device=CPU), RecordingProgress())
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet50", max_epochs=1, batch_size=2)
    with pytest.raises(InputDataError, match="MaskRCNN"):
        train_model(TrainRequest(str(chips), str(tmp_path / "f"), settings, device=CPU), RecordingProgress())


def test_faster_rcnn_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    """Seeded, CPU: cancelled during epoch 2 then run again, the kept weights equal a run never stopped (the RPN's
    and ROI heads' sampling draw from torch's generator, seeded per epoch by the loop)."""
    chips = write_pascal_voc(tmp_path / "chips", count=5, chip=64, seed=6)
    settings = dict(model_type="FasterRCNN", backbone="resnet50", max_epochs=2, batch_size=2, learning_rate=1e-3,
                    validation_percent=20, seed=1, stop_training=False)

    def run(out, progress):
        return train_model(TrainRequest(str(chips), str(tmp_path / out), TrainSettings(**settings), device=CPU),
                           progress)

    whole = run("whole", RecordingProgress())
    first = RecordingProgress(cancel_after=3)  # 2 batches an epoch: the 3rd update is epoch 2's first batch
    stopped = run("resumed", first)
    assert stopped.outcome.canceled and [h.epoch for h in stopped.outcome.history] == [1]
    assert json.loads(stopped.files["emd"].read_text())["ModelName"] == "FasterRCNN"  # a usable folder of epoch 1
    again = run("resumed", RecordingProgress())
    assert again.outcome.resumed_from == 1 and again.outcome.best_epoch == whole.outcome.best_epoch
    a = torch.load(str(whole.files["pth"]), weights_only=True)
    b = torch.load(str(again.files["pth"]), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_faster_rcnn_finds_its_learning_rate(tmp_path):
    """LEARNING_RATE empty: the finder tries growing rates on a few detector batches and the run uses what it found."""
    chips = write_pascal_voc(tmp_path / "chips", count=4, chip=64, seed=8)
    progress = RecordingProgress()
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet50", max_epochs=1, batch_size=2,
                             learning_rate=None, validation_percent=25, seed=0, lr_finder_steps=4)
    result = train_model(TrainRequest(str(chips), str(tmp_path / "lr"), settings, device=CPU), progress)
    found = [line for line in progress.infos if line.startswith("Learning rate found:")]
    assert found and 1e-6 <= result.outcome.learning_rate <= 1.0
    assert json.loads(result.files["emd"].read_text())["LearningRate"] == f"{result.outcome.learning_rate:1.4e}"


def test_faster_rcnn_on_multispectral_uint16_chips_scales_as_detect_objects(tmp_path):
    """4-band uint16 chips: NormalizationStats in the .emd; the chips reach the network min-max scaled (what
    Detect Objects' R-CNN rule does with those stats) and the rebuilt transform standardises with scaled_mean/std."""
    from builders import read_raster, write_raster
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.tools.train.chips import training_normalisation
    from dltools.core.tools.train.detection import DetectionReader, rcnn_normalisation
    from dltools.core.tools.train.layouts import read_training_folder

    chips = write_pascal_voc(tmp_path / "chips", count=4, chip=64, seed=9)
    for path in sorted((chips / "images").glob("*.tif")):
        rgb = read_raster(path).astype(np.uint16)
        write_raster(path, np.concatenate([rgb * 40, rgb[:1] * 7 + 1000]).astype(np.uint16), block=None)
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet50", max_epochs=1, batch_size=2,
                             learning_rate=1e-3, validation_percent=25, seed=0)
    result = train_model(TrainRequest(str(chips), str(tmp_path / "ms"), settings, device=CPU), RecordingProgress())
    emd = json.loads(result.files["emd"].read_text())
    stats = emd["NormalizationStats"]
    assert emd["IsMultispectral"] is True and emd["ExtractBands"] == [0, 1, 2, 3]
    module = build_module(resolve_family(emd), emd, torchvision)
    module.load_state_dict(torch.load(str(result.files["pth"]), weights_only=True), strict=True)
    assert module.transform.image_mean == pytest.approx(stats["scaled_mean_values"])
    data = read_training_folder(chips, "FasterRCNN")
    reader = DetectionReader(data, rcnn_normalisation(training_normalisation(data, 4, "uint16")), (4, 64, 64))
    raw = read_raster(data.images[0]).astype(np.float64)
    low, high = np.asarray(stats["band_min_values"]), np.asarray(stats["band_max_values"])
    expected = (raw - low[:, None, None]) / (high - low)[:, None, None]
    assert np.allclose(reader.image(0), expected, atol=1e-6)


def test_faster_rcnn_fine_tunes_a_trained_folder_with_a_frozen_backbone(trained, voc, tmp_path):
    """PRETRAINED_MODEL (the tiny run's .emd) and FREEZE: every tensor is taken, the backbone's weights stay."""
    first, _ = trained
    progress = RecordingProgress()
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet50", max_epochs=1, batch_size=2,
                             learning_rate=1e-3, validation_percent=34, seed=0, freeze=True)
    again = train_model(TrainRequest(str(voc), str(tmp_path / "tuned"), settings, device=CPU,
                                     pretrained_model=str(first.files["emd"])), progress)
    assert any(line.startswith("Fine-tuning") and "left to train afresh" not in line for line in progress.infos)
    before = torch.load(str(first.files["pth"]), weights_only=True)
    after = torch.load(str(again.files["pth"]), weights_only=True)
    conv = "backbone.body.layer1.0.conv1.weight"
    assert torch.equal(before[conv], after[conv])  # frozen
    head = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(before[head], after[head])  # trained

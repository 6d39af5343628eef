# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model, SingleShotDetector and RetinaNet on PASCAL_VOC_rectangles chips (squares and discs of
two classes on noise, 64-pixel chips), resnet18 from random weights on the CPU: the folder is arcgis.learn's (the
.pth keys of the network arcgis.learn builds, loaded strictly into the inference rebuild; the .emd keys arcgis.learn
writes), the validation AP is what Detect Objects would find on those chips, a resumed training ends with the weights
of an uninterrupted one and a cancelled one leaves a usable folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from builders import RecordingProgress, write_raster  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import shapes_scene, write_pascal_voc  # noqa: E402

CPU = DeviceRequest("cpu", threads=2)

#: family -> its ARGUMENTS in these tests
RUNS = {"SingleShotDetector": "grids [4];zooms [0.7, 1.0];seed 0", "RetinaNet": "scales [0.4, 0.6, 0.8];ratios [1.0];seed 0"}

#: the keys arcgis.learn 2.4.4 writes into each family's .emd (_get_emd_params + _create_emd_template)
COMMON_KEYS = {"Framework", "InferenceFunction", "ModelConfiguration", "ModelType", "ExtractBands", "Classes",
               "ModelFormat", "MinCellSize", "MaxCellSize", "SupportsVariableTileSize", "ArcGISLearnVersion",
               "ModelFile", "ImageHeight", "ImageWidth", "ImageSpaceUsed", "LearningRate", "ModelName", "backend",
               "ModelParameters", "resize_to", "IsMultispectral", "IsImageNetNormalization",
               "average_precision_score", "monitored_valid_loss"}
FAMILY_KEYS = {"SingleShotDetector": {"backbone", "Grids", "Zooms", "Ratios", "SSDVersion"}, "RetinaNet": set()}
CONFIGURATION = {"SingleShotDetector": "_DynamicSSD", "RetinaNet": "_RetinaNet_Inference"}


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return write_pascal_voc(tmp_path_factory.mktemp("voc") / "chips", count=12, chip=64, seed=21)


@pytest.fixture(scope="module", params=list(RUNS))
def trained(request, voc, tmp_path_factory):
    family = request.param
    progress = RecordingProgress()
    settings = TrainSettings(model_type=family, backbone="resnet18", max_epochs=2, batch_size=4,
                             learning_rate=1e-3, validation_percent=25, seed=0, stop_training=False)
    result = train_model(TrainRequest(str(voc), str(tmp_path_factory.mktemp(family) / "shapes"), settings,
                                      device=CPU, arguments=RUNS[family]), progress)
    return family, result, progress


def test_validation_ap_is_recorded_in_the_log_emd_html_and_json(trained):
    family, result, progress = trained
    history = json.loads(result.files["json"].read_text())
    assert history["epochs"] == [1, 2] and len(history["metrics"]) == 2
    kept = next(h for h in result.outcome.history if h.epoch == result.outcome.best_epoch)
    assert set(kept.metrics["average_precision"]) == {"square", "disc"} and kept.metrics["iou_threshold"] == 0.5
    emd = json.loads(result.files["emd"].read_text())
    assert emd["average_precision_score"] == {n: r["ap"] for n, r in kept.metrics["average_precision"].items()}
    assert emd["monitored_valid_loss"] == pytest.approx(kept.valid_loss)
    assert any(line.startswith("epoch 2/2") and "mAP" in line for line in progress.infos)
    assert any(line.strip().startswith("mAP ") for line in progress.infos)
    assert f"mAP {kept.metrics['map']:.4f}" in result.files["html"].read_text()
    assert any(line.startswith(f"{family if family == 'RetinaNet' else 'SSD'} anchors:") for line in progress.infos)


def _body_keys(backbone: str, prefix: str) -> set[str]:
    """torchvision's ResNet keys as fastai's create_body numbers its children (conv1 0, bn1 1, layer1..4 4..7)."""
    numbers = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    keys = getattr(torchvision.models, backbone)(weights=None).state_dict()
    return {prefix + numbers[k.split(".")[0]] + k[len(k.split(".")[0]):] for k in keys if not k.startswith("fc.")}


def _bn(prefix: str) -> set[str]:
    return {f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def _arcgis_learn_keys(family: str) -> set[str]:
    """The state_dict keys arcgis.learn's own network has for this training (resnet18, one grid / the FPN)."""
    conv = lambda p: {f"{p}.weight", f"{p}.bias"}  # noqa: E731
    if family == "SingleShotDetector":  # Sequential(body, SSDHeadv2): one stride-1 conv, then one per grid
        keys = _body_keys("resnet18", "0.")
        for i in range(2):
            keys |= conv(f"1.sconvs.{i}.conv") | _bn(f"1.sconvs.{i}.bn")
        return keys | conv("1.oconvs.0.oconv1") | conv("1.oconvs.0.oconv2")
    keys = _body_keys("resnet18", "encoder.")
    keys |= conv("c5top5") | conv("c5top6") | conv("p6top7.1") | conv("merges.0.conv_lat") | conv("merges.1.conv_lat")
    for i in range(3):
        keys |= conv(f"smoothers.{i}")
    for head in ("classifier", "box_regressor"):
        for i in range(4):  # fastai conv_layer: conv (bias), ReLU, BatchNorm
            keys |= conv(f"{head}.{i}.0") | _bn(f"{head}.{i}.2")
        keys |= conv(f"{head}.4")
    return keys


def test_the_folder_is_arcgis_learn_s(trained):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    family, result, _ = trained
    emd = json.loads(result.files["emd"].read_text())
    assert COMMON_KEYS | FAMILY_KEYS[family] <= set(emd)
    assert (emd["ModelName"], emd["ModelConfiguration"], emd["ModelType"]) == (family, CONFIGURATION[family],
                                                                               "ObjectDetection")
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectDetector.py"
    assert emd["ModelParameters"]["backbone"] == "resnet18" and emd["IsImageNetNormalization"] is True
    if family == "SingleShotDetector":
        assert (emd["backbone"], emd["Grids"], emd["Zooms"], emd["Ratios"], emd["SSDVersion"]) == (
            "resnet18", [4], [0.7, 1.0], [[1.0, 1.0]], 2)
    else:
        assert emd["ModelParameters"]["scales"] == [0.4, 0.6, 0.8] and emd["ModelParameters"]["ratios"] == [1.0]
    state = torch.load(str(result.files["pth"]), map_location="cpu", weights_only=True)
    assert set(state) == _arcgis_learn_keys(family)
    module = build_module(resolve_family(emd), emd, torchvision)
    module.load_state_dict(state, strict=True)
    for key in ("html", "json", "loss_graph", "show_results", "dlpk"):
        assert result.files[key].is_file(), key


def test_detect_objects_finds_what_the_validation_counted(trained, voc, tmp_path, monkeypatch):
    """Detect Objects on a new scene (one 64-pixel tile, no padding) with the validation's NMS overlap gives exactly
    the objects the trainer's validation decodes from the same chip (threshold lowered to 0.01 for both, so that
    the two-epoch networks give some): the AP measures what the tool will find."""
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.detect_objects.pipeline import detect_objects
    from dltools.core.tools.train import anchor_detection
    from osgeo import ogr

    VALIDATION_NMS, VALIDATION_THRESHOLD = anchor_detection.VALIDATION_NMS, 0.01  # noqa: N806
    monkeypatch.setattr(anchor_detection, "VALIDATION_THRESHOLD", VALIDATION_THRESHOLD)
    family, result, _ = trained
    image, _ = shapes_scene(64, 64, 3, seed=4242)
    raster = write_raster(tmp_path / "scene.tif", image, origin=(0.0, 64.0))
    md = load_model_definition(str(result.files["dlpk"]))
    found = detect_objects(str(raster), md, f"padding 0;threshold {VALIDATION_THRESHOLD};nms_overlap {VALIDATION_NMS}",
                           device=CPU).objects
    got = []
    for obj in found:
        xmin, xmax, ymin, ymax = ogr.CreateGeometryFromWkb(obj.wkb).GetEnvelope()
        got.append((obj.class_name, obj.confidence, xmin, 64 - ymax, xmax, 64 - ymin))
    trainer, reader = _trainer_of(result, voc)
    x = image.astype(np.float32)  # as the reader normalises a chip
    x *= reader.norm.scale[:, None, None].astype(np.float32)
    x += reader.norm.offset[:, None, None].astype(np.float32)
    want = trainer.predict(torch.from_numpy(x[None]))[0]
    names = ["square", "disc"]
    expected = [(names[lab - 1], 100 * float(s), *np.clip(b, 0, 64).tolist())
                for lab, s, b in zip(want["labels"], want["scores"], want["boxes"])]
    assert len(got) == len(expected) > 0
    def order(t):  # noqa: ANN001, ANN202 - by class and place (confidences may tie)
        return t[0], round(t[2], 1), round(t[3], 1)

    for g, e in zip(sorted(got, key=order), sorted(expected, key=order)):
        assert g[0] == e[0] and g[1:] == pytest.approx(e[1:], abs=1e-3), (got, expected)


def test_retinanet_loss_is_computed_on_what_eval_mode_runs(trained, voc):
    """After training, the loss the trainer computes (its training mode) equals the loss of the network in eval
    mode, as Detect Objects runs it, once the body's batch norms take the batch's statistics as in training: the
    shared head subnets do the same in both modes.  Before, they normalised each pyramid level on its own in
    training and used one running average in eval mode (a loss of 0.45 in training mode was 10.6 in eval mode)."""
    from dltools.core.tools.train.detection import detection_batches

    family, result, _ = trained
    if family != "RetinaNet":
        pytest.skip("SSD's head has no subnet shared by several maps")
    trainer, reader = _trainer_of(result, voc)
    images, targets = next(detection_batches(reader, list(range(8)), 8, torch))

    def loss(mode):  # noqa: ANN001, ANN202 - the same running statistics for each (a forward in training mode
        state = {k: v.clone() for k, v in trainer.module.state_dict().items()}  # updates the body's)
        mode()
        with torch.no_grad():
            value = float(trainer._loss(images, targets)[0])
        trainer.module.load_state_dict(state)
        return value

    def eval_but_body():  # noqa: ANN202
        trainer.module.eval()
        for norm in trainer.module.encoder.modules():
            if "BatchNorm" in type(norm).__name__:
                norm.train()

    trained_loss = loss(trainer.train_mode)
    assert loss(eval_but_body) == pytest.approx(trained_loss, rel=1e-5)
    assert loss(trainer.module.train) != pytest.approx(trained_loss, rel=1e-2)  # what training did before


def _trainer_of(result, voc):  # noqa: ANN001, ANN202
    """A trainer holding the trained folder's network and its chip reader, for its predict()."""
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.tools.train.anchor_detection import AnchorDetectionTrainer
    from dltools.core.tools.train.chips import training_normalisation
    from dltools.core.tools.train.detection import DetectionReader
    from dltools.core.tools.train.layouts import read_training_folder

    emd = json.loads(result.files["emd"].read_text())
    module = build_module(resolve_family(emd), emd, torchvision)
    module.load_state_dict(torch.load(str(result.files["pth"]), weights_only=True), strict=True)
    data = read_training_folder(voc, emd["ModelName"])
    reader = DetectionReader(data, training_normalisation(data, 3, "uint8"), (3, 64, 64))
    settings = TrainSettings(model_type=emd["ModelName"], backbone="resnet18", batch_size=4)
    trainer = AnchorDetectionTrainer(module, reader, settings, ["square", "disc"], False, torch, torch.device("cpu"),
                                     RecordingProgress(), result.folder / "unused", {})
    trainer.configure(emd, {})
    return trainer, reader


@pytest.mark.parametrize("family", list(RUNS))
def test_resume_gives_the_weights_of_an_uninterrupted_run_and_cancel_a_usable_folder(family, tmp_path):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module

    chips = write_pascal_voc(tmp_path / "chips", count=6, chip=64, seed=6)
    settings = dict(model_type=family, backbone="resnet18", max_epochs=2, batch_size=2, learning_rate=1e-3,
                    validation_percent=20, seed=1, stop_training=False)

    def run(out, progress):
        return train_model(TrainRequest(str(chips), str(tmp_path / out), TrainSettings(**settings), device=CPU,
                                        arguments=RUNS[family]), progress)

    whole = run("whole", RecordingProgress())
    stopped = run("resumed", RecordingProgress(cancel_after=3))  # 2 batches an epoch: the 3rd is epoch 2's first
    assert stopped.outcome.canceled and [h.epoch for h in stopped.outcome.history] == [1]
    emd = json.loads(stopped.files["emd"].read_text())  # a usable folder of epoch 1
    build_module(resolve_family(emd), emd, torchvision).load_state_dict(
        torch.load(str(stopped.files["pth"]), weights_only=True), strict=True)
    again = run("resumed", RecordingProgress())
    assert again.outcome.resumed_from == 1 and again.outcome.best_epoch == whole.outcome.best_epoch
    a = torch.load(str(whole.files["pth"]), weights_only=True)
    b = torch.load(str(again.files["pth"]), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_default_grids_are_chosen_from_the_boxes_and_said(tmp_path):
    """No grids given: the .emd's Grids come from the training boxes: shapes of 11 to 21 pixels of 64 make two
    k-means clusters (larger sides about 1/6 and 1/3 of the chip), hence grids 6 and 3, which the 2 x 2 map of the
    whole resnet18 would reach by upsampling: one grid of 9 cells on the cut body, zooms 9 / 6 and 9 / 3."""
    chips = write_pascal_voc(tmp_path / "chips", count=4, chip=64, seed=8)
    progress = RecordingProgress()
    settings = TrainSettings(model_type="SingleShotDetector", backbone="resnet18", max_epochs=1, batch_size=2,
                             learning_rate=1e-3, validation_percent=25, seed=0)
    result = train_model(TrainRequest(str(chips), str(tmp_path / "ssd"), settings, device=CPU), progress)
    emd = json.loads(result.files["emd"].read_text())
    assert emd["Grids"] == [9] and emd["Zooms"] == [1.5, 3.0] and emd["Ratios"] == [[1.0, 1.0]]
    assert any("grids [9] (chosen from the training boxes: grids [6, 3] would be upsampled from the 2 x 2 map"
               in line for line in progress.infos)
    assert not any(k.startswith("0.7.") for k in torch.load(str(result.files["pth"]), weights_only=True))


def _copies(folder, count: int = 8):  # noqa: ANN001, ANN202
    """A PASCAL_VOC_rectangles folder of ``count`` chips that are copies of two: whatever the validation split, the
    validation chips are chips the network trains on."""
    import shutil

    source = write_pascal_voc(folder.parent / "two", count=2, chip=64, seed=21)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    lines = []
    for i in range(count):
        for kind, ext in (("images", "tif"), ("labels", "xml")):
            shutil.copy(source / kind / f"{i % 2:09d}.{ext}", folder / kind / f"{i:09d}.{ext}")
        lines.append(f"images\\{i:09d}.tif labels\\{i:09d}.xml")
    (folder / "map.txt").write_text("\n".join(lines) + "\n")
    for name in ("esri_model_definition.emd", "esri_accumulated_stats.json"):
        shutil.copy(source / name, folder / name)
    return folder


#: learning rate of the seen-chips runs (batches of 2): RetinaNet's training loss spikes at 2e-3
SEEN_RATE = {"SingleShotDetector": 2e-3, "RetinaNet": 1e-3}


@pytest.mark.parametrize("family", list(RUNS))
def test_losses_matching_and_decoding_learn_the_chips_they_see(family, tmp_path):
    """From random weights, trained on six chips and validated on copies of them (no augmentation), the training
    loss falls tenfold in eight epochs.  SingleShotDetector's validation mAP at IoU 0.5, decoded as Detect Objects
    decodes, reaches 0.5.  RetinaNet's stays 0 here: with batches of two chips its validation loss in eval mode
    stays far above its training loss (1.6 against 0.03 after 8 epochs), and the whole difference is the body's
    batch norms, whose running statistics of two-chip batches do not stand for a batch (measured: with the body's
    batch norms on the batch's statistics, eval mode gives the training loss exactly; its shared subnets are the
    same in both modes, test_train_anchor_parts.py).  Both families learning new chips, at batches of 8:
    test_train_anchor_learns.py."""
    chips = _copies(tmp_path / "chips")
    progress = RecordingProgress()
    settings = TrainSettings(model_type=family, backbone="resnet18", max_epochs=8, batch_size=2,
                             learning_rate=SEEN_RATE[family], validation_percent=25, seed=0, stop_training=False,
                             augmentation=False)
    result = train_model(TrainRequest(str(chips), str(tmp_path / "memo"), settings, device=CPU,
                                      arguments=RUNS[family]), progress)
    history = result.outcome.history
    print(family, [(h.epoch, round(h.train_loss, 3), round(h.valid_loss, 3), round(h.metrics["map"], 3),
                    round(h.seconds, 1)) for h in history])
    assert history[-1].train_loss < history[0].train_loss / 10
    if family == "SingleShotDetector":
        assert max(h.metrics["map"] for h in history) >= 0.5, progress.infos

# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model: checkpoints and resume, cancel, the learning-rate finder, backbone weights, and the
clear refusals (layouts, empty folders, classes the .emd does not list)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from builders import RecordingProgress  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.errors import ArgumentError, CancelledError, InputDataError, OutputError  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import write_classified_tiles, write_labeled_tiles  # noqa: E402

CPU = DeviceRequest("cpu", threads=1)


def _settings(**kw) -> TrainSettings:
    base = {"model_type": "UnetClassifier", "backbone": "resnet18", "max_epochs": 2, "batch_size": 4,
            "learning_rate": 0.003, "validation_percent": 25, "seed": 0}
    return TrainSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    return write_classified_tiles(tmp_path_factory.mktemp("chips") / "data", count=10, chip=32, seed=2)


def _run(chips, out, progress=None, **kw):
    return train_model(TrainRequest(str(chips), str(out), _settings(**kw), device=CPU), progress or RecordingProgress())


def test_resume_gives_the_weights_of_an_uninterrupted_run(chips, tmp_path):
    whole = _run(chips, tmp_path / "whole", max_epochs=2)
    # stopped during epoch 2 (2 training batches an epoch: the 3rd progress update is epoch 2's first batch)
    first = RecordingProgress(cancel_after=3)
    stopped = _run(chips, tmp_path / "resumed", first, max_epochs=2)
    assert stopped.outcome.canceled and [h.epoch for h in stopped.outcome.history] == [1]
    assert any("cancelled during epoch 2" in w for w in first.warnings)
    again = RecordingProgress()
    resumed = _run(chips, tmp_path / "resumed", again, max_epochs=2)
    assert resumed.outcome.resumed_from == 1
    assert any("Resuming from the checkpoint of epoch 1" in line for line in again.infos)
    a = torch.load(str(tmp_path / "whole/checkpoints/last.pth"), weights_only=True)
    b = torch.load(str(tmp_path / "resumed/checkpoints/last.pth"), weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert list(a["model"]) == list(b["model"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h.valid_loss for h in whole.outcome.history] == [h.valid_loss for h in resumed.outcome.history]
    # other settings: the old checkpoint is not used, and the log says why
    other = RecordingProgress()
    _run(chips, tmp_path / "resumed", other, max_epochs=1, seed=5)
    assert any("belongs to another training" in w and "seed" in w for w in other.warnings)


def test_cancel_keeps_the_best_finished_epoch_and_a_usable_folder(chips, tmp_path):
    from dltools.core.model.loader import load_model_definition

    progress = RecordingProgress(cancel_after=3)
    result = _run(chips, tmp_path / "cancelled", progress, max_epochs=5)
    assert result.outcome.canceled and result.outcome.best_epoch == 1
    emd = tmp_path / "cancelled" / "cancelled.emd"
    md = load_model_definition(str(emd))
    assert md.arcgis_family.model_name == "UnetClassifier"
    assert any("the model folder holds epoch 1" in w for w in progress.warnings)
    with pytest.raises(CancelledError, match="before the first epoch ended"):
        _run(chips, tmp_path / "too_early", RecordingProgress(cancel_after=1), max_epochs=5)
    assert not (tmp_path / "too_early" / "too_early.emd").exists()


def test_empty_learning_rate_runs_the_finder(chips, tmp_path):
    progress = RecordingProgress()
    result = train_model(TrainRequest(str(chips), str(tmp_path / "found"),
                                      _settings(learning_rate=None, max_epochs=1, lr_finder_steps=6), device=CPU),
                         progress)
    found = [line for line in progress.infos if line.startswith("Learning rate found: ")]
    # ... and the model it wrote is fine-tuned from (PRETRAINED_MODEL), every tensor taken
    tuned = RecordingProgress()
    train_model(TrainRequest(str(chips), str(tmp_path / "tuned"), _settings(max_epochs=1),
                             pretrained_model=str(tmp_path / "found" / "found.dlpk"), device=CPU), tuned)
    assert any(line.startswith("Fine-tuning 'found.dlpk': ") and "tensors taken" in line and "afresh" not in line
               for line in tuned.infos), tuned.infos
    assert len(found) == 1
    rate = float(found[0].split()[3])
    assert 1e-5 <= rate <= 1e-2 and result.outcome.learning_rate == pytest.approx(rate, rel=1e-3)
    assert len(result.outcome.finder["rates"]) >= 3
    assert result.emd["LearningRate"] == f"{result.outcome.learning_rate:1.4e}"


def test_a_local_backbone_file_and_freeze(chips, tmp_path):
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    torch.manual_seed(7)
    for p in resnet.parameters():
        torch.nn.init.normal_(p, std=0.01)
    weights = tmp_path / "resnet18-local.pth"
    torch.save(resnet.state_dict(), str(weights))
    progress = RecordingProgress()
    request = TrainRequest(str(chips), str(tmp_path / "frozen"), _settings(max_epochs=1, freeze=True),
                           pretrained_backbone=str(weights), device=CPU)
    train_model(request, progress)
    assert any("Backbone weights from 'resnet18-local.pth'" in line for line in progress.infos)
    state = torch.load(str(tmp_path / "frozen" / "frozen.pth"), weights_only=True)
    assert torch.equal(state["layers.0.0.weight"], resnet.conv1.weight)  # frozen: as loaded
    assert torch.equal(state["layers.0.7.1.conv2.weight"], resnet.layer4[1].conv2.weight)
    bad = tmp_path / "not_a_resnet.pth"
    torch.save({"x": torch.zeros(3)}, str(bad))
    request = TrainRequest(str(chips), str(tmp_path / "bad"), _settings(max_epochs=1), pretrained_backbone=str(bad),
                           device=CPU)
    with pytest.raises(InputDataError, match="PRETRAINED_BACKBONE .* is not the state_dict of the backbone"):
        train_model(request, RecordingProgress())


# ------------------------------------------------------------------------------------------ refusals
def test_clear_errors_for_folders_the_tool_cannot_train_on(chips, tmp_path):
    def refused(folder, model_type="UnetClassifier", out=None):
        with pytest.raises((InputDataError, OutputError)) as info:
            train_model(TrainRequest(str(folder), str(out or tmp_path / "out"), _settings(model_type=model_type),
                                     device=CPU))
        return str(info.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is empty" in refused(empty) and str(empty) in refused(empty)
    assert "does not exist" in refused(tmp_path / "nowhere")
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "esri_accumulated_stats.json").write_text(json.dumps({"MetaDataMode": "KITTI_rectangles"}))
    assert "'KITTI_rectangles' layout" in refused(voc) and "Classified_Tiles" in refused(voc)
    labeled = write_labeled_tiles(tmp_path / "labeled", count=4, chip=32)
    assert "UnetClassifier trains on Classified_Tiles" in refused(labeled)
    assert "overlaps the training data" in refused(chips, out=chips / "model")


def test_a_label_with_a_class_the_emd_does_not_list(tmp_path):
    from builders import write_raster

    data = write_classified_tiles(tmp_path / "data", count=4, chip=32, seed=3)
    label = np.zeros((32, 32), np.uint8)
    label[4:9, 4:9] = 7
    write_raster(data / "labels" / "000000002.tif", label, block=None)
    with pytest.raises(InputDataError, match=r"'000000002.tif' .* holds class value\(s\) \[7\] that "
                                             r"esri_model_definition.emd does not list"):
        train_model(TrainRequest(str(data), str(tmp_path / "out"), _settings(), device=CPU))
    (data / "map.txt").write_text("images\\000000000.tif labels\\000000000.tif\nimages\\gone.tif labels\\gone.tif\n")
    with pytest.raises(InputDataError, match=r"map.txt line 2 names 'images/gone.tif'"):
        train_model(TrainRequest(str(data), str(tmp_path / "out"), _settings(), device=CPU))
    emd = json.loads((data / "esri_model_definition.emd").read_text())
    (data / "esri_model_definition.emd").write_text(json.dumps({**emd, "Classes": []}))
    with pytest.raises(InputDataError, match="lists no Classes"):
        train_model(TrainRequest(str(data), str(tmp_path / "out"), _settings(), device=CPU))


def test_unknown_arguments_are_refused(chips, tmp_path):
    with pytest.raises(ArgumentError, match="'chip_size' is not an argument of Train Deep Learning Model"):
        train_model(TrainRequest(str(chips), str(tmp_path / "o"), _settings(), arguments="chip_size 64", device=CPU))


def test_download_backbone_reads_torchvision_s_cache_with_weights_only(tmp_path, monkeypatch):
    """DOWNLOAD_BACKBONE: torchvision's ImageNet file, found in torchvision's cache (no network here), goes into the
    body; a file that is not plain tensors is refused (weights_only)."""
    import torchvision
    from dltools.core.tools.train.networks import imagenet_state, load_backbone_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), str(cache / "resnet18-f37072fd.pth"))
    state, name = imagenet_state(torchvision, "resnet18")
    assert name == "resnet18-f37072fd.pth"
    from dltools.core.backends.arcgis_learn.fastai_layers import create_body
    from dltools.core.backends.arcgis_learn.unet import DynamicUnet

    net = DynamicUnet(create_body(torchvision, "resnet18", 3), 3, (32, 32), 3)
    progress = RecordingProgress()
    load_backbone_weights(net, "UnetClassifier", Path(name), torch, progress, state=state)
    assert torch.equal(net.state_dict()["layers.0.4.0.conv1.weight"], resnet.layer1[0].conv1.weight)
    assert len(progress.infos) == 1 and progress.infos[0].startswith("Backbone weights from 'resnet18-f37072fd.pth': ")
    assert "not taken" not in progress.infos[0]

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled",))

    torch.save({"x": Evil()}, str(cache / "resnet18-f37072fd.pth"))
    with pytest.raises(InputDataError, match="DOWNLOAD_BACKBONE: torchvision's ImageNet weights for resnet18"):
        imagenet_state(torchvision, "resnet18")


def test_class_balancing_focal_loss_and_ignore_classes_reach_the_emd_and_classify_pixels(chips, tmp_path):
    from builders import read_raster, write_raster
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels
    from training_data_builders import shapes_scene

    progress = RecordingProgress()
    result = train_model(TrainRequest(str(chips), str(tmp_path / "weighted"), _settings(max_epochs=1),
                                      arguments="class_balancing true;focal_loss true;ignore_classes [2]",
                                      device=CPU), progress)
    weights = next(line for line in progress.infos if line.startswith("Loss weights per class: "))
    assert weights.startswith("Loss weights per class: background 0, square ") and weights.endswith(", disc 0")
    assert np.isfinite(result.outcome.history[0].train_loss)
    emd = json.loads((tmp_path / "weighted" / "weighted.emd").read_text())
    assert emd["ignore_mapped_class"] == [0, 2]
    # Classify Pixels suppresses the ignored channels: every pixel is the one class left
    image, _ = shapes_scene(32, 32, 2, seed=1)
    raster = write_raster(tmp_path / "scene.tif", image)
    classify_pixels(str(raster), load_model_definition(str(tmp_path / "weighted" / "weighted.emd")),
                    str(tmp_path / "c.tif"), device=CPU)
    assert np.unique(read_raster(tmp_path / "c.tif")).tolist() == [1]

# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model, UnetClassifier on Classified_Tiles: training, the model folder, then Classify Pixels.

One training (module fixture: 32 chips of 32 pixels, resnet18 from random weights, 4 epochs, seeded, CPU) feeds the
tests of the folder's files, the .pth's keys and strict loading, the .emd's keys and the inference on a new scene.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from builders import RecordingProgress, read_raster, write_raster  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import CLASSES, shapes_scene, write_classified_tiles  # noqa: E402

CPU = DeviceRequest("cpu", threads=1)  # one thread: far faster than two on a shared, busy CPU
CHIP = 32

#: The keys arcgis.learn 2.4.4 writes into a UnetClassifier .emd (``_create_emd_template`` + ``_unet._get_emd_params``
#: + ``_model_metrics``; ``per_class_metrics`` and ``monitored_valid_loss`` with metrics and checkpointing on).
UNET_EMD_KEYS = {"Framework", "ModelConfiguration", "ModelType", "InferenceFunction", "ExtractBands",
                 "ignore_mapped_class", "SupportsVariableTileSize", "Classes", "ModelFormat", "MinCellSize",
                 "MaxCellSize", "ArcGISLearnVersion", "monitored_valid_loss", "ModelFile", "ImageHeight", "ImageWidth",
                 "ImageSpaceUsed", "LearningRate", "ModelName", "backend", "ModelParameters", "accuracy", "resize_to",
                 "IsMultispectral", "IsImageNetNormalization", "per_class_metrics"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_unet")
    data = write_classified_tiles(root / "chips", count=40, chip=CHIP, seed=1)
    progress = RecordingProgress()
    settings = TrainSettings(model_type="UnetClassifier", backbone="resnet18", max_epochs=6, batch_size=8,
                             learning_rate=0.003, validation_percent=20, seed=0)
    result = train_model(TrainRequest(str(data), str(root / "shapes_model"), settings, device=CPU), progress)
    return root, result, progress


def test_training_reaches_the_stated_score(trained):
    _, result, progress = trained
    best = next(h for h in result.outcome.history if h.epoch == result.outcome.best_epoch)
    assert best.metrics["accuracy"] >= 0.88, progress.infos  # measured 0.908
    assert best.metrics["miou"] >= 0.70, progress.infos  # measured 0.794
    assert set(best.metrics["per_class"]) == {"background", "square", "disc"}
    # the log has a line per epoch and the per-class table
    assert sum(line.startswith("epoch ") for line in progress.infos) == len(result.outcome.history)
    assert any("precision  recall" in line for line in progress.infos)
    assert any("starts from random weights" in line for line in progress.infos)


def test_the_folder_holds_what_arcgis_learn_writes(trained):
    root, result, _ = trained
    folder = root / "shapes_model"
    for name in ("shapes_model.pth", "shapes_model.emd", "shapes_model.dlpk", "model_metrics.html",
                 "training_validation_loss.json", "ModelCharacteristics/loss_graph.png",
                 "ModelCharacteristics/show_results.png"):
        assert (folder / name).is_file(), name
    assert (folder / "ModelCharacteristics/show_results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    emd = json.loads((folder / "shapes_model.emd").read_text())
    assert UNET_EMD_KEYS <= set(emd), sorted(UNET_EMD_KEYS - set(emd))
    assert emd["ModelName"] == "UnetClassifier" and emd["ModelConfiguration"] == "_unet"
    assert emd["ModelParameters"]["backbone"] == "resnet18"
    assert emd["Classes"] == CLASSES and emd["ImageHeight"] == CHIP
    assert emd["InferenceFunction"].startswith("[Functions]System\\DeepLearning\\ArcGISLearn\\")
    assert emd["IsImageNetNormalization"] is True and emd["LearningRate"] == "3.0000e-03"
    losses = json.loads((folder / "training_validation_loss.json").read_text())
    assert losses["validation_loss"] == [h.valid_loss for h in result.outcome.history]
    html = (folder / "model_metrics.html").read_text()
    assert "data:image/png;base64," in html and "square" in html and "Learning Rate" in html
    import zipfile

    with zipfile.ZipFile(folder / "shapes_model.dlpk") as zf:
        names = set(zf.namelist())
    assert {"shapes_model.emd", "shapes_model.pth", "model_metrics.html",
            "ModelCharacteristics/show_results.png"} <= names
    assert not any(n.startswith("checkpoints") for n in names)


def test_the_pth_has_arcgis_learn_keys_and_loads_strictly(trained):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.backends.arcgis_learn.weights import load_strict, read_state_dict

    root, _, _ = trained
    folder = root / "shapes_model"
    emd = json.loads((folder / "shapes_model.emd").read_text())
    state = read_state_dict(torch, folder / "shapes_model.pth")  # weights_only=True
    rebuilt = build_module(resolve_family(emd), emd, torchvision)
    assert list(state) == list(rebuilt.state_dict())
    load_strict(rebuilt, state, "UnetClassifier", "shapes_model.pth")
    # fastai v1 DynamicUnet's layout for resnet18 (arcgis-learn-models.md): layers 0 body .. 11 final 1x1 conv
    assert sorted({int(k.split(".")[1]) for k in state}) == [0, 1, 3, 4, 5, 6, 7, 8, 10, 11]
    assert tuple(state["layers.0.0.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["layers.11.0.weight"].shape) == (3, 99, 1, 1)  # background + 2 classes


def test_classify_pixels_finds_the_shapes_on_a_new_scene(trained, tmp_path):
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    root, _, _ = trained
    image, truth = shapes_scene(96, 128, 8, seed=4242)
    raster = write_raster(tmp_path / "scene.tif", image)
    out = tmp_path / "classes.tif"
    for model in (root / "shapes_model" / "shapes_model.emd", root / "shapes_model" / "shapes_model.dlpk"):
        classify_pixels(str(raster), load_model_definition(str(model)), str(out), device=CPU)
        got = read_raster(out)
        agreement = float((got == truth).mean())
        assert agreement >= 0.93, agreement
        for value in (1, 2):  # each class found where it is, mostly
            assert (got[truth == value] == value).mean() >= 0.7, value

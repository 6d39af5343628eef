# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model beyond UnetClassifier: FeatureClassifier on Labeled_Tiles (then Classify Objects on a
new scene) and DeepLab on Classified_Tiles (a one-epoch run whose .pth loads strictly and classifies)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from builders import RecordingProgress, read_raster, write_raster  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import noise, paint, write_classified_tiles, write_labeled_tiles  # noqa: E402

CPU = DeviceRequest("cpu", threads=1)

#: ``_FeatureClassifier._get_emd_params`` adds these to the common keys (no metrics but accuracy here)
FEATURE_EMD_KEYS = {"Framework", "ModelConfiguration", "ModelType", "InferenceFunction", "MetaDataMode",
                    "ExtractBands", "CropSizeFixed", "BlackenAroundFeature", "ImageSpaceUsed", "Classes", "ModelFormat",
                    "ArcGISLearnVersion", "ModelFile", "ImageHeight", "ImageWidth", "LearningRate", "ModelName",
                    "backend", "ModelParameters", "IsMultispectral", "IsImageNetNormalization", "resize_to"}


def test_feature_classifier_trains_and_classify_objects_labels_new_shapes(tmp_path):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.backends.arcgis_learn.weights import load_strict, read_state_dict
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_objects.classifier import classify_objects
    from osgeo import ogr

    data = write_labeled_tiles(tmp_path / "chips", count=40, chip=32, seed=5)
    progress = RecordingProgress()
    settings = TrainSettings(model_type="FeatureClassifier", backbone="resnet18", max_epochs=5, batch_size=8,
                             learning_rate=0.003, validation_percent=20, seed=0)
    result = train_model(TrainRequest(str(data), str(tmp_path / "shapes_fc"), settings, device=CPU), progress)
    best = next(h for h in result.outcome.history if h.epoch == result.outcome.best_epoch)
    assert best.metrics["accuracy"] >= 0.85, progress.infos
    assert np.asarray(best.metrics["confusion_matrix"]).sum() == 8  # 20 % of 40 chips validate
    assert any("confusion (rows: truth)" in line for line in progress.infos)
    folder = tmp_path / "shapes_fc"
    emd = json.loads((folder / "shapes_fc.emd").read_text())
    assert FEATURE_EMD_KEYS <= set(emd), sorted(FEATURE_EMD_KEYS - set(emd))
    assert emd["ModelType"] == "ObjectClassification" and emd["MetaDataMode"] == "Labeled_Tiles"
    state = read_state_dict(torch, folder / "shapes_fc.pth")
    rebuilt = build_module(resolve_family(emd), emd, torchvision)
    assert list(state) == list(rebuilt.state_dict()) and "1.8.weight" in state  # Sequential(body, fastai head)
    load_strict(rebuilt, state, "FeatureClassifier", "shapes_fc.pth")

    # a new scene: six shapes, one polygon around each; Classify Objects names each one's class
    rng = np.random.default_rng(99)
    image = noise(rng, 64, 192)
    mask = np.zeros((64, 192), np.uint8)
    kinds = ["square", "disc", "disc", "square", "disc", "square"]
    for i, kind in enumerate(kinds):
        paint(image, mask, kind, 32, 16 + 32 * i, 11, rng)
    raster = write_raster(tmp_path / "scene.tif", np.clip(image, 0, 255).astype(np.uint8), origin=(0.0, 64.0))

    def box(i: int) -> bytes:
        x0, x1 = 16 + 32 * i - 13, 16 + 32 * i + 13
        ring = f"{x0} {19}, {x1} {19}, {x1} {45}, {x0} {45}, {x0} {19}"
        return bytes(ogr.CreateGeometryFromWkt(f"POLYGON (({ring}))").ExportToWkb())

    found = classify_objects(str(raster), [(i, box(i)) for i in range(len(kinds))],
                             load_model_definition(str(folder / "shapes_fc.dlpk")), device=CPU)
    assert [r.label for r in found] == kinds


def test_deeplab_trains_one_epoch_into_a_folder_classify_pixels_runs(tmp_path):
    from dltools.core.backends.arcgis_learn.families import resolve_family
    from dltools.core.backends.arcgis_learn.network import build_module
    from dltools.core.backends.arcgis_learn.weights import load_strict, read_state_dict
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    data = write_classified_tiles(tmp_path / "chips", count=6, chip=32, seed=6)
    settings = TrainSettings(model_type="DeepLab", backbone="resnet101", max_epochs=1, batch_size=3,
                             learning_rate=0.001, validation_percent=34, seed=0)
    train_model(TrainRequest(str(data), str(tmp_path / "dl"), settings, device=CPU), RecordingProgress())
    emd = json.loads((tmp_path / "dl" / "dl.emd").read_text())
    assert emd["ModelConfiguration"] == "_deeplab_infrencing" and emd["ModelParameters"]["backbone"] == "resnet101"
    # _deeplab._get_emd_params adds pointrend and keep_dilation to ModelParameters; the rest as UnetClassifier's
    assert {"pointrend", "keep_dilation"} <= set(emd["ModelParameters"])
    assert {"Framework", "ModelType", "InferenceFunction", "ExtractBands", "ignore_mapped_class",
            "SupportsVariableTileSize", "Classes", "ArcGISLearnVersion", "monitored_valid_loss", "ModelFile",
            "ImageHeight", "ImageWidth", "LearningRate", "ModelName", "backend", "accuracy", "per_class_metrics",
            "IsMultispectral", "IsImageNetNormalization", "resize_to"} <= set(emd)
    state = read_state_dict(torch, tmp_path / "dl" / "dl.pth")
    rebuilt = build_module(resolve_family(emd), emd, torchvision)
    assert list(state) == list(rebuilt.state_dict()) and "aux_classifier.4.weight" in state
    load_strict(rebuilt, state, "DeepLab", "dl.pth")
    raster = write_raster(tmp_path / "scene.tif", np.random.default_rng(1).integers(0, 255, (3, 32, 32)).astype(
        np.uint8))
    classify_pixels(str(raster), load_model_definition(str(tmp_path / "dl" / "dl.emd")), str(tmp_path / "o.tif"),
                    device=CPU)
    assert set(np.unique(read_raster(tmp_path / "o.tif"))) <= {0, 1, 2}


def test_multispectral_chips_get_normalization_stats_that_classify_pixels_uses(tmp_path):
    """Chips that are not 8-bit RGB (here 4 bands, uint16): NormalizationStats from the training chips in the .emd,
    and Classify Pixels, reading them, gives the network exactly the values the training gave it."""
    from dltools.core.engine.normalize import build_normaliser
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.train.chips import ChipReader, chip_shape, training_normalisation
    from dltools.core.tools.train.layouts import read_training_folder

    data = write_classified_tiles(tmp_path / "chips", count=6, chip=32, seed=8)
    for path in sorted((data / "images").glob("*.tif")):
        rgb = read_raster(path).astype(np.uint16)
        write_raster(path, np.concatenate([rgb * 40, (rgb[:1] + rgb[2:3]) * 20]), block=None)
    settings = TrainSettings(model_type="UnetClassifier", backbone="resnet18", max_epochs=1, batch_size=4,
                             learning_rate=0.003, validation_percent=34, seed=0)
    train_model(TrainRequest(str(data), str(tmp_path / "ms"), settings, device=CPU), RecordingProgress())
    emd = json.loads((tmp_path / "ms" / "ms.emd").read_text())
    assert emd["IsImageNetNormalization"] is False and emd["IsMultispectral"] is True
    assert emd["ExtractBands"] == [0, 1, 2, 3]
    stack = np.stack([read_raster(p).astype(np.float64) for p in sorted((data / "images").glob("*.tif"))])
    stats = emd["NormalizationStats"]
    assert stats["band_min_values"] == stack.min(axis=(0, 2, 3)).tolist()
    assert stats["band_max_values"] == stack.max(axis=(0, 2, 3)).tolist()
    np.testing.assert_allclose(stats["band_mean_values"], stack.mean(axis=(0, 2, 3)), rtol=1e-9)
    # the inference side's normaliser (Classify Pixels) equals the training's on a chip
    md = load_model_definition(str(tmp_path / "ms" / "ms.emd"))
    infer = build_normaliser(md, [0, 1, 2, 3], "uint16", lambda i: (0.0, 0.0))
    training = read_training_folder(data, "UnetClassifier")
    bands, rows, cols, dtype = chip_shape(training)
    reader = ChipReader(training, training_normalisation(training, bands, dtype), (bands, rows, cols))
    chip = stack[0].astype(np.float32)
    np.testing.assert_allclose(infer.apply(chip.copy()), reader.image(0), rtol=1e-5, atol=1e-5)


def test_feature_classifier_on_the_plugin_s_bounding_box_export(tmp_path):
    """Labeled_Tiles written by this plugin's exporter in BOUNDING_BOX mode hold chips of many sizes: each is resized
    to the export's tile size as Classify Objects resizes (CropSizeFixed 0 in the .emd); FIXED_SIZE gives 1."""
    from dltools.core.raster.resize import resize_chip
    from dltools.core.tools.train.chips import ChipReader, chip_shape, read_array, training_normalisation
    from dltools.core.tools.train.layouts import read_training_folder
    from dltools.core.tools.train.model_folder import model_emd
    from dltools.core.tools.training_data.export import ClassData, export_training_data
    from dltools.core.tools.training_data.settings import BOUNDING_BOX, FIXED_SIZE, LABELED_TILES, ExportSettings
    from osgeo import ogr

    rng = np.random.default_rng(11)
    image = noise(rng, 128, 128)
    mask = np.zeros((128, 128), np.uint8)
    features = []
    for i, (cy, cx, r) in enumerate([(20, 20, 5), (20, 70, 9), (64, 30, 7), (70, 100, 10), (108, 60, 6),
                                     (104, 108, 8)]):
        paint(image, mask, "square" if i % 2 == 0 else "disc", cy, cx, r, rng)
        x0, x1, y0, y1 = cx - r, cx + r + 1, 128 - (cy + r + 1), 128 - (cy - r)
        ring = f"{x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}"
        features.append((i, bytes(ogr.CreateGeometryFromWkt(f"POLYGON (({ring}))").ExportToWkb()), 1 + i % 2))
    raster = write_raster(tmp_path / "scene.tif", np.clip(image, 0, 255).astype(np.uint8), origin=(0.0, 128.0))
    for mode, fixed in ((BOUNDING_BOX, 0), (FIXED_SIZE, 1)):
        folder = tmp_path / mode
        export_training_data(str(raster), str(folder), ClassData(features=features),
                             ExportSettings(metadata_format=LABELED_TILES, tile_x=32, tile_y=32, crop_mode=mode))
        data = read_training_folder(folder, "FeatureClassifier")
        bands, rows, cols, dtype = chip_shape(data)
        assert (bands, rows, cols) == (3, 32, 32)
        emd = model_emd("m", "FeatureClassifier", "resnet18", data, (rows, cols), {})
        assert emd["CropSizeFixed"] == fixed and emd["BlackenAroundFeature"] == 0
        sizes = {read_array(p).shape for p in data.images}
        if mode == BOUNDING_BOX:
            assert len(sizes) > 1  # chips of many sizes
            norm = training_normalisation(data, bands, dtype)
            reader = ChipReader(data, norm, (bands, rows, cols))
            raw = read_array(data.images[0])
            expected = resize_chip(raw, 32, 32) * norm.scale[:, None, None] + norm.offset[:, None, None]
            np.testing.assert_allclose(reader.image(0), expected, rtol=1e-5, atol=1e-4)
    settings = TrainSettings(model_type="FeatureClassifier", backbone="resnet18", max_epochs=1, batch_size=4,
                             learning_rate=0.003, validation_percent=25, seed=0)
    train_model(TrainRequest(str(tmp_path / BOUNDING_BOX), str(tmp_path / "bb_model"), settings, device=CPU),
                RecordingProgress())
    assert json.loads((tmp_path / "bb_model" / "bb_model.emd").read_text())["CropSizeFixed"] == 0

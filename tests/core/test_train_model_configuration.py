# SPDX-License-Identifier: GPL-2.0-or-later
"""FasterRCNN folders trained here hold the ``ModelConfiguration.py`` ArcGIS Pro builds the network from.

ArcGIS Pro's FasterRCNN inference (arcgis.learn's ``_model_extension_inferencing``, through
``ModelExtension.from_model``) is replayed here without arcgis (facts read in arcgis.learn 2.4.4's source): the file
named by the ``.emd``'s ``ModelConfigurationFile`` is imported from its path under the name
``ModelFileConfigurationClass``, the class is instantiated, ``get_model(data, backbone, **Kwargs)`` is called with
the data-like object ``from_model`` builds when it has no training data, the ``.pth`` is loaded strictly, the chips
are normalised as its ``vectorize`` does, then ``transform_input`` (or ``transform_input_multispectral``), the
network and ``post_process``.  The boxes must be those this plugin's own Detect Objects finds on the same chip.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import shutil
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from builders import RecordingProgress, write_raster  # noqa: E402
from dltools.core.backends.base import DeviceRequest  # noqa: E402
from dltools.core.tools.train.loop import TrainSettings  # noqa: E402
from dltools.core.tools.train.pipeline import TrainRequest, train_model  # noqa: E402
from training_data_builders import shapes_scene, write_pascal_voc  # noqa: E402

CPU = DeviceRequest("cpu", threads=1)
SOURCE = Path(__file__).resolve().parents[2] / "core" / "tools" / "train" / "arcgis_model_configuration.py"
#: ArcGIS Pro's defaults for a FasterRCNN (the detector's Confidence Threshold and NMS Overlap) are 0.5 and 0.1; a
#: lower threshold here so that a model trained for one epoch gives boxes to compare
THRESHOLD, NMS_OVERLAP = 0.001, 0.1


def _train(chips: Path, out: Path):  # noqa: ANN202
    settings = TrainSettings(model_type="FasterRCNN", backbone="resnet18", max_epochs=1, batch_size=2,
                             learning_rate=1e-3, validation_percent=34, seed=0)
    return train_model(TrainRequest(str(chips), str(out), settings, arguments="box_batch_size_per_image 16",
                                    device=CPU), RecordingProgress())


def _as_four_band_uint16(folder: Path) -> Path:
    """The chips of a PASCAL_VOC_rectangles folder rewritten as 4-band 16-bit images (a multispectral model)."""
    from osgeo import gdal

    for path in sorted((folder / "images").glob("*.tif")):
        rgb = gdal.Open(str(path)).ReadAsArray().astype(np.uint16)
        four = np.concatenate([rgb * 40 + 300, (rgb[:1] // 2) * 40 + 100]).astype(np.uint16)
        write_raster(path, four, block=None)
    return folder


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    chips = write_pascal_voc(tmp_path_factory.mktemp("voc") / "chips", count=6, chip=64, seed=3)
    return _train(chips, tmp_path_factory.mktemp("out") / "frcnn")


@pytest.fixture(scope="module")
def ms_model(tmp_path_factory):
    chips = write_pascal_voc(tmp_path_factory.mktemp("voc_ms") / "chips", count=6, chip=64, seed=4)
    return _train(_as_four_band_uint16(chips), tmp_path_factory.mktemp("out_ms") / "frcnn_ms")


# -- ArcGIS Pro's loader, replayed -----------------------------------------------------------------------------
def _pro_data(emd: dict) -> SimpleNamespace:
    """What ``ModelExtension.from_model`` gives ``get_model`` without training data (with
    ``get_multispectral_data_params_from_emd``'s attributes)."""
    names = [c["Name"] for c in emd["Classes"]]
    data = SimpleNamespace(chip_size=emd["ImageWidth"], classes=["background"] + names, c=len(names) + 1,
                           _is_multispectral=emd.get("IsMultispectral", False),
                           _is_non8bit_rgb=not emd.get("IsImageNetNormalization", True))
    if data._is_multispectral or data._is_non8bit_rgb:
        data._extract_bands = emd.get("ExtractBands")
        data._bands = emd.get("Bands")
        data._imagery_type = emd.get("ImageryType")
        for key, values in emd["NormalizationStats"].items():
            setattr(data, "_" + key, torch.tensor(values))
    return data


def _pro_load(emd_path: Path):  # noqa: ANN202
    """(the configuration object, the network with the .pth in it, the .emd) as ArcGIS Pro's loader gets them."""
    emd = json.loads(emd_path.read_text())
    name = emd["ModelFileConfigurationClass"]
    spec = importlib.util.spec_from_file_location(name, emd_path.parent / emd["ModelConfigurationFile"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    conf = getattr(module, name)()
    kwargs = dict(emd.get("Kwargs", {}), ArcGISLearnVersion=emd["ArcGISLearnVersion"], pretrained_backbone=False)
    data = _pro_data(emd)
    model = conf.get_model(data, emd["ModelParameters"]["backbone"], **kwargs)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    # Pro then changes the first convolution for multispectral data only where its bands differ: never here
    assert first.in_channels == len(getattr(data, "_extract_bands", None) or [0, 1, 2])
    state = torch.load(str(emd_path.parent / emd["ModelFile"]), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return conf, model.eval(), emd


def _pro_normalise(chips: np.ndarray, emd: dict) -> np.ndarray:
    """``vectorize``'s normalisation: min-max then the scaled statistics, or ImageNet's for 0..255 pixels."""
    stats = emd.get("NormalizationStats")
    if stats is None:
        mean = 255 * np.array([0.485, 0.456, 0.406], np.float32).reshape(1, -1, 1, 1)
        std = 255 * np.array([0.229, 0.224, 0.225], np.float32).reshape(1, -1, 1, 1)
        return (chips - mean) / std
    bands = emd["ExtractBands"]

    def pick(key: str) -> np.ndarray:
        return np.array(stats[key])[bands].reshape(1, -1, 1, 1)

    scaled = (chips - pick("band_min_values")) / (pick("band_max_values") - pick("band_min_values"))
    return (scaled - pick("scaled_mean_values")) / pick("scaled_std_values")


def _pro_detect(conf, model, emd: dict, chip: np.ndarray) -> list[tuple]:  # noqa: ANN001
    """``detect_object`` on one chip: (label, score 0-100, (x1, y1, x2, y2) in chip pixels), by score."""
    batch = _pro_normalise(chip[None].astype(np.float32), emd)
    multispectral = "NormalizationStats" in emd
    transform = conf.transform_input_multispectral if multispectral else conf.transform_input
    offered = {"thresh": THRESHOLD, "nms_overlap": NMS_OVERLAP}  # fastai's split_kwargs_by_func: what it takes
    taken = {k: v for k, v in offered.items() if k in inspect.signature(transform).parameters}
    assert taken == offered
    with torch.no_grad():
        pred = model(transform(torch.tensor(batch).float(), **taken))
    (boxes, labels, scores), = conf.post_process(pred, NMS_OVERLAP, THRESHOLD, chip.shape[1], torch.device("cpu"))
    assert model.roi_heads.score_thresh == 0.2 and model.roi_heads.nms_thresh == 0.1  # get_model's, restored
    h, w = chip.shape[1:]
    found = []
    for (y1, x1, y2, x2), label, score in zip(((boxes + 1) / 2).tolist(), labels.tolist(), scores.tolist()):
        found.append((int(label), score * 100, (x1 * w, y1 * h, x2 * w, y2 * h)))
    return found


# -- the plugin's own Detect Objects on the same chip ---------------------------------------------------------
def _plugin_detect(emd_path: Path, chip: np.ndarray, folder: Path) -> list[tuple]:
    """Detect Objects on a raster that is the chip (one tile, no padding): (label, score, box in chip pixels)."""
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.detect_objects.pipeline import detect_objects
    from osgeo import ogr

    raster = write_raster(folder / "chip.tif", chip)
    md = load_model_definition(str(emd_path))
    values = [c.value for c in md.classes]
    result = detect_objects(str(raster), md, f"padding 0;threshold {THRESHOLD};nms_overlap {NMS_OVERLAP};"
                            "batch_size 1", device=CPU)
    found = []
    for o in result.objects:
        minx, maxx, miny, maxy = ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope()
        box = (minx - 500000.0, 4000000.0 - maxy, maxx - 500000.0, 4000000.0 - miny)  # write_raster's 1 m grid
        found.append((values.index(o.class_value) + 1, o.confidence, box))
    return found


def _assert_same_boxes(pro: list[tuple], plugin: list[tuple]) -> None:
    assert pro, "no detection to compare: the test would prove nothing"
    key = lambda d: (d[0], [round(v) for v in d[2]])  # noqa: E731
    pro, plugin = sorted(pro, key=key), sorted(plugin, key=key)
    assert [d[0] for d in pro] == [d[0] for d in plugin]
    np.testing.assert_allclose([d[2] for d in pro], [d[2] for d in plugin], atol=1e-3)
    np.testing.assert_allclose([d[1] for d in pro], [d[1] for d in plugin], atol=1e-3)


def _scene_chip(seed: int) -> np.ndarray:
    image, _ = shapes_scene(64, 64, 3, seed=seed)
    return image.astype(np.uint8)


def test_rgb_folder_runs_in_arcgis_pros_loader_with_the_boxes_detect_objects_finds(rgb_model, tmp_path):
    emd_path = rgb_model.files["emd"]
    assert rgb_model.files["model_configuration"] == emd_path.parent / "ModelConfiguration.py"
    conf, model, emd = _pro_load(emd_path)
    assert len(model.rpn.anchor_generator.cell_anchors) == 1  # Pro's grid_anchors patch then changes nothing
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 16  # the .emd's Kwargs reach torchvision
    chip = _scene_chip(21)
    pro = _pro_detect(conf, model, emd, chip)
    print("ArcGIS Pro's path:", pro)
    _assert_same_boxes(pro, _plugin_detect(emd_path, chip, tmp_path))


def test_multispectral_folder_runs_in_arcgis_pros_loader_with_the_same_boxes(ms_model, tmp_path):
    emd_path = ms_model.files["emd"]
    conf, model, emd = _pro_load(emd_path)
    assert emd["IsMultispectral"] and emd["ExtractBands"] == [0, 1, 2, 3] and "NormalizationStats" in emd
    assert model.transform.image_mean == [0.0] * 4 and model.transform.image_std == [1.0] * 4
    rgb = _scene_chip(23).astype(np.uint16)
    chip = np.concatenate([rgb * 40 + 300, (rgb[:1] // 2) * 40 + 100]).astype(np.uint16)
    pro = _pro_detect(conf, model, emd, chip)
    print("ArcGIS Pro's path (4 bands):", pro)
    _assert_same_boxes(pro, _plugin_detect(emd_path, chip, tmp_path))


@pytest.mark.parametrize("backbone", ["resnet34", "resnet50", "resnet101", "resnet152"])
def test_every_backbone_has_the_keys_the_trainer_writes(backbone):
    """The other backbones without training: the class's network and the trainer's have the same state_dict and
    resize the chip alike (an odd chip size: 1.5 x 63 is 94 pixels for both)."""
    from dltools.core.tools.train.arcgis_model_configuration import MyFasterRCNN
    from dltools.core.tools.train.networks import build_network

    emd = {"ModelName": "FasterRCNN", "Framework": "arcgis.learn.models._inferencing", "ModelFile": "m.pth",
           "ModelParameters": {"backbone": backbone}, "ImageHeight": 63, "ImageWidth": 63, "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": 1, "Name": "a"}, {"Value": 2, "Name": "b"}, {"Value": 3, "Name": "c"}]}
    network = build_network(emd, 0, torch, torchvision)
    trained = network.state_dict()
    model = MyFasterRCNN().get_model(_pro_data(emd), backbone, ArcGISLearnVersion="2.4.4", pretrained_backbone=False)
    model.load_state_dict(trained, strict=True)
    assert (model.transform.min_size, model.transform.max_size) == (network.transform.min_size,
                                                                    network.transform.max_size) == ((94,), 126)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in trained.items()}


def test_an_unknown_backbone_is_refused_by_name():
    from dltools.core.tools.train.arcgis_model_configuration import MyFasterRCNN

    data = SimpleNamespace(chip_size=64, classes=["background", "a"])
    with pytest.raises(ValueError, match="backbone 'vgg16' is not one of resnet50, resnet101, resnet152, resnet18"):
        MyFasterRCNN().get_model(data, "vgg16")


def test_on_batch_begin_and_loss_give_torchvision_its_training_input(rgb_model):
    """fastai's batch (ImageNet-standardised chips, boxes y1 x1 y2 x2 from -1 to 1, padded with empty boxes) becomes
    torchvision's (0..1 chips, x1 y1 x2 y2 pixel boxes), and the loss is the sum of torchvision's."""
    conf, model, _ = _pro_load(rgb_model.files["emd"])
    pixels = torch.full((1, 3, 64, 64), 0.5)
    xb = (pixels - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    boxes = torch.tensor([[[-0.5, -1.0, 0.0, -0.25], [0.0, 0.0, 0.0, 0.0]]])  # the second one pads the batch
    (images, targets), _ = conf.on_batch_begin(None, xb, (boxes, torch.tensor([[2, 0]])), train=True)
    assert len(images) == 2 and torch.allclose(images[0], pixels[0], atol=1e-6)  # a batch of one is doubled
    assert targets[0]["boxes"].tolist() == [[0.0, 16.0, 24.0, 32.0]] and targets[0]["labels"].tolist() == [2]
    losses = model(images, targets)
    assert conf.loss(losses).item() == pytest.approx(sum(v.item() for v in losses.values()), rel=1e-6)


def test_the_emd_names_the_file_and_the_dlpk_holds_it(rgb_model):
    emd = json.loads(rgb_model.files["emd"].read_text())
    assert (emd["ModelConfiguration"], emd["ModelConfigurationFile"], emd["ModelFileConfigurationClass"]) == (
        "_model_extension_inferencing", "ModelConfiguration.py", "MyFasterRCNN")
    assert rgb_model.files["model_configuration"].read_bytes() == SOURCE.read_bytes()
    with zipfile.ZipFile(rgb_model.files["dlpk"]) as z:
        assert z.read("ModelConfiguration.py") == SOURCE.read_bytes()
        assert json.loads(z.read(rgb_model.files["emd"].name))["ModelConfigurationFile"] == "ModelConfiguration.py"
    assert not list(rgb_model.folder.glob("*dltools*")) and not list(rgb_model.folder.glob(".*"))  # no temporary


def test_the_plugin_never_executes_the_file_yet_runs_and_describes_the_folder(rgb_model, tmp_path):
    """Detect Objects and Describe Model open the folder and its .dlpk without trust, and the ModelConfiguration.py
    (here one that leaves a marker when imported) never runs: the plugin rebuilds the network from ModelName."""
    from dltools.core.model.packages import check_package_references, create_package
    from dltools.core.tools.describe.report import backend_info, describe_model, load_for_description
    from dltools.core.tools.detect_objects.pipeline import detect_objects

    folder = tmp_path / "copy"
    shutil.copytree(rgb_model.folder, folder)
    marker = folder / "MODEL_CONFIGURATION_RAN"
    with (folder / "ModelConfiguration.py").open("a") as f:
        f.write(f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    emd_path = folder / rgb_model.files["emd"].name
    dlpk = create_package(emd_path, tmp_path / "frcnn.dlpk")
    raster = write_raster(tmp_path / "scene.tif", _scene_chip(24))
    for model in (emd_path, dlpk):
        md = load_for_description(str(model), cache_dir=tmp_path / "cache")
        assert md.code_trust is None and not md.custom_function and md.model_name == "FasterRCNN"
        assert (md.base_dir / "ModelConfiguration.py").is_file()
        check_package_references(md.raw, md.base_dir / emd_path.name, "frcnn", root=md.base_dir)
        report = describe_model(md, backend_info(md, CPU))
        assert report["model_configuration"] == "_model_extension_inferencing"
        assert report["backend"]["opened"], report["backend"]
        detect_objects(str(raster), md, "threshold 0.1", device=CPU)
    assert not marker.exists() and not list(tmp_path.rglob("MODEL_CONFIGURATION_RAN"))

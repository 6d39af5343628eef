# SPDX-License-Identifier: GPL-2.0-or-later
"""A run never writes over or deletes its inputs, and a cancelled or failed run leaves existing outputs as they were.

Every test takes a snapshot (SHA-256) of the input and output files before the run and asserts the inputs are
byte-identical afterwards; failed and cancelled runs must leave the output folder exactly as it was.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))
from co_models import grid_raster, mean_emd, wkt_point  # noqa: E402
from test_classify_objects import write_layer  # noqa: E402


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(alg: str, params: dict, context, feedback=None) -> dict:
    import processing

    return processing.run(alg, params, context=context, feedback=feedback or RecordingFeedback())


def refused(alg: str, params: dict, context, folder: Path) -> str:
    before = snapshot(folder)
    with pytest.raises(QgsProcessingException) as info:
        run(alg, params, context)
    assert snapshot(folder) == before
    return str(info.value)


# ------------------------------------------------------------------------------------------------ Classify Objects
@pytest.fixture(scope="module")
def objects_case(tmp_path_factory) -> dict:
    models = tmp_path_factory.mktemp("co_models_safety")
    raster = grid_raster(tmp_path_factory.mktemp("co_raster_safety") / "grid.tif")
    return {"emd": mean_emd(models, band=0, tile=7), "raster": raster}


def _features(path: Path, n: int = 60) -> Path:
    return write_layer(path, [wkt_point(5.5 + (i % 8) * 7, 5.5 + (i // 8) * 7) for i in range(n)])


def test_classify_objects_output_equal_to_features_is_refused(context, objects_case, tmp_path):
    src = _features(tmp_path / "in.gpkg")
    for output in (str(src), f"ogr:dbname='{src}' table=\"new\" (geom)"):
        message = refused("dltools:classifyobjects", {"INPUT": str(objects_case["raster"]), "FEATURES": str(src),
                                                      "MODEL": str(objects_case["emd"]), "OUTPUT": output},
                          context, tmp_path)
        assert message == (f"OUTPUT '{src}' is the same file as the input FEATURES: choose another output file, the "
                           "run never writes over its inputs")
    assert QgsVectorLayer(str(src), "in", "ogr").featureCount() == 60


@pytest.mark.parametrize("cancel_at", [0.0, 40.0])
def test_classify_objects_cancel_leaves_the_old_output_and_no_partial_file(context, objects_case, tmp_path,
                                                                            cancel_at):
    src = _features(tmp_path / "in.gpkg")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    old = write_layer(out_dir / "result.gpkg", [wkt_point(1.0, 1.0)])
    before = snapshot(tmp_path)
    feedback = RecordingFeedback(cancel_at=cancel_at)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("dltools:classifyobjects", {"INPUT": str(objects_case["raster"]), "FEATURES": str(src),
                                        "MODEL": str(objects_case["emd"]), "ARGUMENTS": "batch_size 1",
                                        "OUTPUT": str(old)}, context, feedback)
    assert snapshot(tmp_path) == before  # no .gpkg-journal, no hidden temporary file, the old output intact


def test_classify_objects_success_replaces_the_output_atomically(context, objects_case, tmp_path):
    src = _features(tmp_path / "in.gpkg", 5)
    old = write_layer(tmp_path / "result.gpkg", [wkt_point(1.0, 1.0)])
    inputs = {k: v for k, v in snapshot(tmp_path).items() if k != "result.gpkg"}
    result = run("dltools:classifyobjects", {"INPUT": str(objects_case["raster"]), "FEATURES": str(src),
                                             "MODEL": str(objects_case["emd"]), "OUTPUT": str(old)}, context)
    assert result["OUTPUT"] == str(old)
    assert QgsVectorLayer(str(old), "out", "ogr").featureCount() == 5
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k not in ("result.gpkg", "result.qml")} == inputs
    assert sorted(after) == ["in.gpkg", "result.gpkg", "result.qml"]  # the class style written next to it


def test_classify_objects_shapefile_output_gets_all_its_side_files(context, objects_case, tmp_path):
    src = _features(tmp_path / "in.gpkg", 5)
    out = tmp_path / "res.shp"
    run("dltools:classifyobjects", {"INPUT": str(objects_case["raster"]), "FEATURES": str(src),
                                    "MODEL": str(objects_case["emd"]), "OUTPUT": str(out)}, context)
    assert {p.name for p in tmp_path.iterdir()} >= {"res.shp", "res.shx", "res.dbf", "res.prj"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert QgsVectorLayer(str(out), "out", "ogr").featureCount() == 5


def test_classify_objects_loads_the_final_output(qgis_app, objects_case, tmp_path):
    import processing
    from qgis.core import QgsProject

    src = _features(tmp_path / "in.gpkg", 3)
    out = tmp_path / "loaded.gpkg"
    processing.runAndLoadResults("dltools:classifyobjects", {"INPUT": str(objects_case["raster"]),
                                                             "FEATURES": str(src), "MODEL": str(objects_case["emd"]),
                                                             "OUTPUT": str(out)})
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source().startswith(str(out))]
    try:
        assert len(layers) == 1 and layers[0].featureCount() == 3
    finally:
        for lyr in layers:
            QgsProject.instance().removeMapLayer(lyr.id())
    assert np.all([not p.name.startswith(".") for p in tmp_path.iterdir()])


# ------------------------------------------------------------------------------------------------ Classify Pixels items
def _items_case(folder: Path, names: list[str]) -> tuple[Path, Path, list[np.ndarray]]:
    """A VRT of one 3-band raster per name (side by side), the pointwise model and each item's expected classes."""
    from builders import conv_module, export_onnx, numpy_conv_same, write_emd, write_raster
    from osgeo import gdal

    rng = np.random.default_rng(3)
    weight = rng.integers(-2, 3, size=(3, 3, 1, 1)).astype(np.float32)
    paths, expected = [], []
    for i, name in enumerate(names):
        image = rng.integers(0, 9, size=(3, 12, 10)).astype(np.uint8)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(str(write_raster(path, image, origin=(500000.0 + 10 * i, 4000000.0))))
        expected.append(np.array([1, 2, 5])[np.argmax(numpy_conv_same(image, weight, np.zeros(3)), axis=0)])
    vrt = folder / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), paths).FlushCache()
    models = folder / "model"
    models.mkdir()
    export_onnx(conv_module(3, 3, 1, weight=weight), models / "m.onnx", 3, 16)
    emd = write_emd(models / "m.emd", "m.onnx", tile=16,
                    classes=[(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))])
    return vrt, emd, expected


def _items(context, vrt: Path, emd: Path, folder: Path, out: Path, feedback=None) -> dict:
    return run("dltools:classifypixels", {"INPUT": str(vrt), "MODEL": str(emd), "ARGUMENTS": "padding 0",
                                          "PROCESSING_MODE": 1, "OUTPUT_FOLDER": str(folder), "OUTPUT": str(out)},
               context, feedback)


def test_items_with_the_same_file_name_get_their_own_outputs(context, tmp_path):
    from builders import read_raster

    vrt, emd, expected = _items_case(tmp_path, ["a/x.tif", "b/x.tif"])
    inputs = snapshot(tmp_path)
    feedback = RecordingFeedback()
    _items(context, vrt, emd, tmp_path / "out", tmp_path / "first.tif", feedback)
    assert np.array_equal(read_raster(tmp_path / "out" / "x_classified.tif"), expected[0])
    assert np.array_equal(read_raster(tmp_path / "out" / "x_2_classified.tif"), expected[1])
    assert f"Item 2/2: {tmp_path / 'b' / 'x.tif'} -> x_2_classified.tif" in feedback.infos
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in inputs} == inputs


def test_output_folder_equal_to_the_items_folder_never_touches_an_item(context, tmp_path):
    from builders import read_raster

    vrt, emd, expected = _items_case(tmp_path, ["left.tif", "left_classified.tif"])
    inputs = snapshot(tmp_path)
    _items(context, vrt, emd, tmp_path, tmp_path / "first.tif")
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in inputs} == inputs  # both items byte-identical
    assert np.array_equal(read_raster(tmp_path / "left_2_classified.tif"), expected[0])
    assert np.array_equal(read_raster(tmp_path / "left_classified_classified.tif"), expected[1])


class _CancelOnSecondItem(RecordingFeedback):
    def pushInfo(self, info):  # noqa: N802 - QGIS API
        super().pushInfo(info)
        if info.startswith("Item 2/"):
            self.cancel()


def test_items_cancelled_midway_keep_every_old_output_and_write_nothing(context, tmp_path):
    vrt, emd, _ = _items_case(tmp_path, ["p.tif", "q.tif"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("p_classified.tif", "p_classified.qml", "q_classified.tif", "first.tif"):
        (out_dir / name).write_bytes(b"old " + name.encode())
    before = snapshot(tmp_path)
    with pytest.raises(QgsProcessingException, match="cancel"):
        _items(context, vrt, emd, out_dir, out_dir / "first.tif", _CancelOnSecondItem())
    assert snapshot(tmp_path) == before


def test_items_output_equal_to_an_item_is_refused(context, tmp_path):
    vrt, emd, _ = _items_case(tmp_path, ["p.tif", "q.tif"])
    message = refused("dltools:classifypixels", {"INPUT": str(vrt), "MODEL": str(emd), "PROCESSING_MODE": 1,
                                                 "OUTPUT_FOLDER": str(tmp_path / "o"), "OUTPUT": str(tmp_path / "q.tif")},
                      context, tmp_path)
    assert not (tmp_path / "o").exists()
    assert message == (f"OUTPUT '{tmp_path / 'q.tif'}' is the same file as the input INPUT item 2: choose another "
                       "output file, the run never writes over its inputs")


# ------------------------------------------------------------------------------------------------ same-file refusals
@pytest.fixture
def pixels_case(tmp_path) -> dict:
    from builders import conv_module, export_onnx, write_emd, write_raster

    image = np.random.default_rng(4).integers(0, 9, size=(3, 12, 10)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", image)
    export_onnx(conv_module(3, 2, 1), tmp_path / "m.onnx", 3, 8)
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=[(0, "a", (1, 2, 3)), (1, "b", (4, 5, 6))])
    return {"raster": raster, "emd": emd, "folder": tmp_path}


@pytest.mark.parametrize("output,probs,expected", [
    ("in.tif", None, "OUTPUT '{f}/in.tif' is the same file as the input INPUT"),
    ("out.tif", "in.tif", "OUTPUT_PROBABILITIES '{f}/in.tif' is the same file as the input INPUT"),
    ("out.tif", "out.tif", "OUTPUT and OUTPUT_PROBABILITIES are the same file '{f}/out.tif': give each output its own file"),
])
def test_classify_pixels_same_files_are_refused(context, pixels_case, output, probs, expected):
    f = pixels_case["folder"]
    params = {"INPUT": str(pixels_case["raster"]), "MODEL": str(pixels_case["emd"]), "OUTPUT": str(f / output)}
    if probs:
        params["OUTPUT_PROBABILITIES"] = str(f / probs)
    assert refused("dltools:classifypixels", params, context, f).startswith(expected.format(f=f))


def test_detect_change_output_equal_to_either_input_is_refused(context, pixels_case, tmp_path):
    from builders import write_raster

    other = write_raster(tmp_path / "to.tif", np.zeros((3, 12, 10), np.uint8))
    for key, target in (("FROM_RASTER", pixels_case["raster"]), ("TO_RASTER", other)):
        message = refused("dltools:detectchange", {"FROM_RASTER": str(pixels_case["raster"]), "TO_RASTER": str(other),
                                                   "MODEL": str(pixels_case["emd"]), "OUTPUT": str(target)},
                          context, tmp_path)
        assert message == (f"OUTPUT '{target}' is the same file as the input {key}: choose another output file, the "
                           "run never writes over its inputs")


@pytest.mark.parametrize("key", ["OUTPUT_JSON", "OUTPUT_HTML"])
def test_describe_model_output_equal_to_the_model_is_refused(context, pixels_case, key):
    f = pixels_case["folder"]
    for model in (pixels_case["emd"], f / "m.onnx"):
        message = refused("dltools:describemodel", {"MODEL": str(model), key: str(model)}, context, f)
        assert message.startswith(f"{key} '{model}' is the same file as the input MODEL")


def test_describe_model_json_equal_to_html_is_refused(context, pixels_case):
    f = pixels_case["folder"]
    message = refused("dltools:describemodel", {"MODEL": str(pixels_case["emd"]), "OUTPUT_JSON": str(f / "r.txt"),
                                                "OUTPUT_HTML": str(f / "r.txt")}, context, f)
    assert message == f"OUTPUT_HTML and OUTPUT_JSON are the same file '{f / 'r.txt'}': give each output its own file"


def test_describe_model_replaces_its_outputs_whole(context, pixels_case):
    f = pixels_case["folder"]
    (f / "r.json").write_text("old")
    run("dltools:describemodel", {"MODEL": str(pixels_case["emd"]), "OUTPUT_JSON": str(f / "r.json"),
                                  "OUTPUT_HTML": str(f / "r.html")}, context)
    import json

    assert json.loads((f / "r.json").read_text())["model_type"] == "ImageClassification"
    assert not [p for p in f.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ EXTENT
@pytest.mark.parametrize("extent", ["500002,500002,3999990,3999995 [EPSG:32633]",
                                    "500001,500006,3999995,3999995 [EPSG:32633]"])
def test_zero_width_or_height_extent_is_refused(context, pixels_case, extent):
    from builders import write_raster

    f = pixels_case["folder"]
    other = write_raster(f / "to.tif", np.zeros((3, 12, 10), np.uint8))
    for alg, params in (("dltools:classifypixels", {"INPUT": str(pixels_case["raster"])}),
                        ("dltools:detectobjects", {"INPUT": str(pixels_case["raster"])}),
                        ("dltools:detectchange", {"FROM_RASTER": str(pixels_case["raster"]), "TO_RASTER": str(other)})):
        message = refused(alg, {**params, "MODEL": str(pixels_case["emd"]), "EXTENT": extent,
                                "OUTPUT": str(f / "out.tif")}, context, f)
        assert message.startswith("EXTENT has zero width or height (")
        assert message.endswith("give a rectangle with an area, or leave it empty to process the whole raster")


# ------------------------------------------------------------------------------------------------ raster outputs
@pytest.fixture
def raster_case(tmp_path) -> dict:
    from builders import conv_module, export_onnx, write_emd, write_raster

    image = np.random.default_rng(8).integers(0, 200, size=(3, 300, 300)).astype(np.uint8)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    raster = write_raster(inputs / "in.tif", image)
    other = write_raster(inputs / "to.tif", image[::-1].copy())
    weight = np.random.default_rng(9).normal(size=(3, 3, 1, 1)).astype(np.float32)
    export_onnx(conv_module(3, 3, 1, weight=weight), inputs / "m.onnx", 3, 32)
    classes = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (3, "three", (0, 0, 255))]
    emd = write_emd(inputs / "m.emd", "m.onnx", tile=32, classes=classes)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("classes.tif", "classes.qml", "classes.tif.aux.xml", "probs.tif"):
        (out / name).write_bytes(b"the previous run's " + name.encode())
    return {"raster": raster, "other": other, "emd": emd, "inputs": inputs, "out": out}


@pytest.mark.parametrize("cancel_at", [0.0, 50.0])
def test_classify_pixels_cancel_leaves_the_old_outputs(context, raster_case, tmp_path, cancel_at):
    before = snapshot(tmp_path)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("dltools:classifypixels", {"INPUT": str(raster_case["raster"]), "MODEL": str(raster_case["emd"]),
                                       "ARGUMENTS": "padding 0;batch_size 1", "OUTPUT": str(raster_case["out"] / "classes.tif"),
                                       "OUTPUT_PROBABILITIES": str(raster_case["out"] / "probs.tif")},
            context, RecordingFeedback(cancel_at=cancel_at))
    assert snapshot(tmp_path) == before


def test_detect_change_cancel_leaves_the_old_output(context, raster_case, tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("dltools:detectchange", {"FROM_RASTER": str(raster_case["raster"]), "TO_RASTER": str(raster_case["other"]),
                                     "MODEL": str(raster_case["emd"]), "ARGUMENTS": "padding 0;batch_size 1",
                                     "OUTPUT": str(raster_case["out"] / "classes.tif")},
            context, RecordingFeedback(cancel_at=30.0))
    assert snapshot(tmp_path) == before


def test_classify_pixels_success_replaces_the_old_outputs_and_their_side_files(context, raster_case):
    from osgeo import gdal

    out = raster_case["out"]
    run("dltools:classifypixels", {"INPUT": str(raster_case["raster"]), "MODEL": str(raster_case["emd"]),
                                   "ARGUMENTS": "padding 0", "OUTPUT": str(out / "classes.tif")}, context)
    assert gdal.Open(str(out / "classes.tif")).RasterXSize == 300
    assert (out / "classes.qml").read_text().count("<paletteEntry") == 3
    assert not (out / "classes.tif.aux.xml").exists() or b"previous" not in (out / "classes.tif.aux.xml").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount); skipped with the reason where it cannot be mounted."""
    import subprocess

    mount = tmp_path / "small_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({proc.stderr.strip() or 'mount failed'}): the full-disk "
                    "tests need root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> None:
    import shutil

    free = shutil.disk_usage(folder).free
    (folder / "filler.bin").write_bytes(b"\0" * max(0, free - leave))


def _no_space(message: str, *targets: Path) -> None:
    assert message.startswith("No space left on device while writing the output '"), message
    assert any(f"'{t}'" in message for t in targets), message
    assert message.endswith("nothing was written and any earlier file of that name is unchanged")


def test_classify_pixels_on_a_full_disk(context, raster_case, small_disk):
    (small_disk / "classes.tif").write_bytes(b"old")
    _fill(small_disk, 256 * 1024)
    before_inputs = snapshot(raster_case["inputs"])
    before = snapshot(small_disk)
    message = refused("dltools:classifypixels", {
        "INPUT": str(raster_case["raster"]), "MODEL": str(raster_case["emd"]), "ARGUMENTS": "padding 0",
        "OUTPUT": str(small_disk / "classes.tif"), "OUTPUT_PROBABILITIES": str(small_disk / "probs.tif")},
        context, raster_case["inputs"])
    _no_space(message, small_disk / "classes.tif", small_disk / "probs.tif")
    assert snapshot(small_disk) == before and snapshot(raster_case["inputs"]) == before_inputs


def test_describe_model_on_a_full_disk(context, raster_case, small_disk):
    (small_disk / "d.json").write_text("old")
    _fill(small_disk, 4096)
    before = snapshot(small_disk)
    message = refused("dltools:describemodel", {"MODEL": str(raster_case["emd"]), "OUTPUT_JSON": str(small_disk / "d.json"),
                                                "OUTPUT_HTML": str(small_disk / "d.html")}, context, raster_case["inputs"])
    _no_space(message, small_disk / "d.json", small_disk / "d.html")
    assert snapshot(small_disk) == before


def test_classify_objects_on_a_full_disk(context, objects_case, tmp_path, small_disk):
    (tmp_path / "features").mkdir()
    src = _features(tmp_path / "features" / "in.gpkg", 60)
    (small_disk / "r.gpkg").write_text("old")
    _fill(small_disk, 64 * 1024)
    before = snapshot(small_disk)
    message = refused("dltools:classifyobjects", {"INPUT": str(objects_case["raster"]), "FEATURES": str(src),
                                                  "MODEL": str(objects_case["emd"]), "OUTPUT": str(small_disk / "r.gpkg")},
                      context, tmp_path / "features")
    _no_space(message, small_disk / "r.gpkg")
    assert snapshot(small_disk) == before


def test_custom_function_failure_leaves_the_old_output(context, tmp_path):
    import prf_functions as prf
    from builders import write_raster

    raster = write_raster(tmp_path / "in.tif", np.ones((2, 40, 40), np.uint16))
    emd = prf.write_function(tmp_path / "bad", "Raiser", prf.raising(after_blocks=1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.tif").write_bytes(b"old raster")
    (out / "c.qml").write_bytes(b"old style")
    before = snapshot(tmp_path)
    with pytest.raises(QgsProcessingException, match="Raiser"):
        run("dltools:classifypixels", {"INPUT": str(raster), "MODEL": str(emd), "ALLOW_CUSTOM_CODE": True,
                                       "OUTPUT": str(out / "c.tif")}, context)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("bad/__pycache__")} == before


# ------------------------------------------------------------------------------------------------ Non Maximum Suppression
def _detections(path: Path) -> Path:
    from osgeo import ogr, osr

    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    layer = ds.CreateLayer("dets", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("Confidence", ogr.OFTReal))
    for i, x in enumerate((0, 5, 30)):
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("Confidence", 90.0 - i)
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x} 0,{x + 10} 0,{x + 10} 10,{x} 10,{x} 0))"))
        layer.CreateFeature(f)
    ds = None
    return path


def test_nms_output_equal_to_its_input_is_refused(context, tmp_path):
    src = _detections(tmp_path / "dets.gpkg")
    message = refused("dltools:nonmaximumsuppression", {"INPUT": str(src), "OUTPUT": str(src)}, context, tmp_path)
    assert message == (f"OUTPUT '{src}' is the same file as the input INPUT: choose another output file, the run "
                       "never writes over its inputs")
    assert QgsVectorLayer(str(src), "in", "ogr").featureCount() == 3


def test_nms_replaces_its_output_whole(context, tmp_path):
    src = _detections(tmp_path / "dets.gpkg")
    (tmp_path / "kept.gpkg").write_bytes(b"old")
    result = run("dltools:nonmaximumsuppression", {"INPUT": str(src), "MAX_OVERLAP_RATIO": 0.2,
                                                   "OUTPUT": str(tmp_path / "kept.gpkg")}, context)
    assert result["OUTPUT"] == str(tmp_path / "kept.gpkg")
    assert QgsVectorLayer(str(tmp_path / "kept.gpkg"), "kept", "ogr").featureCount() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dets.gpkg", "kept.gpkg"]


def test_create_package_output_equal_to_a_packaged_file_is_refused(context, tmp_path):
    import zipfile

    from builders import write_emd

    (tmp_path / "m.onnx").write_bytes(b"onnx")
    emd = write_emd(tmp_path / "m.emd", "m.onnx", tile=8, classes=[(1, "a", (1, 2, 3))])
    old = tmp_path / "old.dlpk"
    with zipfile.ZipFile(old, "w") as zf:
        zf.writestr("x.txt", "previous package")
    message = refused("dltools:packagemodel", {"MODEL_DEFINITION": str(emd), "EXTRA_FILES": [str(old)],
                                               "OUTPUT": str(old)}, context, tmp_path)
    assert message == (f"OUTPUT '{old}' is the same file as the packaged file 'old.dlpk': choose another output "
                       "file, the run never writes over its inputs")


def test_save_chips_into_the_image_folder_is_refused(context, objects_case, tmp_path):
    import shutil

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.tif", "b.tif"):
        shutil.copy(objects_case["raster"], images / name)
    before = snapshot(tmp_path)
    with pytest.raises(QgsProcessingException) as info:
        run("dltools:classifyobjects", {"IMAGE_FOLDER": str(images), "MODEL": str(objects_case["emd"]),
                                        "ARGUMENTS": f"save_chips {images}", "OUTPUT": str(tmp_path / "o.gpkg")},
            context)
    assert str(info.value) == (f"The save_chips folder '{images}' holds the input image 'a.tif': a chip could "
                               "replace an input (chips are named like the images). Choose another folder")
    assert snapshot(tmp_path) == before

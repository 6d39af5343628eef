# SPDX-License-Identifier: GPL-2.0-or-later
"""Custom Python raster functions (the Esri PRF contract) through core: exact outputs, the refusal,
the function's own errors, broken contracts, and reading getParameterInfo without running the code."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import prf_functions as prf
import pytest
from builders import RecordingProgress, read_raster, write_raster
from dltools.core.errors import ArgumentError
from dltools.core.model.function_source import model_arguments, parameter_info_from_source
from dltools.core.model.loader import load_model_definition
from dltools.core.prf.host import CustomCodeRefusedError, CustomFunctionError
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from dltools.core.tools.detect_change.pipeline import detect_change
from osgeo import gdal

H, W = 19, 23


def _raster(tmp_path, nodata_at=(4, 7)):
    rng = np.random.default_rng(5)
    arr = np.stack([rng.integers(0, 50, (H, W)), rng.integers(0, 250, (H, W))]).astype(np.uint16)
    arr[:, nodata_at[0], nodata_at[1]] = 0
    arr[1][arr[1] == 0] = 1
    arr[:, nodata_at[0], nodata_at[1]] = 0
    return write_raster(tmp_path / "in.tif", arr, nodata=0), arr


def _expected(band: np.ndarray, threshold: float, invert: bool = False, edge_fill: str = "mirror") -> np.ndarray:
    """The neighbour classifier's answer; past the last column the engine's padding is the raster mirrored
    (column W-2, numpy.pad's reflect), or 0 with ``edge_fill zero`` (ArcGIS's zero-filled edge tiles)."""
    right = np.zeros_like(band, dtype=float)
    right[:, :-1] = band[:, 1:]
    if edge_fill == "mirror":
        right[:, -1] = band[:, -2]
    high = right > threshold
    return (1 + (~high if invert else high)).astype(np.uint8)


def test_pixel_classifier_exact_with_padding_nodata_and_style(tmp_path):
    raster, arr = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    assert md.custom_function and md.model_file is None
    out = tmp_path / "out.tif"
    progress = RecordingProgress()
    classify_pixels(str(raster), md, str(out), "threshold 120;invert false", progress=progress,
                    allow_custom_code=True)
    got = read_raster(out)
    expected = _expected(arr[1], 120)
    ds = gdal.Open(str(out))
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    assert ds.GetRasterBand(1).DataType == gdal.GDT_Byte
    expected[4, 7] = nodata  # input NoData stays NoData (inheritProperties bit 2)
    np.testing.assert_array_equal(got, expected)
    ct = ds.GetRasterBand(1).GetColorTable()
    assert ct.GetColorEntry(2)[:3] == (255, 0, 0) and ct.GetColorEntry(1)[:3] == (0, 0, 255)
    assert (tmp_path / "out.qml").is_file()
    sha = hashlib.sha256((tmp_path / "model" / "NeighbourClassifier.py").read_bytes()).hexdigest()
    log = "\n".join(progress.infos)
    assert sha in log and "NeighbourClassifier.py" in log
    assert "threshold 120" in log and "invert False" in log
    assert "Blocks: 9 (3 x 3)" in log  # 23/10 -> 3 columns, 19/8 -> 3 rows


def test_edge_fill_zero_is_arcgis_zero_filled_tiles(tmp_path):
    """``edge_fill zero`` (a tool argument, not the function's): chips at the plain stride, zeros past the edge."""
    raster, arr = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    out = tmp_path / "out.tif"
    progress = RecordingProgress()
    result = classify_pixels(str(raster), md, str(out), "threshold 120;edge_fill zero", progress=progress,
                             allow_custom_code=True)
    expected = _expected(arr[1], 120, edge_fill="zero")
    ds = gdal.Open(str(out))
    expected[4, 7] = ds.GetRasterBand(1).GetNoDataValue()
    ds = None
    np.testing.assert_array_equal(read_raster(out), expected)
    assert result.edge_fill == "zero"
    assert not any("edge_fill" in w for w in progress.warnings)  # the tool's argument, not an unknown one
    assert any("edges zero-filled" in m for m in progress.infos)
    with pytest.raises(ArgumentError, match="edge_fill"):
        classify_pixels(str(raster), md, str(tmp_path / "o2.tif"), "edge_fill wrap", allow_custom_code=True)


def test_blocks_of_the_engine_give_the_same_pixels(tmp_path):
    """block_size 10 cuts the 23 x 19 raster into 6 engine blocks of one chip each: the same output."""
    raster, arr = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    one = classify_pixels(str(raster), md, str(tmp_path / "a.tif"), "threshold 120", allow_custom_code=True)
    many = classify_pixels(str(raster), md, str(tmp_path / "b.tif"), "threshold 120;block_size 8",
                           allow_custom_code=True)
    assert one.blocks == 1 and many.blocks == 9
    np.testing.assert_array_equal(read_raster(tmp_path / "a.tif"), read_raster(tmp_path / "b.tif"))
    assert one.pixel_counts == many.pixel_counts and sum(one.pixel_counts.values()) == H * W - 1


def test_defaults_from_getparameterinfo_and_invert(tmp_path):
    raster, arr = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    out = tmp_path / "out.tif"
    classify_pixels(str(raster), md, str(out), "invert True", allow_custom_code=True)
    got = read_raster(out)
    expected = _expected(arr[1], 100, invert=True)
    mask = np.ones_like(got, bool)
    mask[4, 7] = False
    np.testing.assert_array_equal(got[mask], expected[mask])


def test_refused_unless_allowed_and_no_output(tmp_path):
    raster, _ = _raster(tmp_path)
    marker = tmp_path / "ran.txt"
    source = f"open({str(marker)!r}, 'w').write('ran')\n" + prf.NEIGHBOUR_CLASSIFIER
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", source)
    md = load_model_definition(str(emd))
    out = tmp_path / "out.tif"
    with pytest.raises(CustomCodeRefusedError) as err:
        classify_pixels(str(raster), md, str(out), "")
    text = str(err.value)
    assert "NeighbourClassifier.py" in text and "ALLOW_CUSTOM_CODE" in text
    assert "Processing > Options > Providers > Deep Learning Tools" in text and "delete files" in text
    assert not marker.exists() and not out.exists()


def test_function_error_shows_its_own_lines_and_the_block(tmp_path):
    raster, _ = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "Raiser", prf.raising(after_blocks=1))
    md = load_model_definition(str(emd))
    out = tmp_path / "out.tif"
    with pytest.raises(CustomFunctionError) as err:
        classify_pixels(str(raster), md, str(out), "", allow_custom_code=True)
    text = str(err.value)
    assert "Raiser.py" in text and "KeyError" in text and "no such key" in text
    lines = prf.raising(after_blocks=1).splitlines()
    explode_line = next(i for i, s in enumerate(lines, 1) if "no such key" in s)
    call_line = next(i for i, s in enumerate(lines, 1) if "self.explode(pixelBlocks)" in s)
    assert f"line {explode_line}, in explode" in text and f"line {call_line}, in updatePixels" in text
    assert "column 10, row 0" in text
    assert "custom_raster.py" not in text  # only the function's own frames
    assert not out.exists()


@pytest.mark.parametrize("kind,needle", [("shape", "shape (9, 10)"), ("dtype", "dtype float64")])
def test_wrong_shapes_and_dtypes_name_the_key(tmp_path, kind, needle):
    raster, _ = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "Wrong", prf.wrong(kind))
    md = load_model_definition(str(emd))
    out = tmp_path / "out.tif"
    with pytest.raises(CustomFunctionError) as err:
        classify_pixels(str(raster), md, str(out), "", allow_custom_code=True)
    text = str(err.value)
    assert "output_pixels" in text and needle in text
    if kind == "shape":
        assert "expected (10, 10)" in text  # a single-band output's shape is (rows, columns), as Esri documents
    assert not out.exists()


def test_bad_argument_values(tmp_path):
    raster, _ = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    for text, needle in (("threshold abc", "must be a number"), ("invert maybe", "True or False"),
                         ("mode up", "one of right, left")):
        with pytest.raises(ArgumentError, match=needle):
            classify_pixels(str(raster), md, str(tmp_path / "o.tif"), text, allow_custom_code=True)


def test_detect_change_with_function(tmp_path):
    rng = np.random.default_rng(1)
    before = rng.integers(0, 100, (2, 20, 30)).astype(np.uint8)
    after = rng.integers(0, 100, (2, 20, 30)).astype(np.uint8)
    r1 = write_raster(tmp_path / "before.tif", before)
    r2 = write_raster(tmp_path / "after.tif", after)
    emd = prf.write_function(tmp_path / "model", "Growth", prf.CHANGE_FUNCTION,
                             classes=((0, "no change", (0, 0, 0)), (1, "growth", (0, 255, 0))))
    md = load_model_definition(str(emd))
    out = tmp_path / "change.tif"
    detect_change(str(r1), str(r2), md, str(out), "margin 5", allow_custom_code=True)
    expected = (after[0].astype(int) > before[0].astype(int) + 5).astype(np.uint8)
    np.testing.assert_array_equal(read_raster(out), expected)
    with pytest.raises(CustomCodeRefusedError):
        detect_change(str(r1), str(r2), md, str(tmp_path / "c2.tif"), "")


def test_parameter_info_read_without_running(tmp_path):
    marker = tmp_path / "ran.txt"
    source = f"open({str(marker)!r}, 'w').write('ran')\n" + prf.NEIGHBOUR_CLASSIFIER
    path = tmp_path / "f.py"
    path.write_text(source, encoding="utf-8")
    params, note = parameter_info_from_source(path)
    args = model_arguments(params)
    assert [a["name"] for a in args] == ["threshold", "invert", "mode"]
    assert args[0]["value"] == 100 and args[0]["description"].startswith("Band 2 value")
    assert args[2]["domain"] == ("right", "left")
    assert note == "" and not marker.exists()
    computed = tmp_path / "g.py"
    computed.write_text("class G:\n    def getParameterInfo(self):\n        return [{'name': 'padding', "
                        "'dataType': 'numeric', 'value': self.json_info['Padding']}]\n", encoding="utf-8")
    params, note = parameter_info_from_source(computed)
    assert params == [{"name": "padding", "dataType": "numeric", "value": None}] and "padding" in note
    dynamic = tmp_path / "h.py"
    dynamic.write_text("class H:\n    def getParameterInfo(self):\n        return make()\n", encoding="utf-8")
    params, note = parameter_info_from_source(dynamic)
    assert params == [] and "cannot be read without running it" in note
    # Esri's Draft templates: a list of the required entries, then .extend([...]); also .append and +=
    grown = tmp_path / "grown.py"
    grown.write_text("class G:\n    def getParameterInfo(self):\n"
                     "        params = [{'name': 'raster', 'dataType': 'raster'}, {'name': 'model'}]\n"
                     "        params.extend([{'name': 'a', 'value': 1}, {'name': 'b', 'value': 'x'}])\n"
                     "        params.append({'name': 'c', 'value': True})\n"
                     "        params += [{'name': 'd', 'value': 2.5}]\n"
                     "        return params\n", encoding="utf-8")
    params, note = parameter_info_from_source(grown)
    assert [(p["name"], p["value"]) for p in model_arguments(params)] == [("a", 1), ("b", "x"), ("c", True),
                                                                          ("d", 2.5)] and note == ""
    unknown = tmp_path / "unknown.py"
    unknown.write_text("class U:\n    def getParameterInfo(self):\n        params = [{'name': 'a'}]\n"
                       "        params.extend(more())\n        return params\n", encoding="utf-8")
    params, note = parameter_info_from_source(unknown)
    assert params == [] and "cannot be read without running it" in note


def test_symlinked_model_is_named_as_given(tmp_path):
    raster, _ = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "real", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    os.symlink(tmp_path / "real", tmp_path / "link")
    md = load_model_definition(str(tmp_path / "link" / emd.name))
    with pytest.raises(CustomCodeRefusedError) as err:
        classify_pixels(str(raster), md, str(tmp_path / "o.tif"), "")
    assert str(tmp_path / "link" / "NeighbourClassifier.py") in str(err.value)


def _square(x0: float, y0: float, size: float) -> bytes:
    from osgeo import ogr

    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((x0, y0), (x0 + size, y0), (x0 + size, y0 - size), (x0, y0 - size), (x0, y0)):
        ring.AddPoint_2D(x, y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return bytes(poly.ExportToWkb())


def test_object_classifier_function_labels_every_chip(tmp_path):
    from dltools.core.tools.classify_objects.function import open_object_classifier

    arr = np.zeros((1, 60, 60), np.uint8)
    arr[0, :, 30:] = 200  # right half bright
    raster = write_raster(tmp_path / "img.tif", arr, origin=(0.0, 60.0))
    emd = prf.write_function(tmp_path / "model", "Brightness", prf.OBJECT_CLASSIFIER,
                             model_type="ObjectClassification", tile=8,
                             classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 255))))
    md = load_model_definition(str(emd))
    features = [(i, _square(x, 50.0, 8.0)) for i, x in enumerate((2.0, 12.0, 36.0, 48.0, 5.0))]
    progress = RecordingProgress()
    with pytest.raises(CustomCodeRefusedError):
        open_object_classifier(md, "", progress=progress)
    clf = open_object_classifier(md, "batch_size 4", progress=progress, allow_custom_code=True)
    results = list(clf.classify(str(raster), features, len(features)))
    assert [r.label for r in results] == ["dark", "dark", "bright", "bright", "dark"]
    assert [r.class_value for r in results] == [1, 1, 2, 2, 1]
    assert [round(r.confidence, 6) for r in results] == [60.0, 60.0, 75.0, 75.0, 60.0]
    assert any("Brightness.py" in m and "SHA-256" in m for m in progress.infos)


def test_object_classifier_function_gets_the_nodata_mask(tmp_path):
    """rasters_mask is each chip's real validity: 0 at NoData and past the raster's edge, 1 elsewhere."""
    from dltools.core.tools.classify_objects.function import open_object_classifier

    arr = np.full((1, 60, 60), 100, np.uint8)
    arr[0, :, :10] = 0  # NoData (0) in columns 0-9
    raster = write_raster(tmp_path / "img.tif", arr, origin=(0.0, 60.0), nodata=0)
    # confidence 50 + 50 x the valid share of the chip's mask; "bright" only when every pixel is valid
    old = ("        for chip in chips:\n"
           "            mean = float(np.asarray(chip)[0].mean())\n"
           "            label = \"bright\" if mean > 100 else \"dark\"\n"
           "            features.append({\"attributes\": {\"Label\": label, \"Confidence\": 75.0 if label == "
           "\"bright\" else 60.0},\n")
    new = ("        for chip, mask in zip(chips, masks):\n"
           "            mask = np.asarray(mask)\n"
           "            assert mask.dtype == np.uint8 and mask.shape == np.asarray(chip).shape\n"
           "            share = float(mask.mean())\n"
           "            label = \"bright\" if share == 1.0 else \"dark\"\n"
           "            features.append({\"attributes\": {\"Label\": label, \"Confidence\": 50.0 + 50.0 * share},\n")
    assert old in prf.OBJECT_CLASSIFIER
    emd = prf.write_function(tmp_path / "model", "Brightness", prf.OBJECT_CLASSIFIER.replace(old, new),
                             model_type="ObjectClassification", tile=8,
                             classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 255))))
    md = load_model_definition(str(emd))
    # 8 x 8 chips at columns x0..x0+7: 12 all valid; 6 half NoData; 8 a quarter NoData; 56 half past the edge
    features = [(i, _square(x, 50.0, 8.0)) for i, x in enumerate((12.0, 6.0, 8.0, 56.0))]
    clf = open_object_classifier(md, "batch_size 3", allow_custom_code=True)
    results = list(clf.classify(str(raster), features, len(features)))
    assert [r.label for r in results] == ["bright", "dark", "dark", "dark"]
    assert [round(r.confidence, 6) for r in results] == [100.0, 75.0, 87.5, 75.0]


def test_object_classifier_masks_follow_their_chips_across_batches(tmp_path):
    """Each chip's mask travels with the chip through the pending queue: batches of 4 cut between items with no
    chip (no geometry, no valid pixel, outside the raster) still give every chip its own NoData share."""
    from dltools.core.tools.classify_objects.function import open_object_classifier

    arr = np.full((1, 60, 60), 100, np.uint8)
    arr[0, :, :10] = 0  # NoData (0) in columns 0-9
    raster = write_raster(tmp_path / "img.tif", arr, origin=(0.0, 60.0), nodata=0)
    old = ("        for chip in chips:\n"
           "            mean = float(np.asarray(chip)[0].mean())\n"
           "            label = \"bright\" if mean > 100 else \"dark\"\n"
           "            features.append({\"attributes\": {\"Label\": label, \"Confidence\": 75.0 if label == "
           "\"bright\" else 60.0},\n")
    new = ("        for chip, mask in zip(chips, masks):\n"
           "            share = float(np.asarray(mask).mean())\n"
           "            label = \"bright\" if share == 1.0 else \"dark\"\n"
           "            features.append({\"attributes\": {\"Label\": label, \"Confidence\": 50.0 + 50.0 * share},\n")
    assert old in prf.OBJECT_CLASSIFIER
    emd = prf.write_function(tmp_path / "model", "Share", prf.OBJECT_CLASSIFIER.replace(old, new),
                             model_type="ObjectClassification", tile=8,
                             classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 255))))
    # 8 x 8 chips at columns x0..x0+7: valid share (x0 + 8 - 10) / 8 left of column 10, (60 - x0) / 8 at the right
    # edge; x0 = 2 has no valid pixel and x0 = 100 is outside: no chip, like the feature without a geometry
    columns = [3.0, None, 12.0, 2.0, 56.0, 4.0, 100.0, 9.0, 58.0, 6.0, 10.0]
    shares = [1 / 8, None, 1.0, None, 4 / 8, 2 / 8, None, 7 / 8, 2 / 8, 4 / 8, 1.0]
    items = [(i, None, "no geometry") if x is None else (i, _square(x, 50.0, 8.0)) for i, x in enumerate(columns)]
    clf = open_object_classifier(md := load_model_definition(str(emd)), "batch_size 4", allow_custom_code=True)
    assert md.model_type == "ObjectClassification"
    results = list(clf.classify(str(raster), items, len(items)))
    assert [r.key for r in results] == list(range(len(columns)))
    assert [None if r.confidence is None else round(r.confidence, 6) for r in results] == \
        [None if s is None else round(50.0 + 50.0 * s, 6) for s in shares]
    assert [r.label for r in results] == [None if s is None else "bright" if s == 1.0 else "dark" for s in shares]
    assert results[1].note == "no geometry"


def test_model_file_messages_keep_the_path_the_user_gave(tmp_path):
    """A model reached through a symbolic link is named by that link, not by where it points."""
    import json

    from dltools.core.errors import ModelDefinitionError

    real = tmp_path / "store" / "models"
    real.mkdir(parents=True)
    (real / "m.emd").write_text(json.dumps({"ModelType": "ImageClassification", "ModelFile": "m.onnx",
                                            "Framework": "ONNX", "ImageHeight": 8, "ImageWidth": 8}))
    os.symlink(real, tmp_path / "shortcut")
    given = tmp_path / "shortcut" / "m.emd"
    with pytest.raises(ModelDefinitionError) as err:
        load_model_definition(str(given))
    assert str(tmp_path / "shortcut" / "m.onnx") in str(err.value) and "store" not in str(err.value)
    (real / "m.onnx").write_bytes(b"")
    md = load_model_definition(str(given), check_file=False)
    assert md.model_file == tmp_path / "shortcut" / "m.onnx" and md.base_dir == tmp_path / "shortcut"


def test_detector_function_rings_become_map_polygons(tmp_path):
    from dltools.core.tools.detect_objects.pipeline import detect_objects
    from osgeo import ogr

    arr = np.zeros((2, 30, 37), np.uint8)
    spots = [(0, 0), (5, 15), (11, 16), (12, 16), (29, 36), (20, 3)]
    for r, c in spots:
        arr[0, r, c] = 255
    arr[1, 20, 3] = 255
    raster = write_raster(tmp_path / "spots.tif", arr, origin=(1000.0, 2000.0), cell=2.0)
    emd = prf.write_function(tmp_path / "m", "SpotDetector", prf.DETECTOR, model_type="ObjectDetection",
                             classes=((1, "spot", (255, 0, 0)), (2, "big spot", (0, 0, 255))))
    md = load_model_definition(str(emd))
    with pytest.raises(CustomCodeRefusedError):
        detect_objects(str(raster), md, "")
    progress = RecordingProgress()
    result = detect_objects(str(raster), md, "padding 3", progress=progress, allow_custom_code=True)
    got = sorted((ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope(), o.class_name, o.class_value, o.confidence)
                 for o in result.objects)
    expected = sorted(((1000.0 + 2 * c, 1000.0 + 2 * c + 2, 2000.0 - 2 * r - 2, 2000.0 - 2 * r),
                       "big spot" if (r, c) == (20, 3) else "spot", 2 if (r, c) == (20, 3) else 1, 90.0)
                      for r, c in spots)
    assert got == expected
    assert result.tiles == 9  # 37/16 -> 3 columns, 30/12 -> 3 rows
    assert result.blocks == 1 and any(m.startswith("Done: 9 tiles of 16x12 in 1 block (") for m in progress.infos)
    # The last row of chips is moved inward (edge_fill mirror): its centre overlaps row 1's, where the spot at
    # row 20 lies; that chip sees it too but it is row 1's, so it is reported once.  ArcGIS's zero-filled
    # layout and small engine blocks find the same objects.
    for more in ("edge_fill zero", "block_size 16"):
        again = detect_objects(str(raster), md, f"padding 3;{more}", allow_custom_code=True)
        assert sorted((ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope(), o.class_name, o.class_value, o.confidence)
                      for o in again.objects) == expected, more
    assert any("Fields the function declares: Class, Confidence, Brightness (written besides Class, ClassValue, "
               "Confidence: Brightness)" in m for m in progress.infos)
    assert result.extra_fields == [("Brightness", "integer")]
    assert sorted(o.extra for o in result.objects) == [(0,)] * 5 + [(255,)]


def _cluster_available():
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


@pytest.mark.skipif(not _cluster_available(), reason="dask[distributed] is not installed")
def test_function_on_a_local_cluster_equals_in_process(tmp_path):
    """SCHEDULER local:2 with ALLOW_CUSTOM_CODE: the function's file is shipped, checked by SHA-256 on each
    worker, and its blocks give the same raster and objects as in-process."""
    raster, arr = _raster(tmp_path)
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier", prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    here = classify_pixels(str(raster), md, str(tmp_path / "a.tif"), "threshold 120;block_size 8",
                           allow_custom_code=True)
    progress = RecordingProgress()
    there = classify_pixels(str(raster), md, str(tmp_path / "b.tif"), "threshold 120;block_size 8",
                            allow_custom_code=True, scheduler="local:2", retries=0, progress=progress)
    np.testing.assert_array_equal(read_raster(tmp_path / "b.tif"), read_raster(tmp_path / "a.tif"))
    assert there.pixel_counts == here.pixel_counts and there.blocks == 9
    sha = hashlib.sha256((tmp_path / "model" / "NeighbourClassifier.py").read_bytes()).hexdigest()
    log = "\n".join(progress.infos)
    assert "on the Dask workers of 'local:2' (ALLOW_CUSTOM_CODE given for this run)" in log and sha in log
    assert "Dask: 9 blocks ran on" in log
    from dltools.core.tools.detect_objects.pipeline import detect_objects

    spots = np.zeros((2, 30, 37), np.uint8)
    for r, c in ((0, 0), (5, 15), (20, 3), (29, 36)):
        spots[0, r, c] = 255
    image = write_raster(tmp_path / "spots.tif", spots, origin=(1000.0, 2000.0), cell=2.0)
    det = load_model_definition(str(prf.write_function(tmp_path / "d", "SpotDetector", prf.DETECTOR,
                                                       model_type="ObjectDetection")))
    a = detect_objects(str(image), det, "padding 3;block_size 16", allow_custom_code=True)
    b = detect_objects(str(image), det, "padding 3;block_size 16", allow_custom_code=True, scheduler="local:1")
    assert len(a.objects) == 4 and sorted((o.wkb, o.class_name, o.confidence) for o in b.objects) == \
        sorted((o.wkb, o.class_name, o.confidence) for o in a.objects)


@pytest.mark.skipif(not _cluster_available(), reason="dask[distributed] is not installed")
def test_function_error_on_a_worker_names_its_line_and_leaves_no_output(tmp_path):
    from dltools.core.engine.cluster import ClusterError

    raster, _ = _raster(tmp_path)
    md = load_model_definition(str(prf.write_function(tmp_path / "model", "Raiser", prf.raising(after_blocks=0))))
    out = tmp_path / "out.tif"
    with pytest.raises(ClusterError) as err:
        classify_pixels(str(raster), md, str(out), "", allow_custom_code=True, scheduler="local:1", retries=0)
    text = str(err.value)
    assert "Raiser.py" in text and "in explode" in text and "no such key" in text and "RETRIES 0" in text
    assert not out.exists()


def test_worker_runs_the_function_only_when_allowed_and_unchanged(tmp_path):
    """What a worker checks before it loads the shipped file: the run's permission, then its SHA-256."""
    from dltools.core.model.function_source import sha256_of
    from dltools.core.prf.function_model import FunctionOpener
    from dltools.core.prf.host import CustomCodeRefusedError, PythonRasterFunction

    marker = tmp_path / "ran.txt"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "nc_helper.py").write_text("FACTOR = 3\n", encoding="utf-8")  # beside the function only
    emd = prf.write_function(tmp_path / "model", "NeighbourClassifier",
                             f"open({str(marker)!r}, 'a').write('ran')\nimport nc_helper\n"
                             + prf.NEIGHBOUR_CLASSIFIER)
    md = load_model_definition(str(emd))
    shipped = tmp_path / "worker" / "NeighbourClassifier.py"
    shipped.parent.mkdir()
    shipped.write_bytes((tmp_path / "model" / "NeighbourClassifier.py").read_bytes())
    sha = sha256_of(shipped)
    with pytest.raises(CustomCodeRefusedError, match="without ALLOW_CUSTOM_CODE"):
        FunctionOpener(md, {}, sha, False).open(shipped, None)
    with pytest.raises(CustomFunctionError, match="SHA-256"):
        FunctionOpener(md, {}, "0" * 64, True).open(shipped, None)
    assert not marker.exists()
    model = FunctionOpener(md, {"threshold": 7}, sha, True).open(shipped, None)
    assert isinstance(model.prf, PythonRasterFunction) and model.prf.obj.threshold == 7.0
    assert marker.read_text() == "ran"
    # the model's folder is reachable (as with local:N): initialize() got the .emd path, as in-process
    assert model.prf.obj.json_info["InferenceFunction"] == "NeighbourClassifier.py"
    assert model.prf._model_argument() == str(emd)


DATA_RANGE_FUNCTION = prf._COMMON + '''

class Stretch:
    def initialize(self, **kwargs):
        pass

    def getParameterInfo(self):
        return PARAMS

    def getConfiguration(self, **scalars):
        return {"padding": 2, "tx": 8, "ty": 8, "dataRange": (0, 1), "inputMask": True}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["pixelType"] = "f4"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        pix = pixelBlocks["raster_pixels"]  # (1, rows, columns); the output's shape is (rows, columns)
        assert pix.dtype == np.float32 and pix.shape == (1, shape[0] + 4, shape[1] + 4), pix.shape
        pixelBlocks["output_pixels"] = pix[0, 2:-2, 2:-2].copy()
        return pixelBlocks
'''


def test_data_range_rescales_what_the_function_reads(tmp_path):
    """dataRange (0, 1) on 8-bit pixels: raster_pixels is float32 x / 255, read by the shared chip reader."""
    rng = np.random.default_rng(11)
    arr = rng.integers(0, 256, (1, 13, 21)).astype(np.uint8)
    raster = write_raster(tmp_path / "in.tif", arr)
    md = load_model_definition(str(prf.write_function(tmp_path / "m", "Stretch", DATA_RANGE_FUNCTION)))
    progress = RecordingProgress()
    classify_pixels(str(raster), md, str(tmp_path / "o.tif"), "", progress=progress, allow_custom_code=True)
    expected = arr[0].astype(np.float32) * np.float32(1.0 / 255.0) + np.float32(0.0)
    np.testing.assert_array_equal(read_raster(tmp_path / "o.tif"), expected)
    assert any("DataRange: linear stretch from 0..255 (8-bit) to [0, 1]" in m for m in progress.infos)


def test_cancel_leaves_no_output(tmp_path):
    raster, _ = _raster(tmp_path)
    md = load_model_definition(str(prf.write_function(tmp_path / "model", "NeighbourClassifier",
                                                      prf.NEIGHBOUR_CLASSIFIER)))
    out = tmp_path / "out.tif"
    out.write_bytes(b"before")
    from dltools.core.errors import CancelledError

    with pytest.raises(CancelledError):
        classify_pixels(str(raster), md, str(out), "block_size 8", progress=RecordingProgress(cancel_after=2),
                        allow_custom_code=True)
    assert out.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "model", "out.tif"]


def test_two_class_function_label_and_confidence_are_written_as_returned(tmp_path):
    """A 2-class function answering "dark, Confidence 40" is written as dark at 40: the function's own label and
    confidence, never turned into a probability row whose argmax is the other class (it was "bright" at 60)."""
    from dltools.core.tools.classify_objects.function import open_object_classifier

    arr = np.zeros((1, 60, 60), np.uint8)
    arr[0, :, 30:] = 200
    raster = write_raster(tmp_path / "img.tif", arr, origin=(0.0, 60.0))
    source = prf.OBJECT_CLASSIFIER.replace('"Confidence": 75.0 if label == "bright" else 60.0',
                                           '"Confidence": 90.0 if label == "bright" else 40.0')
    assert source != prf.OBJECT_CLASSIFIER
    emd = prf.write_function(tmp_path / "model", "Brightness", source, model_type="ObjectClassification", tile=8,
                             classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 255))))
    clf = open_object_classifier(load_model_definition(str(emd)), "", allow_custom_code=True)
    results = list(clf.classify(str(raster), [(0, _square(2.0, 50.0, 8.0)), (1, _square(40.0, 50.0, 8.0))], 2))
    assert [(r.label, r.class_value, r.confidence) for r in results] == [("dark", 1, 40.0), ("bright", 2, 90.0)]

# SPDX-License-Identifier: GPL-2.0-or-later
"""Esri's Python raster function contract as Esri documents it (raster-functions ``Reference.py`` and wiki): the
documented variants of a function, each written here, each with an output computed with numpy."""

from __future__ import annotations

import numpy as np
import prf_functions as prf
import pytest
from builders import RecordingProgress, read_raster, write_raster
from dltools.core.model.loader import load_model_definition
from dltools.core.prf.host import CustomFunctionError
from dltools.core.tools.classify_pixels.pipeline import classify_pixels
from dltools.core.tools.detect_change.pipeline import detect_change
from osgeo import gdal

H, W = 17, 21


def _image(tmp_path, dtype=np.uint16, nodata=0, metadata=None):
    rng = np.random.default_rng(3)
    arr = rng.integers(1, 200, (3, H, W)).astype(dtype)
    arr[:, 5, 6] = 0  # one NoData pixel
    path = write_raster(tmp_path / "in.tif", arr, nodata=nodata)
    if metadata:
        ds = gdal.Open(str(path), gdal.GA_Update)
        ds.SetMetadata(metadata)
        ds = None
    return path, arr


def _run(tmp_path, source: str, name: str, arguments: str = "", raster=None, **emd) -> tuple:
    raster = raster or _image(tmp_path)[0]
    md = load_model_definition(str(prf.write_function(tmp_path / name, name, source, **emd)))
    out = tmp_path / f"{name}.tif"
    progress = RecordingProgress()
    classify_pixels(str(raster), md, str(out), arguments, allow_custom_code=True, progress=progress)
    ds = gdal.Open(str(out))
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    dtype = gdal.GetDataTypeName(ds.GetRasterBand(1).DataType)
    ds = None
    return read_raster(out), nodata, dtype, progress


def test_no_initialize_and_no_getconfiguration(tmp_path):
    """Only getParameterInfo and updatePixels: every band (no extractBands), no padding, tiles of ImageWidth x
    ImageHeight, and everything inherited (pixel type uint16, NoData 0, the band count until it says 1)."""
    raster, arr = _image(tmp_path)
    out, nodata, dtype, _ = _run(tmp_path, prf.BAND_SUM, "BandSum", raster=raster, tile=8)
    valid = (arr != 0).all(axis=0)
    expected = np.where(valid, arr.astype(np.uint32).sum(axis=0), 0).astype(np.uint16)
    assert dtype == "UInt16" and nodata == 0
    np.testing.assert_array_equal(out, expected)


def test_update_raster_info_gets_arguments_and_raster_info(tmp_path):
    """updateRasterInfo reads the user's argument values and raster_info, and sets the output's pixel type and
    band count: NDVI-like, 'raw' gives float32 NDVI, 'scaled' uint8 100 + 100 x NDVI."""
    raster, arr = _image(tmp_path)
    red, nir = arr[0].astype(np.float32), arr[2].astype(np.float32)
    valid = (arr != 0).all(axis=0)
    ndvi = (nir - red) / (nir + red)
    out, nodata, dtype, _ = _run(tmp_path, prf.INDEX, "Index", "method raw;red 1;nir 3", raster=raster)
    assert dtype == "Float32" and np.isnan(nodata)
    np.testing.assert_array_equal(np.isnan(out), ~valid)
    np.testing.assert_allclose(out[valid], ndvi[valid], rtol=0, atol=1e-6)
    scaled, nodata, dtype, _ = _run(tmp_path, prf.INDEX, "Index", "method scaled;red 1;nir 3", raster=raster)
    assert dtype == "Byte" and nodata == 255
    np.testing.assert_array_equal(scaled[valid], (ndvi[valid] * 100.0 + 100.0).astype(np.uint8))
    # updateKeyMetadata: the output's dataset and band key metadata
    ds = gdal.Open(str(tmp_path / "Index.tif"))
    assert ds.GetMetadata()["datatype"] == "Processed" and ds.GetRasterBand(1).GetMetadata()["bandname"] == "Index"
    ds = None


def test_raster_parameter_by_its_own_name_and_inherited_type(tmp_path):
    """A first raster parameter called 'dem' is the tool's input (not a model argument): dem_pixels, dem_mask and
    dem_info (with the band's statistics, NoData left out: minimum -100); without pixelType the output inherits the
    input's (int16), NoData too (-9999)."""
    dem = (np.arange(H * W, dtype=np.int16).reshape(1, H, W) - 100)
    dem[0, 2, 3] = -9999
    raster = write_raster(tmp_path / "dem.tif", dem, nodata=-9999)
    out, nodata, dtype, _ = _run(tmp_path, prf.DEM_FUNCTION, "Dem", "z 3", raster=raster)
    assert dtype == "Int16" and nodata == -9999
    expected = np.where(dem[0] == -9999, -9999, (dem[0] + 100) * 3).astype(np.int16)
    np.testing.assert_array_equal(out, expected)


def test_rasters_parameter_and_key_metadata(tmp_path):
    """A 'rasters' parameter gets tuples (rasters_pixels, rasters_info); keyMetadata asks for the input's key
    metadata, which updateRasterInfo reads from rasters_keyMetadata."""
    raster, arr = _image(tmp_path, metadata={"SensorName": "Landsat-8", "Other": "x"})
    out, _, dtype, _ = _run(tmp_path, prf.SENSOR_OFFSET, "Sensor", raster=raster)
    valid = (arr != 0).all(axis=0)
    assert dtype == "UInt16"
    np.testing.assert_array_equal(out[valid], arr[1][valid] + 8)


def test_two_raster_parameters_in_detect_change(tmp_path):
    """A function with two raster parameters gets the earlier date as r1 and the later as r2 (extractBands picks
    the same band of each)."""
    rng = np.random.default_rng(4)
    before = rng.integers(1, 100, (2, 20, 30)).astype(np.uint8)
    after = rng.integers(1, 100, (2, 20, 30)).astype(np.uint8)
    r1 = write_raster(tmp_path / "before.tif", before)
    r2 = write_raster(tmp_path / "after.tif", after)
    emd = prf.write_function(tmp_path / "model", "TwoDates", prf.TWO_DATES,
                             classes=((0, "same", (0, 0, 0)), (1, "brighter", (0, 255, 0))))
    out = tmp_path / "change.tif"
    detect_change(str(r1), str(r2), load_model_definition(str(emd)), str(out), "", allow_custom_code=True)
    np.testing.assert_array_equal(read_raster(out), (after[1] > before[1]).astype(np.uint8))


def test_resampling_false_is_refused_when_the_input_is_resampled(tmp_path):
    from dltools.core.raster.request import RasterRequest

    raster, _ = _image(tmp_path)
    source = prf.BAND_SUM.replace("    def updateRasterInfo", "    def getConfiguration(self, **scalars):\n"
                                  "        return {'resampling': False, 'compressionFactor': 50}\n\n"
                                  "    def updateRasterInfo")
    md = load_model_definition(str(prf.write_function(tmp_path / "m", "BandSum", source)))
    progress = RecordingProgress()
    classify_pixels(str(raster), md, str(tmp_path / "same.tif"), "", allow_custom_code=True, progress=progress)
    assert any("compressionFactor 50" in m and "ignored" in m for m in progress.infos)
    with pytest.raises(CustomFunctionError, match="resampling False"):
        classify_pixels(str(raster), md, str(tmp_path / "coarse.tif"), "", request=RasterRequest(cell_size=2.0),
                        allow_custom_code=True)
    assert not (tmp_path / "coarse.tif").exists()


def test_a_further_raster_parameter_takes_a_path_in_the_arguments(tmp_path):
    """A second raster parameter ('other') is a model argument whose value is a raster path: its pixels arrive as
    other_pixels/other_mask on the input's grid, other_info in updateRasterInfo; NoData where either has none."""
    from dltools.core.errors import ArgumentError

    raster, arr = _image(tmp_path)
    rng = np.random.default_rng(9)
    other = rng.integers(1, 50, (2, H, W)).astype(np.uint8)
    other[:, 10, 11] = 0
    other_path = write_raster(tmp_path / "other.tif", other, nodata=0)
    out, nodata, dtype, progress = _run(tmp_path, prf.TWO_RASTERS, "TwoRasters", f"other {other_path};gain 2",
                                        raster=raster)
    valid = (arr != 0).all(axis=0) & (other != 0).all(axis=0)
    assert dtype == "Float32" and nodata == 0 and (out[~valid] == 0).all()  # NoData inherited from the input
    np.testing.assert_array_equal(out[valid], (arr[0].astype(np.float32) + 2 * other[0].astype(np.float32))[valid])
    assert any("Further raster parameters: other = " in m for m in progress.infos)
    with pytest.raises(ArgumentError, match=r"Raster parameter 'other' is required by the function: give a raster's"):
        _run(tmp_path, prf.TWO_RASTERS, "TwoRasters", "", raster=raster)


def test_nodata_the_output_type_cannot_hold_is_refused(tmp_path):
    raster, _ = _image(tmp_path)
    source = prf.BAND_SUM.replace("class BandSum:", "class BadNoData:").replace(
        "    def updatePixels", "    def updateRasterInfo(self, **kwargs):\n"
        "        kwargs['output_info']['pixelType'] = 'u1'\n"
        "        kwargs['output_info']['bandCount'] = 1\n"
        "        kwargs['output_info']['noData'] = np.array([-1.0])\n"
        "        return kwargs\n\n    def updatePixels")
    with pytest.raises(CustomFunctionError, match=r"noData -1, which the output pixel type 'u1' \(0\.\.255"):
        _run(tmp_path, source, "BadNoData", raster=raster)
    assert not (tmp_path / "BadNoData.tif").exists()


HELPER_USER = '''
import numpy as np

import helper


class Scaled:
    def getParameterInfo(self):
        return [{"name": "raster", "dataType": "raster", "value": None, "required": True}]

    def getConfiguration(self, **scalars):
        return {"extractBands": (0,), "inheritProperties": 4 | 8}

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"]["pixelType"] = "u2"
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        import helper_late  # imported on the first call, from the model's own folder too

        factor = helper.FACTOR * helper_late.FACTOR
        pixelBlocks["output_pixels"] = (pixelBlocks["raster_pixels"] * factor).astype(props["pixelType"])
        return pixelBlocks
'''


def test_two_models_with_same_named_helper_modules_in_one_session(tmp_path):
    """Model A and model B each import their own 'helper' and 'helper_late' (same names, other factors): each runs
    its own, in any order, and the log names every file imported from the model's folder with its SHA-256."""
    import hashlib
    import sys

    raster, arr = _image(tmp_path)
    outs = {}
    for name, factors in (("a", (2, 3)), ("b", (5, 7)), ("a2", (2, 3))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "helper.py").write_text(f"FACTOR = {factors[0]}\n", encoding="utf-8")
        (folder / "helper_late.py").write_text(f"FACTOR = {factors[1]}\n", encoding="utf-8")
        md = load_model_definition(str(prf.write_function(folder, "Scaled", HELPER_USER)))
        progress = RecordingProgress()
        classify_pixels(str(raster), md, str(tmp_path / f"{name}.tif"), "", allow_custom_code=True, progress=progress)
        outs[name] = read_raster(tmp_path / f"{name}.tif")
        valid = (arr != 0).all(axis=0)
        np.testing.assert_array_equal(outs[name][valid], (arr[0] * factors[0] * factors[1])[valid])
        log = "\n".join(progress.infos)
        for helper in ("helper.py", "helper_late.py"):
            digest = hashlib.sha256((folder / helper).read_bytes()).hexdigest()
            assert f"imported '{helper}' from the model's folder (SHA-256 {digest})" in log
        assert "helper" not in sys.modules and "helper_late" not in sys.modules


CONSTANT = '''
import numpy as np


class {name}:
    def getParameterInfo(self):
        return [{{"name": "raster", "dataType": "raster", "value": None, "required": True}}]

    def updateRasterInfo(self, **kwargs):
        kwargs["output_info"].update(bandCount=1, pixelType="u1")
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        pixelBlocks["output_pixels"] = np.full(shape, 2, props["pixelType"])
        return pixelBlocks
'''


def test_a_function_beside_a_native_model_file_runs_when_allowed(tmp_path):
    """An ONNX model whose .emd also names its own function: with custom code allowed the function runs (as ArcGIS
    runs it); without, the ONNX file runs and the log says the function was not run; an arcgis.learn standard
    function (ArcGISImageClassifier.py) stays native either way."""
    from builders import conv_module, export_onnx, write_emd

    rng = np.random.default_rng(2)
    image = rng.integers(1, 255, (3, 24, 24)).astype(np.uint8)
    raster = write_raster(tmp_path / "img.tif", image)
    export_onnx(conv_module(3, 2, 3, seed=4), tmp_path / "conv.onnx", 3, 16)
    classes = ((1, "one", (255, 0, 0)), (2, "two", (0, 0, 255)))
    plain = load_model_definition(str(write_emd(tmp_path / "plain.emd", "conv.onnx", tile=16, classes=classes)))
    classify_pixels(str(raster), plain, str(tmp_path / "native.tif"))
    native = read_raster(tmp_path / "native.tif")
    assert set(np.unique(native)) == {1, 2}  # the comparison below can tell the two apart
    for stem in ("Constant", "ArcGISImageClassifier"):
        (tmp_path / f"{stem}.py").write_text(CONSTANT.format(name=stem), encoding="utf-8")
        md = load_model_definition(str(write_emd(tmp_path / f"{stem}.emd", "conv.onnx", tile=16, classes=classes,
                                                 InferenceFunction=f"{stem}.py")))
        for allowed in (True, False):
            progress = RecordingProgress()
            out = tmp_path / f"{stem}_{allowed}.tif"
            classify_pixels(str(raster), md, str(out), allow_custom_code=allowed, progress=progress)
            ran_function = stem == "Constant" and allowed
            np.testing.assert_array_equal(read_raster(out), np.full((24, 24), 2, np.uint8) if ran_function else native)
            not_run = [w for w in progress.warnings if f"'{tmp_path / stem}.py' (InferenceFunction) was not run" in w]
            assert len(not_run) == (1 if stem == "Constant" and not allowed else 0)
            assert any("Running the model's own Python code" in m for m in progress.infos) == ran_function


@pytest.mark.skipif(__import__("importlib").util.find_spec("distributed") is None,
                    reason="dask[distributed] is not installed")
def test_further_rasters_and_helpers_on_a_local_cluster_equal_in_process(tmp_path):
    """On Dask workers the function gets the same further raster (shipped by path) and imports its helper from
    the model's folder: the same output as in-process."""
    raster, arr = _image(tmp_path)
    other = write_raster(tmp_path / "other.tif", np.full((2, H, W), 7, np.uint8))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "helper.py").write_text("FACTOR = 3\n", encoding="utf-8")
    (folder / "helper_late.py").write_text("FACTOR = 1\n", encoding="utf-8")
    source = prf.TWO_RASTERS.replace("import numpy as np\n", "import numpy as np\n\nimport helper\n", 1).replace(
        "self.gain * other[0]", "helper.FACTOR * other[0]")
    md = load_model_definition(str(prf.write_function(folder, "TwoRasters", source)))
    here, there = tmp_path / "here.tif", tmp_path / "there.tif"
    classify_pixels(str(raster), md, str(here), f"other {other};block_size 8", allow_custom_code=True)
    classify_pixels(str(raster), md, str(there), f"other {other};block_size 8", allow_custom_code=True,
                    scheduler="local:1", retries=0)
    valid = (arr != 0).all(axis=0)
    np.testing.assert_array_equal(read_raster(here)[valid], arr[0][valid].astype(np.float32) + 21)
    np.testing.assert_array_equal(read_raster(there), read_raster(here))

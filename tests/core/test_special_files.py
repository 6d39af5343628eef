# SPDX-License-Identifier: GPL-2.0-or-later
"""A model definition whose ModelFile or InferenceFunction is a pipe, a device or a folder gets a message that says
so (reading a pipe could wait for ever, /dev/zero never ends), never "not found" or "no custom function"."""

from __future__ import annotations

import json
import os

import pytest
from dltools.core.errors import ModelDefinitionError
from dltools.core.model.loader import load_model_definition

EMD = {"Framework": "ONNX", "ModelType": "ImageClassification", "ImageHeight": 8, "ImageWidth": 8,
       "Classes": [{"Value": 1, "Name": "a"}]}


def emd(tmp_path, **keys) -> str:
    path = tmp_path / "m.emd"
    path.write_text(json.dumps({**EMD, **keys}), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_model_file_that_is_not_a_regular_file(tmp_path, kind):
    if kind == "fifo":
        os.mkfifo(tmp_path / "m.onnx")
        target, what = "m.onnx", "is a pipe, socket or device"
    elif kind == "device":
        target, what = "/dev/zero", "is a pipe, socket or device"
    else:
        (tmp_path / "m.onnx").mkdir()
        target, what = "m.onnx", "is a folder"
    with pytest.raises(ModelDefinitionError, match=f"^ModelFile '{target}' \\(.*\\) {what}") as info:
        load_model_definition(emd(tmp_path, ModelFile=target))
    assert "not found" not in str(info.value)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_inference_function_that_is_not_a_regular_file(tmp_path, kind):
    if kind == "fifo":
        os.mkfifo(tmp_path / "f.py")
    else:
        (tmp_path / "f.py").mkdir()
    what = "a folder" if kind == "folder" else r"a pipe, socket or device \(reading it could wait for ever or never end\)"
    with pytest.raises(ModelDefinitionError, match=f"^InferenceFunction 'f.py' \\(.*f.py\\) is {what}, not a "
                                                   "Python file"):
        load_model_definition(emd(tmp_path, InferenceFunction="f.py"))


def _vrt(tmp_path, source_name: str, vrt_name: str):
    import numpy as np
    from builders import write_raster
    from osgeo import gdal

    write_raster(tmp_path / "src.tif", np.zeros((1, 8, 8), np.uint8))
    gdal.BuildVRT(str(tmp_path / vrt_name), [str(tmp_path / "src.tif")])
    path = tmp_path / vrt_name
    path.write_text(path.read_text().replace("src.tif", source_name))
    return path


def test_a_vrt_with_a_missing_source_is_a_clear_error(tmp_path):
    from dltools.core.errors import InputDataError
    from dltools.core.raster.gdal_io import RasterSource

    vrt = _vrt(tmp_path, "gone.tif", "missing.vrt")
    with pytest.raises(InputDataError, match=r"^Cannot read raster 'missing.vrt' at pixels \(0, 0\) to \(8, 8\): "
                                             r".*gone.tif: No such file or directory"):
        RasterSource(str(vrt), [0]).read(0, 0, 8, 8)


def test_a_vrt_that_names_itself_is_refused_when_opened(tmp_path):
    from dltools.core.errors import InputDataError
    from dltools.core.raster.gdal_io import open_raster

    vrt = _vrt(tmp_path, "self.vrt", "self.vrt")
    with pytest.raises(InputDataError, match="^Raster 'self.vrt' is a VRT that names itself as its source"):
        open_raster(str(vrt))

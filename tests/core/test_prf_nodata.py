# SPDX-License-Identifier: GPL-2.0-or-later
"""A model function's output NoData is never dropped silently: one the output type cannot hold, or that is not a
number, is refused naming the function and the value (it once fell back to a default behind a bare ``pass``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dltools.core.prf.errors import CustomFunctionError
from dltools.core.prf.raster_info import output_nodata


@pytest.mark.parametrize(("given", "dtype", "message"), [
    ("abc", "uint8", "set output_info noData 'abc', which is not a number"),
    (300, "uint8", "set output_info noData 300, which the output pixel type 'u1' (0..255, whole numbers) cannot hold"),
    (-1, "uint16", "set output_info noData -1, which the output pixel type 'u2' (0..65535, whole numbers) cannot hold"),
    (2.5, "int16", "set output_info noData 2.5, which the output pixel type 'i2'"),
    (float("nan"), "uint8", "set output_info noData nan, which the output pixel type 'u1'"),
])
def test_a_nodata_the_output_cannot_hold_is_refused(given, dtype, message):
    with pytest.raises(CustomFunctionError, match="^updateRasterInfo\\(\\) of 'f.py' " + message.replace("(", "\\(")
                       .replace(")", "\\)").replace(".", "\\.")):
        output_nodata(given, np.dtype(dtype), "f.py")


def test_what_a_function_sets_is_kept_and_defaults_are_the_types():
    assert output_nodata(7, np.dtype("uint8"), "f.py") == 7.0
    assert output_nodata([9, 1], np.dtype("int16"), "f.py") == 9.0  # one per band: the first
    assert output_nodata(-9999.5, np.dtype("float32"), "f.py") == -9999.5
    assert math.isnan(output_nodata(None, np.dtype("float32"), "f.py"))
    assert output_nodata(None, np.dtype("uint16"), "f.py") == 65535.0
    assert output_nodata((), np.dtype("uint8"), "f.py") == 255.0

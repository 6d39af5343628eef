# SPDX-License-Identifier: GPL-2.0-or-later
"""What a function's ``getConfiguration()`` asks for, with Esri's documented defaults where it says nothing.

Esri's contract (raster-functions ``Reference.py`` and the wiki's "Anatomy of a Python Raster Function"): the method
is optional; every key is optional.  The keys this host honours:

* ``extractBands`` (0-based band indexes; default: every band), ``padding`` (default 0), ``tx``/``ty`` (the deep
  learning tools' tile size; default the definition's ImageWidth/ImageHeight less the padding), ``batch_size``,
  ``dataRange`` (rescale the input to 0-1 before the function sees it), ``inputMask`` (pass ``<name>_mask``;
  default False);
* ``inheritProperties`` (default 0xFF: everything; 1 pixel type, 2 NoData, 4 dimensions, 8 resampling): what the
  output takes from the first input raster before ``updateRasterInfo`` changes it;
* ``invalidateProperties`` (statistics, histogram, key properties the output must not keep): the output is a new
  GeoTIFF that holds none of the input's, so there is nothing to invalidate; read and accepted;
* ``resampling`` (whether the input may be resampled to the output grid; default True): the input is read on the
  processing grid, resampled bilinearly when that grid differs; ``False`` is refused when it does;
* ``keyMetadata`` (the key metadata names the function wants in ``updateRasterInfo``): passed as
  ``<name>_keyMetadata`` (see :mod:`.raster_info`);
* ``compressionFactor``, ``samplingFactor``: hints for how ArcGIS reads and caches blocks; ignored with a log line;
* ``compositeRasters``, ``selectRasters``: not hosted (a clear error; ``selectRasters`` is a method, checked by
  :class:`.host.PythonRasterFunction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..flags import is_true
from .errors import CustomFunctionError

#: Bits of ``inheritProperties`` (Esri's wiki): pixel type, NoData, dimensions, resampling.
INHERIT_PIXEL_TYPE, INHERIT_NODATA, INHERIT_DIMENSIONS, INHERIT_RESAMPLING = 1, 2, 4, 8
#: Esri's default when ``inheritProperties`` is absent: every property is inherited.
INHERIT_ALL = 0xFF
#: Keys read and noted in the log, but without effect on a file written block by block.
HINT_KEYS = ("compressionFactor", "samplingFactor")


@dataclass
class Configuration:
    """What ``getConfiguration`` asked for, with Esri's defaults filled in (see the module text)."""

    bands: list[int] | None
    padding: int
    tx: int
    ty: int
    batch_size: int | None
    data_range: tuple[float, float] | None
    input_mask: bool
    inherit: int
    key_metadata: tuple[str, ...] = ()
    resampling: bool = True
    hints: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def as_bool(value: Any) -> bool:
    """A configuration flag as Esri's functions write them: True/False, 1/0 or their text."""
    return is_true(value) if isinstance(value, str) else bool(value)


def _integer(conf: dict[str, Any], key: str, default: int, shown: str) -> int:
    value = conf.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CustomFunctionError(f"getConfiguration() of '{shown}' returned {key}={value!r}, which is not a whole "
                                 "number") from None


def _bands(conf: dict[str, Any], shown: str) -> list[int] | None:
    bands = conf.get("extractBands")
    if bands is None:
        return None
    try:
        return [int(b) for b in bands]
    except (TypeError, ValueError):
        raise CustomFunctionError(f"getConfiguration() of '{shown}' returned extractBands={bands!r}: expected a tuple "
                                 "of 0-based band indexes") from None


def _data_range(conf: dict[str, Any], shown: str) -> tuple[float, float] | None:
    data_range = conf.get("dataRange")
    if data_range is None:
        return None
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise CustomFunctionError(f"getConfiguration() of '{shown}' returned dataRange={data_range!r}: expected "
                                 "(min, max)") from None
    return lo, hi


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        return ()


def read_configuration(conf: Any, image_size: tuple[int, int], shown: str) -> Configuration:
    """``conf`` (what ``getConfiguration`` returned; None when the function has no such method) as a
    :class:`Configuration`; ``image_size`` is the definition's (ImageWidth, ImageHeight)."""
    conf = {} if conf is None else conf
    if not isinstance(conf, dict):
        raise CustomFunctionError(f"getConfiguration() of '{shown}' must return a dict, not {type(conf).__name__}")
    if as_bool(conf.get("compositeRasters", False)):
        raise CustomFunctionError(f"getConfiguration() of '{shown}' asks for compositeRasters, which this plugin does "
                                 "not host: read each raster parameter on its own")
    padding = _integer(conf, "padding", 0, shown)
    tx = _integer(conf, "tx", image_size[0] - 2 * padding, shown)
    ty = _integer(conf, "ty", image_size[1] - 2 * padding, shown)
    if padding < 0 or tx < 1 or ty < 1:
        raise CustomFunctionError(f"getConfiguration() of '{shown}' asks for tiles of tx={tx}, ty={ty} with padding "
                                 f"{padding}: tx and ty must be at least 1, padding at least 0")
    batch = conf.get("batch_size")
    return Configuration(
        bands=_bands(conf, shown), padding=padding, tx=tx, ty=ty,
        batch_size=int(batch) if isinstance(batch, (int, float, str)) and str(batch).isdigit() else None,
        data_range=_data_range(conf, shown), input_mask=as_bool(conf.get("inputMask", False)),
        inherit=_integer(conf, "inheritProperties", INHERIT_ALL, shown), key_metadata=_names(conf.get("keyMetadata")),
        resampling=as_bool(conf.get("resampling", True)),
        hints={k: conf[k] for k in HINT_KEYS if conf.get(k) is not None}, raw=conf)

# SPDX-License-Identifier: GPL-2.0-or-later
"""``updateRasterInfo(**kwargs)`` as Esri documents it, and what the host reads back.

The keyword arguments (raster-functions ``Reference.py``): every scalar argument's value by its name; for each
raster parameter ``<name>_info`` (a dict: ``bandCount``, ``pixelType``, ``noData``, ``cellSize``, ``extent``,
``nativeExtent``, ``spatialReference``, ``width``, ``height``, ``statistics``, ``histogram``...; a tuple of such
dicts for a ``rasters`` parameter) and ``<name>_keyMetadata`` (the input's key metadata: the GDAL metadata of its
dataset, limited to the names ``getConfiguration`` listed in ``keyMetadata`` when it listed any); and
``output_info``, populated from the first raster parameter and ``inheritProperties`` (band count; pixel type and
NoData when inherited).  The function edits ``output_info`` (and usually returns ``kwargs``); the host honours
``bandCount``, ``pixelType``, ``noData`` and ``rasterAttributeTable`` (the output's classes).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..model.definition import ClassInfo
from .configuration import INHERIT_NODATA, INHERIT_PIXEL_TYPE
from .errors import CustomFunctionError

#: Esri pixel type codes -> numpy.
PIXEL_TYPES = {"u1": "uint8", "u2": "uint16", "u4": "uint32", "i1": "int8", "i2": "int16", "i4": "int32",
               "f4": "float32", "f8": "float64"}
NUMPY_PIXEL_TYPES = {v: k for k, v in PIXEL_TYPES.items()}


def input_info(source: Any, nodata: list[float | None] | None = None, statistics: tuple = ()) -> dict[str, Any]:
    """The ``<name>_info`` of a raster the tool reads (``grid``, ``dtype``, ``band_count`` of its reader), with
    its bands' approximate ``statistics``."""
    grid = source.grid
    values = [v for v in (nodata or []) if v is not None]
    return {"bandCount": int(source.band_count), "pixelType": NUMPY_PIXEL_TYPES.get(np.dtype(source.dtype).name, "f4"),
            "noData": np.array(values, dtype=np.dtype(source.dtype)) if values else None,
            "cellSize": tuple(grid.cell_size), "extent": tuple(grid.bounds), "nativeExtent": tuple(grid.bounds),
            "spatialReference": grid.crs_wkt, "width": grid.width, "height": grid.height, "format": "GTiff",
            "statistics": tuple(statistics), "histogram": (), "resampling": False, "bandSelection": True}


def key_metadata(metadata: dict[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    """An input's key metadata: all of ``metadata``, or the ``names`` asked for (None when it has no such key)."""
    if not names:
        return dict(metadata)
    lowered = {k.lower(): v for k, v in metadata.items()}
    return {n: lowered.get(n.lower()) for n in names}


def default_output(first: dict[str, Any], inherit: int) -> dict[str, Any]:
    """``output_info`` before the function changes it: the first raster's, as ``inheritProperties`` says."""
    out = dict(first)
    out.update(pixelType=first["pixelType"] if inherit & INHERIT_PIXEL_TYPE else "f4",
               noData=first.get("noData") if inherit & INHERIT_NODATA else None,
               rasterAttributeTable=None, statistics=(), histogram=(), colormap=())
    return out


def update_kwargs(scalars: dict[str, Any], inputs: dict[str, Any], metadata: dict[str, Any],
                  inherit: int) -> dict[str, Any]:
    """The keyword arguments of ``updateRasterInfo``: scalars, ``<name>_info`` and ``<name>_keyMetadata`` of each
    raster parameter (``inputs``: name -> info, or a tuple of infos for ``rasters``), and ``output_info``."""
    kwargs = dict(scalars)
    first = None
    for name, info in inputs.items():
        kwargs[f"{name}_info"] = info
        kwargs[f"{name}_keyMetadata"] = metadata.get(name, {})
        if first is None:
            first = info[0] if isinstance(info, tuple) else info
    if first is None:
        raise CustomFunctionError("The function has no raster parameter for the tool's input")
    kwargs["output_info"] = default_output(first, inherit)
    return kwargs


def read_output(got: Any, kwargs: dict[str, Any], shown: str, inherited_nodata: Any = None) -> dict[str, Any]:
    """``output_info`` after ``updateRasterInfo`` (its return value, or the dict it edited in place), checked;
    ``inherited_nodata`` is the NoData ``output_info`` held before the call."""
    source = got if isinstance(got, dict) else kwargs
    out = source.get("output_info") if isinstance(source.get("output_info"), dict) else kwargs["output_info"]
    ptype = str(out.get("pixelType") or "f4")
    if ptype not in PIXEL_TYPES:
        raise CustomFunctionError(f"updateRasterInfo() of '{shown}' set output_info pixelType '{ptype}'; expected one "
                                  f"of {', '.join(PIXEL_TYPES)}")
    try:
        bands = int(out.get("bandCount") or 1)
    except (TypeError, ValueError):
        raise CustomFunctionError(f"updateRasterInfo() of '{shown}' set output_info bandCount "
                                  f"{out.get('bandCount')!r}, not a whole number") from None
    out = dict(out)
    out["pixelType"], out["bandCount"] = ptype, bands
    inherited = out.get("noData") is inherited_nodata and inherited_nodata is not None
    out["noData"] = output_nodata(out.get("noData"), np.dtype(PIXEL_TYPES[ptype]), shown, inherited)
    return out


def output_nodata(given: Any, dtype: np.dtype, shown: str, inherited: bool = False) -> float:
    """The output's NoData: what the function set (one value, or the first of one per band), checked against the
    output type; without one (or an inherited one the output type cannot hold) NaN for floats and the type's
    largest value for integers."""
    if given is not None and not (isinstance(given, (tuple, list, np.ndarray)) and len(given) == 0):
        try:
            value = float(np.asarray(given, dtype=np.float64).ravel()[0])
        except (TypeError, ValueError, IndexError):
            raise CustomFunctionError(f"updateRasterInfo() of '{shown}' set output_info noData {given!r}, which is "
                                      "not a number") from None
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if not np.isfinite(value) or not (info.min <= value <= info.max) or value != int(value):
                if inherited:
                    return float(info.max)
                raise CustomFunctionError(
                    f"updateRasterInfo() of '{shown}' set output_info noData {value:g}, which the output pixel type "
                    f"'{NUMPY_PIXEL_TYPES[dtype.name]}' ({info.min}..{info.max}, whole numbers) cannot hold: set a "
                    "NoData value in that range or another pixelType")
        return value
    if dtype.kind == "f":
        return float("nan")
    return float(np.iinfo(dtype).max)


def classes_from_rat(rat: Any) -> list[ClassInfo]:
    """Classes from the JSON raster attribute table an updateRasterInfo returned (Value, ClassName, Red...)."""
    try:
        data = json.loads(rat) if isinstance(rat, (str, bytes)) else rat
        rows = data["features"]
    except (TypeError, ValueError, KeyError):
        return []
    out = []
    for row in rows:
        attrs = row.get("attributes", row) if isinstance(row, dict) else {}
        try:
            value = int(attrs.get("Value"))
        except (TypeError, ValueError):
            continue
        name = attrs.get("ClassName", attrs.get("Class", f"Class {value}"))
        rgb = tuple(int(attrs[k]) for k in ("Red", "Green", "Blue")) if all(k in attrs for k in ("Red", "Green", "Blue")) \
            else None
        out.append(ClassInfo(value, str(name), rgb))  # type: ignore[arg-type]
    return out

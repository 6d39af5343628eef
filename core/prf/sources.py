# SPDX-License-Identifier: GPL-2.0-or-later
"""The rasters a model's function reads, as its raster parameters see them.

Esri hands every raster parameter over by its own name (``<name>_pixels``, ``<name>_mask``; ``<name>_info`` in
``updateRasterInfo``).  The tool's input fills the function's first raster parameter; Detect Change's two dates
fill the first two when the function declares two (one stack of both dates' bands when it declares one, as
arcgis.learn's change detector takes them).  A :class:`FunctionSource` is what the block engine reads: one stack of
bands on the processing grid, cut back into the parameters' parts (:class:`InputPart`) when the function is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model.definition import ModelDefinition
from .errors import CustomFunctionError


@dataclass(frozen=True)
class InputPart:
    """One raster parameter's share of the stack read: its name, whether it is a ``rasters`` list, its bands, and
    the NoData and key metadata of the raster it comes from."""

    name: str
    is_list: bool
    bands: int
    nodata: tuple = ()
    metadata: dict[str, str] = field(default_factory=dict)
    statistics: tuple = ()  # per band: minimum, maximum, mean, standardDeviation, skipFactorX/Y


class FunctionSource:
    """A reader seen by the function's block task: positions 0..n-1 of the bands it reads, in ``parts``."""

    def __init__(self, source: Any, range_bands: list[int], parts: list[InputPart], closers: list[Any]) -> None:
        """``range_bands[i]``: what ``source.band_range`` calls the band read at position ``i``."""
        self.source = source
        self.range_bands = range_bands
        self.parts = parts
        self.grid = source.grid
        self.dtype = source.dtype
        self.band_count = len(range_bands)
        self.has_mask = bool(getattr(source, "has_mask", True))
        #: the run's processing mask (core.raster.mask.GridMask) or None: the shared TileReader reads and hands
        #: the function only the chips that touch it
        self.mask = None
        self._closers = closers

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.read(x, y, w, h)

    def band_range(self, i: int) -> tuple[float, float]:
        return self.source.band_range(self.range_bands[i])

    def close(self) -> None:
        for c in self._closers:
            c.close()


def _metadata(ds: Any) -> dict[str, str]:
    return dict(ds.GetMetadata() or {})


#: Band statistics for ``<name>_info`` are taken on at most this many pixels per side (Esri's skip factors).
STATISTICS_SIDE = 1024


def band_statistics(ds: Any, bands: list[int]) -> tuple[dict[str, float], ...]:
    """Approximate statistics of ``bands`` (0-based) of ``ds``, NoData left out: every pixel up to
    :data:`STATISTICS_SIDE` per side, else every n-th (the skip factors).  Read, never written to the input.
    An online layer (GDAL's WMS or WMTS driver) has none: computing them would download its overviews, every
    tile of the service at a coarse zoom level, so its ``statistics`` are left empty (Esri's value when unknown)."""
    if ds.GetDriver().ShortName in ("WMS", "WMTS"):
        return ()
    w, h = ds.RasterXSize, ds.RasterYSize
    skip_x, skip_y = max(1, -(-w // STATISTICS_SIDE)), max(1, -(-h // STATISTICS_SIDE))
    out = []
    for b in bands:
        band = ds.GetRasterBand(b + 1)
        data = band.ReadAsArray(buf_xsize=-(-w // skip_x), buf_ysize=-(-h // skip_y)).astype(np.float64)
        nodata = band.GetNoDataValue()
        values = data[np.isfinite(data) & ((data != nodata) if nodata is not None else True)]
        if not values.size:
            values = np.zeros(1)
        out.append({"minimum": float(values.min()), "maximum": float(values.max()), "mean": float(values.mean()),
                    "standardDeviation": float(values.std()), "skipFactorX": skip_x, "skipFactorY": skip_y})
    return tuple(out)


def raster_bands(raster: str, md: ModelDefinition, shown: str, parameter: dict[str, Any],
                 grid: Any) -> Callable[[list[int] | None], FunctionSource]:
    """``open_source`` for one raster filling the raster parameter ``parameter``: the bands ``extractBands`` asks
    for (else the model definition's ExtractBands, else all), checked against the raster, read on ``grid``."""
    from ..engine.normalize import resolve_bands
    from ..raster.gdal_io import RasterSource

    def open_source(bands: list[int] | None) -> FunctionSource:
        probe = RasterSource(raster, [0])
        try:
            count = probe.ds.RasterCount
            metadata = _metadata(probe.ds)
            if bands is None:
                bands = resolve_bands(md, count, probe.band_names(), probe.name)
            elif bands and max(bands) >= count:
                raise CustomFunctionError(f"getConfiguration() of '{shown}' asks for band {max(bands) + 1} "
                                          f"(extractBands {bands}) but raster '{probe.name}' has {count} band(s)")
        finally:
            probe.close()
        src = RasterSource(raster, list(bands), grid)
        part = InputPart(str(parameter["name"]), _is_list(parameter), len(bands), tuple(src.nodata), metadata,
                         band_statistics(src.ds, list(bands)))
        return FunctionSource(src, list(bands), [part], [src])

    return open_source


def _is_list(parameter: dict[str, Any]) -> bool:
    return str(parameter.get("dataType", "")).strip().lower() == "rasters"


def stacked_dates(sources: list[Any], stack: Callable[[list[Any], list[int]], Any], md: ModelDefinition,
                  shown: str, parameters: list[dict[str, Any]]) -> Callable[[list[int] | None], FunctionSource]:
    """``open_source`` for Detect Change: the two dates as the first two raster parameters (``extractBands`` picks
    the same bands of each), or as one stack of the from-bands then the to-bands for a function with one
    (``extractBands`` indexes that stack).  ``stack(sources, picks)`` reads the dates as one stack of bands."""
    counts = [len(s.bands) for s in sources]
    total = sum(counts)

    def open_source(bands: list[int] | None) -> FunctionSource:
        if len(parameters) >= 2:
            own = list(bands) if bands is not None else list(range(min(counts)))
            if own and max(own) >= min(counts):
                raise CustomFunctionError(f"getConfiguration() of '{shown}' asks for band {max(own) + 1} of each date "
                                          f"(extractBands {own}) but the dates have {counts[0]} and {counts[1]} bands")
            picks = own + [counts[0] + b for b in own]
            parts = [InputPart(str(p["name"]), _is_list(p), len(own), tuple(s.nodata[b] for b in own),
                               _metadata(s.ds), band_statistics(s.ds, [s.bands[b] for b in own]))
                     for p, s in zip(parameters[:2], sources)]
        else:
            picks = list(bands) if bands is not None else (list(md.extract_bands) if md.extract_bands
                                                           else list(range(total)))
            if picks and max(picks) >= total:
                raise CustomFunctionError(f"The function asks for band {max(picks) + 1} of the two dates stacked "
                                          f"(extractBands {picks}) but they have {total} bands together")
            parts = [InputPart(str(parameters[0]["name"]), _is_list(parameters[0]), len(picks))]
        stacked = stack(sources, picks)
        return FunctionSource(stacked, picks, parts, [])

    return open_source


class _WithExtras:
    """The tool's input(s) and the rasters given by path for the function's further raster parameters, read as one
    stack on the input's grid (resampled bilinearly when another raster's grid differs); a pixel is valid where
    every raster has data."""

    def __init__(self, primary: FunctionSource, extras: list[Any]) -> None:
        self.primary, self.extras = primary, extras
        self.grid = primary.grid
        dtypes = {np.dtype(primary.dtype)} | {np.dtype(e.dtype) for e in extras}
        self.dtype = str(primary.dtype) if len(dtypes) == 1 else "float32"
        self.has_mask = primary.has_mask or any(e.has_mask for e in extras)
        self.warped = any(getattr(e, "warped", False) for e in extras)

    @property
    def sources(self) -> list[Any]:
        return [self.primary.source, *self.extras]

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        data, valid = self.primary.read(x, y, w, h)
        stack = [data.astype(self.dtype, copy=False)]
        for extra in self.extras:
            more, ok = extra.read(x, y, w, h, self.dtype)
            stack.append(more)
            valid = valid & ok
        return np.concatenate(stack, axis=0), valid

    def band_range(self, i: int) -> tuple[float, float]:
        if i < self.primary.band_count:
            return self.primary.band_range(i)
        i -= self.primary.band_count
        for extra in self.extras:
            if i < len(extra.bands):
                return extra.band_range(extra.bands[i])
            i -= len(extra.bands)
        raise IndexError(i)

    def close(self) -> None:
        self.primary.close()
        for extra in self.extras:
            extra.close()


def with_extra_rasters(primary: FunctionSource, rasters: list[tuple[dict[str, Any], str]]) -> FunctionSource:
    """``primary`` plus the rasters given by path for further raster parameters (``(parameter, path)``), every band
    of each, on ``primary``'s grid: each becomes ``<name>_pixels`` of its own parameter."""
    from ..raster.gdal_io import RasterSource, open_raster

    extras, parts = [], list(primary.parts)
    try:
        for param, path in rasters:
            ds = open_raster(path)
            count, metadata = ds.RasterCount, _metadata(ds)
            ds = None
            src = RasterSource(path, list(range(count)), primary.grid)
            extras.append(src)
            parts.append(InputPart(str(param["name"]), _is_list(param), count, tuple(src.nodata), metadata,
                                   band_statistics(src.ds, list(range(count)))))
    except BaseException:
        for extra in extras:
            extra.close()
        raise
    stack = _WithExtras(primary, extras)
    return FunctionSource(stack, list(range(primary.band_count + sum(len(e.bands) for e in extras))), parts, [stack])

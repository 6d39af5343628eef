# SPDX-License-Identifier: GPL-2.0-or-later
"""Input normalisation: one per-band affine map ``x * scale + offset``.

Every rule the plugin supports is affine per band, so it is computed once per
raster (before tiling: every tile is scaled the same) and applied to each batch
as one fused multiply-add.  Rules, first match wins (esri-compat.md 4.5):

1. ``NormalizationStats`` (arcgis.learn multispectral): ``(x - band_min) / (band_max - band_min)``,
   then ``(scaled - scaled_mean) / scaled_std``; the lists cover all raster bands and
   are indexed by ``ExtractBands``.
2. ``DataRange [lo, hi]``: a linear stretch to ``[lo, hi]`` from the source range. The
   source range is 0-255 for 8-bit rasters; for other types it is each band's
   minimum..maximum (GDAL statistics, NoData excluded), computed once per raster.
3. Deepness ONNX metadata (or an Ultralytics export's): ``x / 255``, then ``(x - standardization_mean) /
   standardization_std``; the log says which convention was recognised and from what.
4. arcgis.learn without statistics, 3 bands: ImageNet mean/std on 0-255 RGB.
5. Otherwise the pixel values are passed unchanged (Esri's framework PRFs do this).

arcgis.learn MaskRCNN / FasterRCNN come first: their torchvision transform standardises inside
the network, so they get ``x / 255`` (or the NormalizationStats min-max scaling alone).

Masked (NoData) pixels are set to 0 *before* this map, as ArcGIS does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError, ModelDefinitionError
from ..model.definition import ModelDefinition

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Normaliser:
    """``x * scale[c] + offset[c]`` for band c, with a sentence saying which rule it is."""

    scale: np.ndarray
    offset: np.ndarray
    description: str

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Normalise a ``(..., C, H, W)`` float32 array in place and return it."""
        data *= self.scale[:, None, None]
        data += self.offset[:, None, None]
        return data


def _pick(values: Sequence[float] | None, bands: Sequence[int], what: str) -> np.ndarray | None:
    if values is None:
        return None
    if max(bands) >= len(values):
        raise ModelDefinitionError(
            f"NormalizationStats.{what} has {len(values)} values but ExtractBands uses band index {max(bands)}")
    return np.asarray([values[b] for b in bands], np.float64)


#: ONNX metadata keys an Ultralytics export writes, and keys only Deepness models carry.
ULTRALYTICS_KEYS = ("task", "imgsz", "stride", "names")
DEEPNESS_KEYS = ("model_type", "class_names", "standardization_mean", "standardization_std", "resolution",
                 "tile_size", "tiles_size", "tiles_overlap", "seg_thresh", "det_conf")


def scaling_convention(md: ModelDefinition) -> str:
    """Which convention asked for ``x / 255`` (and mean/std), and what in the model said so, for the log: a user
    reading "Normalisation: …" should know why their pixels were scaled, not guess from a tool's name."""
    meta = md.deepness_metadata or {}
    deepness = sorted(k for k in meta if k in DEEPNESS_KEYS)
    ultralytics = sorted(k for k in meta if k in ULTRALYTICS_KEYS)
    if ultralytics and not deepness:
        return (f"Ultralytics YOLO convention, recognised from the ONNX metadata ({', '.join(ultralytics)}): RGB "
                "scaled to 0..1 as Ultralytics trains")
    if meta:
        found = ", ".join(deepness) or ", ".join(sorted(meta)[:4])
        return f"Deepness convention, recognised from the ONNX metadata ({found})"
    return "QGISPlugin.divide_by_255 / standardization_mean in the model definition"


def build_normaliser(md: ModelDefinition, bands: Sequence[int], source_dtype: str,
                     band_range: Callable[[int], tuple[float, float]]) -> Normaliser:
    """The normaliser for this model on a raster.

    ``bands`` are the 0-based raster band indexes fed to the model (ExtractBands
    resolved), ``source_dtype`` the raster's numpy type name, and
    ``band_range(i)`` returns the minimum and maximum of raster band ``i``.
    """
    n = len(bands)
    stats = md.normalization_stats
    family = md.arcgis_family
    if family is not None and family.input_rule == "rcnn":
        # torchvision's R-CNN transform standardises inside the network (ImageNet mean/std, or the
        # NormalizationStats scaled_mean/std set on it): the network gets 0..1 values
        if stats is not None:
            bmin = _pick(stats.band_min_values, bands, "band_min_values")
            bmax = _pick(stats.band_max_values, bands, "band_max_values")
            assert bmin is not None and bmax is not None
            span = np.where(bmax - bmin == 0, 1.0, bmax - bmin)
            return Normaliser((1.0 / span).astype(np.float32), (-bmin / span).astype(np.float32),
                              "arcgis.learn R-CNN: (x - band_min) / (band_max - band_min); the network's transform "
                              "then standardises with scaled_mean/std_values")
        return Normaliser(np.full(n, 1.0 / 255.0, np.float32), np.zeros(n, np.float32),
                          "arcgis.learn R-CNN: x / 255; the network's transform then standardises with ImageNet "
                          "mean/std")
    if stats is not None:
        bmin = _pick(stats.band_min_values, bands, "band_min_values")
        bmax = _pick(stats.band_max_values, bands, "band_max_values")
        assert bmin is not None and bmax is not None
        span = np.where(bmax - bmin == 0, 1.0, bmax - bmin)
        scale, offset = 1.0 / span, -bmin / span
        mean = _pick(stats.scaled_mean_values, bands, "scaled_mean_values")
        std = _pick(stats.scaled_std_values, bands, "scaled_std_values")
        if mean is not None and std is not None:
            std = np.where(std == 0, 1.0, std)
            scale, offset = scale / std, (offset - mean) / std
        return Normaliser(scale.astype(np.float32), offset.astype(np.float32),
                          "NormalizationStats: (x - band_min) / (band_max - band_min), then (x - scaled_mean) / scaled_std")
    if md.data_range is not None:
        lo, hi = md.data_range
        scale = np.empty(n)
        offset = np.empty(n)
        for i, b in enumerate(bands):
            smin, smax = (0.0, 255.0) if source_dtype == "uint8" else band_range(b)
            if smax <= smin:
                smax = smin + 1.0
            scale[i] = (hi - lo) / (smax - smin)
            offset[i] = lo - smin * scale[i]
        source = "0..255 (8-bit)" if source_dtype == "uint8" else "each band's min..max"
        return Normaliser(scale.astype(np.float32), offset.astype(np.float32),
                          f"DataRange: linear stretch from {source} to [{lo:g}, {hi:g}]")
    if md.divide_by_255 or md.standardization_mean is not None:
        scale = np.full(n, 1.0 / 255.0 if md.divide_by_255 else 1.0)
        offset = np.zeros(n)
        text = "x / 255" if md.divide_by_255 else "x"
        if md.standardization_mean is not None and md.standardization_std is not None:
            mean = np.resize(np.asarray(md.standardization_mean, np.float64), n)
            std = np.resize(np.asarray(md.standardization_std, np.float64), n)
            std = np.where(std == 0, 1.0, std)
            scale, offset = scale / std, -mean / std
            text += ", then (x - mean) / std"
        return Normaliser(scale.astype(np.float32), offset.astype(np.float32), f"{scaling_convention(md)}: {text}")
    if md.is_arcgis_learn and n == 3:
        mean = np.asarray(IMAGENET_MEAN) * 255.0
        std = np.asarray(IMAGENET_STD) * 255.0
        return Normaliser((1.0 / std).astype(np.float32), (-mean / std).astype(np.float32),
                          "arcgis.learn default: ImageNet mean/std on 0-255 RGB")
    return Normaliser(np.ones(n, np.float32), np.zeros(n, np.float32), "none: pixel values are passed unchanged")


def resolve_bands(md: ModelDefinition, band_count: int, band_names: Sequence[str], raster_name: str,
                  model_channels: int | None = None) -> list[int]:
    """ExtractBands (indexes or names) -> 0-based raster band indexes, checked against the raster."""
    if md.extract_band_names:
        lookup = {name.strip().lower(): i for i, name in enumerate(band_names) if name}
        missing = [n for n in md.extract_band_names if n.lower() not in lookup]
        if missing:
            have = ", ".join(f"'{n}'" for n in band_names if n) or "none"
            raise InputDataError(f"Raster '{raster_name}' has no band named {', '.join(repr(m) for m in missing)} "
                                 f"(ExtractBands); its band names are: {have}")
        return [lookup[n.lower()] for n in md.extract_band_names]
    if md.extract_bands:
        bands = list(md.extract_bands)
    else:
        need = model_channels or band_count
        bands = list(range(need))
    if max(bands) >= band_count:
        raise InputDataError(
            f"The model needs band {max(bands) + 1} (ExtractBands {[b for b in bands]}, 0-based) but raster "
            f"'{raster_name}' has only {band_count} band(s)")
    return bands

# SPDX-License-Identifier: GPL-2.0-or-later
"""The data types of a model definition: what every reader produces and every tool consumes.

This is the bottom floor of the model-definition layers: the readers (:mod:`.emd`, :mod:`.ecd`,
:mod:`.probe`, the loader :mod:`.loader`) build a :class:`ModelDefinition`; arguments,
normalisers, decoders, styling and pipelines only read one.  It imports nothing of ``core/`` but the
error types, so any module may use it without pulling in a reader or a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError

#: Model types the plugin knows; ``Regression`` comes from Deepness metadata.
KNOWN_MODEL_TYPES = (
    "ImageClassification",
    "ObjectDetection",
    "InstanceDetection",
    "ObjectClassification",
    "ImageCaptioner",
    "PanopticSegmenter",
    "CycleGAN",
    "Pix2Pix",
    "SuperResolution",
    "Regression",
)

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts", ".jit")
TORCH_EXPORT_SUFFIXES = (".pt2",)

@dataclass
class ClassInfo:
    """One entry of ``Classes``: the pixel/label value, its name and colour."""

    value: int
    name: str
    color: tuple[int, int, int] | None = None


@dataclass
class NormalizationStats:
    """arcgis.learn ``NormalizationStats``: one value per raster band in each list."""

    band_min_values: list[float]
    band_max_values: list[float]
    scaled_mean_values: list[float] | None = None
    scaled_std_values: list[float] | None = None
    band_mean_values: list[float] | None = None
    band_std_values: list[float] | None = None
    scaled_min_values: list[float] | None = None
    scaled_max_values: list[float] | None = None


@dataclass
class ModelDefinition:
    """Everything the tools need to know about a model, validated and typed."""

    source: str
    origin: str  # "emd", "json", "dlpk", "ecd", "onnx", "torchscript"
    raw: dict[str, Any]
    model_type: str
    image_height: int
    image_width: int
    framework: str | None = None
    model_configuration: str | None = None
    model_name: str | None = None
    model_file: Path | None = None
    model_file_text: str | None = None
    model_format_kind: str | None = None  # "onnx", "torchscript", "torch_export" or "arcgis_learn"
    inference_function: str | None = None
    base_dir: Path | None = None
    package_path: Path | None = None
    extract_bands: list[int] | None = None
    extract_band_names: list[str] | None = None
    data_range: tuple[float, float] | None = None
    normalization_stats: NormalizationStats | None = None
    standardization_mean: list[float] | None = None
    standardization_std: list[float] | None = None
    divide_by_255: bool = False
    model_padding: int = 0
    batch_size: int | None = None
    padding: int | None = None
    threshold: float | None = None
    classes: list[ClassInfo] = field(default_factory=list)
    crop_size_fixed: int | None = None
    blacken_around_feature: int | None = None
    image_space_used: str = "MAP_SPACE"
    arcgis_family: Any = None  # arcgis_learn.families.Family, for arcgis.learn .pth weights
    supports_variable_tile_size: bool = False
    arcgis_learn_version: str | None = None
    is_multispectral: bool = False
    model_format: str = "NCHW"
    min_cell_size: dict[str, Any] | None = None
    max_cell_size: dict[str, Any] | None = None
    test_time_augmentation: bool | None = None
    meta_data_mode: str | None = None
    ignore_mapped_class: list[int] = field(default_factory=list)
    tile_overlap_percent: float | None = None
    resolution_cm: float | None = None
    deepness_metadata: dict[str, Any] = field(default_factory=dict)
    custom_function: bool = False  # run by its own Python raster function (InferenceFunction)
    #: the user's permission to run code-bearing model files (core.trust.CodeTrust); None trusts nothing
    code_trust: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_arcgis_learn(self) -> bool:
        """arcgis.learn models follow the floor-square batch rule and ImageNet defaults."""
        fw = (self.framework or "").lower()
        return fw.startswith("arcgis.learn") or self.arcgis_learn_version is not None

    @property
    def class_by_value(self) -> dict[int, ClassInfo]:
        return {c.value: c for c in self.classes}

    @property
    def is_multilabel(self) -> bool:
        return (self.meta_data_mode or "") == "MultiLabeled_Tiles"

    def require_model_file(self) -> Path:
        """The resolved model file, or a clear error saying why there is none."""
        if self.model_file is None:
            if self.model_file_text and self.base_dir is None:
                raise ModelDefinitionError(
                    f"ModelFile '{self.model_file_text}' is relative, and a model definition given as JSON text "
                    "has no folder to resolve it against: give an absolute path in ModelFile, or pass the .emd file"
                )
            raise ModelDefinitionError("The model definition has no ModelFile: there is no model to run")
        return self.model_file


#: The colours of classes that come without any: Paul Tol's "muted" qualitative scheme, chosen to stay apart for
#: the common colour-vision deficiencies and in grey scale, and the same for every model and run.
COLOUR_BLIND_SAFE = [(204, 102, 119), (51, 34, 136), (221, 204, 119), (17, 119, 51), (136, 204, 238), (136, 34, 85),
                     (68, 170, 153), (153, 153, 51), (170, 68, 153)]


def palette(n: int) -> list[tuple[int, int, int]]:
    """Reproducible colours for ``n`` classes that come without any: the colour-blind-safe scheme, then (for more
    classes than it has) the scheme again lighter, then darker, and so on, so that neighbours stay apart."""
    base = COLOUR_BLIND_SAFE
    out = []
    for i in range(n):
        r, g, b = base[i % len(base)]
        round_ = i // len(base)
        if round_:
            towards = 255 if round_ % 2 else 0  # odd rounds lighter, even rounds darker
            share = min(0.6, 0.35 * ((round_ + 1) // 2))
            r, g, b = (round(v + (towards - v) * share) for v in (r, g, b))
        out.append((r, g, b))
    return out


def colours_from_palette(classes: list[ClassInfo]) -> bool:
    """True when the model gave its classes no colours: some have none, or all are the palette's (a plain ONNX or
    TorchScript file, whose reader fills them in). The dialog says so, so nobody reads meaning into them."""
    if not classes:
        return False
    return any(c.color is None for c in classes) or [tuple(c.color) for c in classes] == palette(len(classes))

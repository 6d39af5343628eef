# SPDX-License-Identifier: GPL-2.0-or-later
"""What one training-data export is asked to do, checked before anything is written.

The names are ArcGIS's (Export Training Data For Deep Learning): the metadata formats, the chip
formats, MAP_SPACE / PIXEL_SPACE and FIXED_SIZE / BOUNDING_BOX, so a user can follow ArcGIS's
documentation.  Every refusal names the parameter at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import InputDataError

CLASSIFIED_TILES = "Classified_Tiles"
PASCAL_VOC = "PASCAL_VOC_rectangles"
KITTI = "KITTI_rectangles"
RCNN_MASKS = "RCNN_Masks"
LABELED_TILES = "Labeled_Tiles"
YOLO = "YOLO"
COCO = "COCO"
#: the METADATA_FORMAT options, in the dialog's order (public: the enum index is part of saved models)
FORMATS = (CLASSIFIED_TILES, PASCAL_VOC, KITTI, RCNN_MASKS, LABELED_TILES, YOLO, COCO)
#: formats whose labels are boxes around each feature
BOX_FORMATS = (PASCAL_VOC, KITTI, YOLO, COCO)
#: formats that write ArcGIS's esri_model_definition.emd, esri_accumulated_stats.json, map.txt and stats.txt
ESRI_FORMATS = (CLASSIFIED_TILES, PASCAL_VOC, KITTI, RCNN_MASKS, LABELED_TILES)

#: IMAGE_CHIP_FORMAT options -> (GDAL driver, image extension, world file extension)
CHIP_FORMATS = {"TIFF": ("GTiff", "tif", "tfw"), "PNG": ("PNG", "png", "pgw"), "JPEG": ("JPEG", "jpg", "jgw")}
MAP_SPACE = "MAP_SPACE"
PIXEL_SPACE = "PIXEL_SPACE"
FIXED_SIZE = "FIXED_SIZE"
BOUNDING_BOX = "BOUNDING_BOX"
#: what each chip format holds (numpy dtypes, and at most that many bands)
_CHIP_LIMITS = {"TIFF": (None, None), "PNG": (("uint8", "uint16"), 4), "JPEG": (("uint8",), 3)}


@dataclass(frozen=True)
class ExportSettings:
    """One export's choices (ArcGIS's parameters, in pixels of the input raster unless said otherwise)."""

    metadata_format: str = CLASSIFIED_TILES
    image_format: str = "TIFF"
    tile_x: int = 256
    tile_y: int = 256
    stride_x: int = 128
    stride_y: int = 128
    output_nofeature_tiles: bool = False
    rotation_angle: float = 0.0  # degrees, counter-clockwise: extra copies at this angle and its multiples
    buffer_radius: float = 0.0  # map units, around point features
    reference_system: str = MAP_SPACE
    min_polygon_overlap_ratio: float = 0.0
    start_index: int = 0
    crop_mode: str = FIXED_SIZE  # Labeled_Tiles only
    blacken_around_feature: bool = False  # Labeled_Tiles only
    bands: tuple[int, ...] = field(default_factory=tuple)  # 0-based; empty: every band

    def angles(self) -> list[float]:
        """The angles every chip is written at: [0] without rotation; [0, 90, 180, 270] for 90; [0, 45, ..., 315]
        for 45; [0, 100, 200, 300] for 100."""
        angle = self.rotation_angle % 360
        if angle == 0:
            return [0.0]
        return [k * angle for k in range(math.ceil(360 / angle - 1e-9))]


def check_settings(s: ExportSettings, dtype: str, band_count: int, class_raster: bool, points: bool) -> None:
    """Refuse, naming the parameter, what the export could only get wrong."""
    if s.metadata_format not in FORMATS:
        raise InputDataError(f"METADATA_FORMAT '{s.metadata_format}' is not one of {', '.join(FORMATS)}")
    if s.image_format not in CHIP_FORMATS:
        raise InputDataError(f"IMAGE_CHIP_FORMAT '{s.image_format}' is not one of {', '.join(CHIP_FORMATS)}")
    for name, value in (("TILE_SIZE_X", s.tile_x), ("TILE_SIZE_Y", s.tile_y), ("STRIDE_X", s.stride_x),
                        ("STRIDE_Y", s.stride_y)):
        if value < 1:
            raise InputDataError(f"{name} must be at least 1 pixel, not {value}")
    if not 0 <= s.rotation_angle < 360 or 0 < s.rotation_angle < 1:
        raise InputDataError(f"ROTATION_ANGLE {s.rotation_angle:g}: give 0 (no rotation) or an angle from 1 to 360 "
                             "degrees (each chip is also written at that angle and its multiples)")
    if not 0.0 <= s.min_polygon_overlap_ratio <= 1.0:
        raise InputDataError(f"MIN_POLYGON_OVERLAP_RATIO must be between 0 and 1, not {s.min_polygon_overlap_ratio}")
    if s.start_index < 0:
        raise InputDataError(f"START_INDEX must be 0 or more, not {s.start_index}")
    allowed, max_bands = _CHIP_LIMITS[s.image_format]
    if allowed is not None and dtype not in allowed:
        raise InputDataError(f"IMAGE_CHIP_FORMAT {s.image_format} holds {' or '.join(allowed)} pixels; the raster's "
                             f"are {dtype}: choose TIFF (chips keep the raster's raw values)")
    if max_bands is not None and band_count > max_bands:
        raise InputDataError(f"IMAGE_CHIP_FORMAT {s.image_format} holds at most {max_bands} bands; {band_count} were "
                             "asked for: choose TIFF or fewer bands")
    if s.image_format == "JPEG" and band_count == 2:
        raise InputDataError("IMAGE_CHIP_FORMAT JPEG holds 1 or 3 bands, not 2: choose PNG or TIFF")
    if class_raster and s.metadata_format != CLASSIFIED_TILES:
        raise InputDataError(f"A classified raster as CLASS_DATA makes {CLASSIFIED_TILES} only; for "
                             f"{s.metadata_format} give polygons (or points with a BUFFER_RADIUS)")
    if points and s.buffer_radius <= 0 and s.metadata_format != LABELED_TILES:
        raise InputDataError("CLASS_DATA has points: give a BUFFER_RADIUS (map units) so each point becomes a "
                             "circle with an area to label")
    if s.buffer_radius < 0:
        raise InputDataError(f"BUFFER_RADIUS must be 0 or more, not {s.buffer_radius}")

# SPDX-License-Identifier: GPL-2.0-or-later
"""Detections from pixels to map geometries: the full geotransform, box and mask outlines, test-time inverses.

Pixel coordinates are raster pixel edges (x = column, y = row); map coordinates come from all six terms of
the geotransform (``X = g0 + x*g1 + y*g2``, ``Y = g3 + x*g4 + y*g5``), so rotated rasters and any CRS,
geographic included, are placed exactly.  A mask's outline is GDAL's polygonize of the mask at pixel
precision (holes kept), georeferenced by the same transform.
"""

from __future__ import annotations

import struct

import numpy as np
from osgeo import gdal, ogr

from .decode import ChipDetections

ogr.UseExceptions()


def affine(gt: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raster pixel (x = column, y = row) -> map coordinates, with the geotransform's rotation terms."""
    return gt[0] + x * gt[1] + y * gt[2], gt[3] + x * gt[4] + y * gt[5]


def ring_geometry(gt: tuple[float, ...], points: np.ndarray) -> ogr.Geometry:
    """A polygon from pixel-space corners [K, 2] (closed here), in map coordinates."""
    mx, my = affine(gt, points[:, 0], points[:, 1])
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in zip(mx.tolist(), my.tolist()):
        ring.AddPoint_2D(x, y)
    ring.AddPoint_2D(float(mx[0]), float(my[0]))
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


def box_polygons_wkb(gt: tuple[float, ...], boxes: np.ndarray) -> list[bytes]:
    """[N, 4] pixel boxes -> ISO WKB polygons in map coordinates, built in numpy (no OGR call per box)."""
    n = len(boxes)
    corners = box_corners_all(boxes)  # [N, 4, 2]
    ring = np.concatenate([corners, corners[:, :1]], axis=1)  # closed: [N, 5, 2]
    mx, my = affine(gt, ring[..., 0], ring[..., 1])
    coords = np.ascontiguousarray(np.stack([mx, my], axis=-1).reshape(n, 10), dtype="<f8")
    header = np.frombuffer(struct.pack("<BIII", 1, 3, 1, 5), np.uint8)  # little endian, polygon, 1 ring, 5 points
    out = np.empty((n, header.size + 80), np.uint8)
    out[:, :header.size] = header
    out[:, header.size:] = coords.view(np.uint8).reshape(n, 80)
    return [row.tobytes() for row in out]


def box_corners(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def box_corners_all(boxes: np.ndarray) -> np.ndarray:
    """[N, 4, 2] corners of [N, 4] boxes."""
    x1, y1, x2, y2 = boxes.T
    return np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1), np.stack([x2, y2], -1),
                     np.stack([x1, y2], -1)], axis=1)


def mask_geometry(gt: tuple[float, ...], x0: int, y0: int, mask: np.ndarray) -> ogr.Geometry | None:
    """The outline of a boolean mask whose top-left pixel is raster pixel (x0, y0): GDAL polygonize, holes kept."""
    if mask.size == 0 or not mask.any():
        return None
    h, w = mask.shape
    ds = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Byte)
    ox, oy = affine(gt, np.float64(x0), np.float64(y0))
    ds.SetGeoTransform((float(ox), gt[1], gt[2], float(oy), gt[4], gt[5]))
    band = ds.GetRasterBand(1)
    band.WriteArray(mask.astype(np.uint8))
    mem = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = mem.CreateLayer("m", geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))
    gdal.Polygonize(band, band, layer, 0, [])
    multi = ogr.Geometry(ogr.wkbMultiPolygon)
    for feat in layer:
        multi.AddGeometry(feat.GetGeometryRef().Clone())
    return multi


def clip_mask(x0: int, y0: int, mask: np.ndarray, width: int, height: int) -> tuple[int, int, np.ndarray]:
    """The part of a mask crop at raster pixel (x0, y0) that lies inside a ``width`` x ``height`` raster."""
    h, w = mask.shape
    c0, r0 = max(0, -x0), max(0, -y0)
    c1, r1 = min(w, width - x0), min(h, height - y0)
    if c1 <= c0 or r1 <= r0:
        return max(0, x0), max(0, y0), np.zeros((0, 0), bool)
    return x0 + c0, y0 + r0, mask[r0:r1, c0:c1]


def invert_transform(det: ChipDetections, k: int, h: int, w: int) -> ChipDetections:
    """Detections on a ``h`` x ``w`` tile transformed by ``augment.forward(k)`` -> on the original tile."""
    if k == 0:
        return det
    th, tw = (w, h) if k & 4 else (h, w)  # the transformed tile's size

    def points(xy: np.ndarray) -> np.ndarray:
        xy = xy.copy()
        if k & 2:
            xy[..., 0] = tw - xy[..., 0]
        if k & 1:
            xy[..., 1] = th - xy[..., 1]
        if k & 4:
            xy = xy[..., ::-1]
        return xy

    corners = points(box_corners_all(det.boxes)) if det.corners is None else points(det.corners)
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    masks = None
    if det.masks is not None:
        masks = []
        for x0, y0, m in det.masks:
            mh, mw = m.shape
            if k & 2:
                x0, m = tw - x0 - mw, m[:, ::-1]
            if k & 1:
                y0, m = th - y0 - mh, m[::-1, :]
            if k & 4:
                x0, y0, m = y0, x0, m.T
            masks.append((x0, y0, np.ascontiguousarray(m)))
    return ChipDetections(boxes, det.scores, det.classes, None if det.corners is None else corners, masks)


def concat(dets: list[ChipDetections]) -> ChipDetections:
    return ChipDetections(
        np.concatenate([d.boxes for d in dets]), np.concatenate([d.scores for d in dets]),
        np.concatenate([d.classes for d in dets]),
        None if dets[0].corners is None else np.concatenate([d.corners for d in dets]),
        None if dets[0].masks is None else [m for d in dets for m in d.masks])

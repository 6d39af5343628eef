# SPDX-License-Identifier: GPL-2.0-or-later
"""A detector that answers the same lattice of about 100,000 small boxes for every tile, whatever it sees, and
the objects a run of it must give, so a test can assert every survivor of the seam merge exactly.

The boxes are 1 x 1 pixel, ``STEP`` pixels apart (a gap of 2: no two pieces ever touch), at tile pixels
``STEP * i + 1``. With a tile core that is a multiple of ``STEP`` and a padding that is too, the tiles' lattices fall
on one lattice of the raster, ``STEP * k + 1``; the tile whose centre holds a box keeps it and the copies in the
padding are dropped: one object per lattice point of the raster, each exactly once.

Run as a script (``python many_boxes.py raster model [arguments]``) it runs Detect Objects in this fresh process and
prints what came out and its peak memory (VmHWM) as JSON: the process's own memory, nothing of a test runner's.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

STEP = 3


#: The pile: this many copies of one 80 x 20-pixel box of class "pile" in every tile, reaching the tile's right edge
#: (cut by it) with its centre 40 pixels from it, in the tile's centre for a padding under 40.
PILE = 100_000


def lattice_detector(path: Path, tile: int, score: float = 0.9, pile: int = PILE) -> Path:
    """An Ultralytics-style YOLOv8 ONNX (classes "dot" and "pile", ``[1, 6, N]``) answering the lattice and the
    pile for any tile. The pile is kept whole only with ``nms_overlap 1``; it touches no object of its class in
    another tile, so each copy is an object of its own."""
    per_side = (tile - 2) // STEP + 1
    xs, ys = np.meshgrid(np.arange(per_side) * STEP + 1.5, np.arange(per_side) * STEP + 1.5)
    n = xs.size
    dots = np.stack([xs.ravel(), ys.ravel(), np.ones(n), np.ones(n), np.full(n, score), np.zeros(n)])
    copies = np.tile(np.array([[tile - 40.0], [50.0], [80.0], [20.0], [0.0], [score]]), (1, pile))
    return constant_detector(path, tile, np.concatenate([dots, copies], axis=1), {0: "dot", 1: "pile"})


def constant_detector(path: Path, tile: int, rows: np.ndarray, names: dict[int, str]) -> Path:
    """An Ultralytics-style YOLOv8 ONNX (batch 1, ``[1, 4 + classes, N]``) answering ``rows`` (centre x, centre y,
    width, height in tile pixels, then a score per class) for any tile, whatever it holds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows = np.asarray(rows, np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "zero"], ["nothing"]),
         helper.make_node("Add", ["answer", "nothing"], ["output0"])],
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, tile, tile])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, *rows.shape])],
        [numpy_helper.from_array(rows[None], "answer"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {"names": str(names), "imgsz": json.dumps([tile, tile]), "task": "detect"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def lattice_raster(path: Path, width: int, height: int) -> Path:
    """A dark 3-band raster, 1 map unit per pixel, y up from -height (pixel (x, y) is at map (x, -y))."""
    from osgeo import gdal, osr

    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "SPARSE_OK=TRUE"])
    ds.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    ds = None
    return path


def expected_lattice(width: int, height: int) -> set[tuple[int, int]]:
    """The (x, y) pixel of every box the run must give, once each."""
    return {(x, y) for x in range(1, width - 1, STEP) for y in range(1, height - 1, STEP)}


def found_lattice(objects) -> tuple[list[tuple[int, int]], list[tuple[float, ...]]]:  # noqa: ANN001
    """The (x, y) pixel of each dot written (1 x 1 boxes on the raster of :func:`lattice_raster`), and the pixel
    box of each pile object."""
    from osgeo import ogr

    dots, piles = [], []
    for o in objects:
        x1, x2, y1, y2 = ogr.CreateGeometryFromWkb(o.wkb).GetEnvelope()
        if o.class_name == "pile":
            piles.append((x1, -y2, x2, -y1))
            continue
        assert (x2 - x1, y2 - y1) == (1.0, 1.0), (x1, x2, y1, y2)
        dots.append((int(x1), int(-y2)))
    return dots, piles


def main(raster: str, model: str, arguments: str) -> None:
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.detect_objects.pipeline import detect_objects
    from osgeo import gdal

    result = detect_objects(raster, load_model_definition(model), arguments)
    found, piles = found_lattice(result.objects)
    ds = gdal.Open(raster)
    want = expected_lattice(ds.RasterXSize, ds.RasterYSize)
    print(json.dumps({"objects": len(found), "distinct": len(set(found)), "exact": set(found) == want,
                      "expected": len(want), "before_merge": result.before_merge, "piles": len(piles),
                      "pile_boxes": sorted(set(piles)),
                      "peak_mb": peak_mb()}))


def peak_mb() -> float:
    """This process's peak resident memory since it started its program: VmHWM (ru_maxrss would also count the
    memory of the process it was forked from, a test runner's, until the exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")

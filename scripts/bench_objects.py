# SPDX-License-Identifier: GPL-2.0-or-later
"""`make bench` cases for Detect Objects at 100,000 and 10 million objects, beside a minimal loop of its own.

objects-100k, objects-10m
    A dark synthetic raster (948^2 or 9486^2 pixels, sparse: nothing to decompress) and the tests' lattice detector
    (tests/many_boxes.py: every 960-pixel tile answers 102,400 one-pixel boxes 3 pixels apart, whatever it sees), so
    the answer is known: one object per lattice point of the raster, 99,856 or 9,998,244, each once. Two programs,
    each in a fresh process so that its peak memory (VmHWM) is its own:

    * Detect Objects (core, in-process, 960-pixel tiles, padding 30, batch 1) and then its objects written into a
      GeoPackage with OGR, one feature each, in one transaction (what the algorithm does through QGIS's sink);
    * the minimal loop: the simplest correct program for this input, not tuned. One thread: a GDAL window read per
      tile (zeros past the edge), x / 255, ONNX Runtime, the rows decoded with numpy (class = arg-max, score above
      the threshold, boxes centred in the tile's centre kept), written into a GeoPackage with OGR as above. No NMS
      and no merge: the lattice needs neither (Detect Objects does both).

    Printed: seconds, objects per second, the ratio (Detect Objects / loop), peak RSS of each, and whether the
    objects are the expected ones (count and distinct boxes). The 100k case runs both three times, interleaved
    (medians); the 10m case once.

chips-10k
    Classify Objects on 10,000 points of the bench's 4096^2 raster (fixed 32-pixel chips, batch 16) beside its own
    minimal loop (per point: the chip read with GDAL, x / 255, ONNX Runtime, arg-max, one OGR feature), three
    interleaved runs each; the model (the chip's band means) makes both label every point the same way (checked).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TILE, PAD, THRESHOLD = 960, 30, 0.5
ARGS = f"padding {PAD};batch_size 1;threshold {THRESHOLD};edge_fill zero"
SIZES = {"objects-100k": 948, "objects-10m": 9486}
ROOT = Path(__file__).resolve().parents[1]


def prepare(bench: Path, size: int) -> tuple[Path, Path]:
    """The raster and the lattice detector (cached in ``bench``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from many_boxes import lattice_detector, lattice_raster

    bench.mkdir(parents=True, exist_ok=True)
    model = bench / "lattice_960.onnx"
    if not model.exists():
        lattice_detector(model, TILE, pile=0)
    raster = bench / f"dark_{size}.tif"
    if not raster.exists():
        lattice_raster(raster, size, size)
    return raster, model


def _vm_hwm_mb() -> float:
    import os

    from bench_memory import high_water_kb

    return high_water_kb(os.getpid()) / 1024


def _layer(path: Path, srs_wkt: str):  # noqa: ANN202 - OGR objects
    from osgeo import ogr, osr

    if path.exists():
        path.unlink()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(srs_wkt)
    layer = ds.CreateLayer("objects", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("Class", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("ClassValue", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("Confidence", ogr.OFTReal))
    return ds, layer


def _write(layer, wkb: bytes, name: str, value: int, confidence: float) -> None:  # noqa: ANN001
    from osgeo import ogr

    feat = ogr.Feature(layer.GetLayerDefn())
    feat.SetField(0, name)
    feat.SetField(1, value)
    feat.SetField(2, confidence)
    feat.SetGeometryDirectly(ogr.CreateGeometryFromWkb(wkb))
    layer.CreateFeature(feat)


def _boxes_wkb(gt: tuple, boxes: np.ndarray) -> list[bytes]:
    """Pixel boxes -> WKB polygons (numpy, as Detect Objects builds them)."""
    x1, y1, x2, y2 = boxes.T
    xs = np.stack([x1, x2, x2, x1, x1], axis=1)
    ys = np.stack([y1, y1, y2, y2, y1], axis=1)
    mx, my = gt[0] + xs * gt[1] + ys * gt[2], gt[3] + xs * gt[4] + ys * gt[5]
    coords = np.ascontiguousarray(np.stack([mx, my], axis=-1).reshape(len(boxes), 10), dtype="<f8")
    head = struct.pack("<BIII", 1, 3, 1, 5)
    return [head + row.tobytes() for row in coords]


def minimal_loop(raster: Path, model: Path, out: Path) -> dict:
    import onnxruntime as ort
    from osgeo import gdal

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    start = time.perf_counter()
    src = gdal.Open(str(raster))
    width, height, gt = src.RasterXSize, src.RasterYSize, src.GetGeoTransform()
    ds, layer = _layer(out, src.GetProjection())
    layer.StartTransaction()
    core, count = TILE - 2 * PAD, 0
    for ty in range(0, height, core):
        for tx in range(0, width, core):
            x0, y0 = tx - PAD, ty - PAD
            tile = np.zeros((3, TILE, TILE), np.float32)
            rx0, ry0 = max(x0, 0), max(y0, 0)
            rx1, ry1 = min(x0 + TILE, width), min(y0 + TILE, height)
            data = src.ReadAsArray(rx0, ry0, rx1 - rx0, ry1 - ry0)
            tile[:, ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0] = data
            rows = session.run(None, {name: (tile / 255.0)[None]})[0][0]
            scores = rows[4:].max(axis=0)
            cls = rows[4:].argmax(axis=0)
            cx, cy = rows[0] + x0, rows[1] + y0
            keep = ((scores >= THRESHOLD) & (cx >= tx) & (cx < min(tx + core, width)) & (cy >= ty)
                    & (cy < min(ty + core, height)))
            w, h = rows[2][keep], rows[3][keep]
            boxes = np.stack([cx[keep] - w / 2, cy[keep] - h / 2, cx[keep] + w / 2, cy[keep] + h / 2], axis=1)
            boxes = np.clip(boxes, 0, [width, height, width, height])
            for wkb, c, s in zip(_boxes_wkb(gt, boxes), cls[keep].tolist(), scores[keep].tolist()):
                _write(layer, wkb, "dot", c, round(s * 100.0, 4))
            count += int(keep.sum())
    layer.CommitTransaction()
    del ds  # closes the GeoPackage
    return {"seconds": time.perf_counter() - start, "objects": count, "peak_mb": _vm_hwm_mb()}


def detect_objects_run(raster: Path, model: Path, out: Path) -> dict:
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.detect_objects.pipeline import detect_objects
    from osgeo import gdal

    md = load_model_definition(str(model))
    src = gdal.Open(str(raster))
    per_side = len(range(1, src.RasterXSize - 1, 3))
    hits = np.zeros(per_side * per_side, np.uint8)  # how often each lattice point came out (must be once)
    start = time.perf_counter()
    result = detect_objects(str(raster), md, ARGS)
    engine = time.perf_counter() - start
    ds, layer = _layer(out, src.GetProjection())
    layer.StartTransaction()
    for o in result.objects:
        _write(layer, o.wkb, o.class_name, o.class_value, o.confidence)
    layer.CommitTransaction()
    del ds  # closes the GeoPackage
    seconds = time.perf_counter() - start
    for o in result.objects:  # checked after the clock stopped
        x1, y1 = struct.unpack_from("<dd", o.wkb, 13)  # the first corner: pixel (x1, y1) at map (x1, -y1)
        hits[(int(x1) // 3) * per_side + int(-y1) // 3] += 1
    result.objects.discard()
    return {"seconds": seconds, "engine_s": engine, "model_s": result.model_seconds,
            "objects": int((hits == 1).sum()) if (hits <= 1).all() else -1, "written": len(result.objects),
            "merge_s": result.merge_seconds, "peak_mb": _vm_hwm_mb()}


def _interleaved(name: str, programs: tuple[str, str], inputs: list[str], extra: list[str], bench: Path,
                 runs: int) -> dict[str, dict]:
    """Each program ``runs`` times, interleaved (the machine's load moves), each run in a fresh process: the run
    of median seconds of each (its figures, peak RSS included)."""
    seen: dict[str, list[dict]] = {p: [] for p in programs}
    for _ in range(runs):
        for which in programs:
            proc = subprocess.run([sys.executable, __file__, which, *inputs, str(bench / f"{name}-{which}.gpkg"),
                                   *extra], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} {which}: {proc.stderr[-3000:]}")
            seen[which].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {p: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2] | {"runs": [r["seconds"] for r in rs]}
            for p, rs in seen.items()}


def run_objects_case(name: str, bench: Path) -> dict:
    """Both programs, each run in its own fresh process."""
    sys.path.insert(0, str(ROOT / "tests"))
    from many_boxes import expected_lattice

    size = SIZES[name]
    raster, model = prepare(bench, size)
    out = _interleaved(name, ("loop", "ours"), [str(raster), str(model)], [], bench, 1 if size > 5000 else 3)
    expected = len(expected_lattice(size, size))
    ours, loop = out["ours"], out["loop"]
    return {"case": name, "expected": expected, "ours": ours, "loop": loop, "ratio": ours["seconds"] / loop["seconds"],
            "exact": ours["objects"] == ours["written"] == loop["objects"] == expected}


def print_objects(results: list[dict]) -> None:
    rows = [r for r in results if r["case"] in SIZES]
    if not rows:
        return
    print("\nDetect Objects beside its minimal loop (each in a fresh process; seconds include writing the GeoPackage):")
    for r in rows:
        ours, loop = r["ours"], r["loop"]
        print(f"{r['case']}: {r['expected']:,} objects ({'exact' if r['exact'] else 'NOT the expected objects'}); "
              f"Detect Objects {ours['seconds']:.1f} s ({ours['written'] / ours['seconds']:,.0f} objects/s; engine "
              f"{ours['engine_s']:.1f} s, model {ours['model_s']:.1f} s), peak RSS {ours['peak_mb']:.0f} MB; "
              f"loop {loop['seconds']:.1f} s ({loop['objects'] / loop['seconds']:,.0f} objects/s), peak RSS "
              f"{loop['peak_mb']:.0f} MB; ratio {r['ratio']:.2f}")
    by = {r["case"]: r for r in rows}
    if len(by) == 2:
        small, big = by["objects-100k"]["ours"]["peak_mb"], by["objects-10m"]["ours"]["peak_mb"]
        print(f"Peak RSS of Detect Objects, 10 million / 100,000 objects: {big:.0f} / {small:.0f} MB = "
              f"{big / small:.2f}x for 100x the objects")




# ------------------------------------------------------------------------------------------- Classify Objects
CHIP, CHIP_STEP = 32, 40
CHIP_CASES = {"chips-10k": 4096}


def chip_model(bench: Path) -> Path:
    """A classifier whose answer does not depend on how the chip is scaled: logits (m0 - m1, m1 - m0) of the chip's
    band means, as ONNX with an .emd (fixed 32-pixel chips centred on each feature)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    emd = bench / "chip_means.emd"
    if emd.exists():
        return emd
    weights = np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["means", "weights"], ["logits"])],
        "chip_means",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, CHIP, CHIP])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(bench / "chip_means.onnx"))
    emd.write_text(json.dumps({
        "Framework": "ONNX", "ModelConfiguration": "FeatureClassifier", "ModelType": "ObjectClassification",
        "ModelFile": "chip_means.onnx", "ImageHeight": CHIP, "ImageWidth": CHIP, "ExtractBands": [0, 1, 2],
        "CropSizeFixed": 1, "BlackenAroundFeature": 0,
        "Classes": [{"Value": 0, "Name": "redder"}, {"Value": 1, "Name": "greener"}]}))
    return emd


def chip_points(bench: Path, raster: Path) -> Path:
    """A point every CHIP_STEP pixels, at pixel centres, away from the edges (10,000 on 4096^2)."""
    from osgeo import gdal, ogr, osr

    path = bench / f"points_{raster.stem}.gpkg"
    if path.exists():
        return path
    src = gdal.Open(str(raster))
    gt = src.GetGeoTransform()
    srs = osr.SpatialReference()
    srs.ImportFromWkt(src.GetProjection())
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("points", srs, ogr.wkbPoint)
    layer.StartTransaction()
    for r in range(CHIP, src.RasterYSize - CHIP, CHIP_STEP)[:100]:
        for c in range(CHIP, src.RasterXSize - CHIP, CHIP_STEP)[:100]:
            feat = ogr.Feature(layer.GetLayerDefn())
            feat.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({gt[0] + (c + 0.5) * gt[1]} "
                                                       f"{gt[3] + (r + 0.5) * gt[5]})"))
            layer.CreateFeature(feat)
    layer.CommitTransaction()
    del ds
    return path


def _label_layer(path: Path, srs_wkt: str):  # noqa: ANN202 - OGR objects
    from osgeo import ogr, osr

    if path.exists():
        path.unlink()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(srs_wkt)
    layer = ds.CreateLayer("labels", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("ClassLabel", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("Confidence", ogr.OFTReal))
    return ds, layer


def _write_label(layer, wkb: bytes, label: str, confidence: float) -> None:  # noqa: ANN001
    from osgeo import ogr

    feat = ogr.Feature(layer.GetLayerDefn())
    feat.SetField(0, label)
    feat.SetField(1, confidence)
    feat.SetGeometryDirectly(ogr.CreateGeometryFromWkb(wkb))
    layer.CreateFeature(feat)


def chip_loop(raster: Path, emd: Path, points: Path, out: Path) -> dict:
    """The simplest correct program: per point, a GDAL read of the chip centred on it (the README's rule, zeros past
    the edge), x / 255, ONNX Runtime on that one chip, arg-max and softmax, one OGR feature."""
    import onnxruntime as ort
    from osgeo import gdal, ogr

    session = ort.InferenceSession(str(emd.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    src = gdal.Open(str(raster))
    gt, width, height = src.GetGeoTransform(), src.RasterXSize, src.RasterYSize
    ds, layer = _label_layer(out, src.GetProjection())
    layer.StartTransaction()
    labels = {}
    features = ogr.Open(str(points))  # kept open while its layer is read (OGR crashes otherwise)
    for feature in features.GetLayer(0):
        geom = feature.GetGeometryRef()
        px, py = (geom.GetX() - gt[0]) / gt[1], (geom.GetY() - gt[3]) / gt[5]
        x0, y0 = int(np.floor(px - CHIP / 2 + 0.5)), int(np.floor(py - CHIP / 2 + 0.5))  # the chip centred on it
        chip = np.zeros((3, CHIP, CHIP), np.float32)
        rx0, ry0, rx1, ry1 = max(x0, 0), max(y0, 0), min(x0 + CHIP, width), min(y0 + CHIP, height)
        for b in range(3):
            chip[b, ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0] = src.GetRasterBand(b + 1).ReadAsArray(
                rx0, ry0, rx1 - rx0, ry1 - ry0)
        logits = session.run(None, {"input": (chip / 255.0)[None]})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        k = int(p.argmax())
        label = ("redder", "greener")[k]
        labels[feature.GetFID()] = label
        _write_label(layer, bytes(geom.ExportToWkb()), label, round(float(p[k]) * 100.0, 4))
    layer.CommitTransaction()
    del ds
    return {"seconds": time.perf_counter() - start, "chips": len(labels), "labels": labels,
            "peak_mb": _vm_hwm_mb()}


def classify_objects_run(raster: Path, emd: Path, points: Path, out: Path) -> dict:
    """Classify Objects (core, in-process, batch 16) on the same points, its rows written with OGR as above."""
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_objects.classifier import classify_objects
    from osgeo import gdal, ogr

    md = load_model_definition(str(emd))
    start = time.perf_counter()
    src = gdal.Open(str(raster))
    features = ogr.Open(str(points))  # kept open while its layer is read (OGR crashes otherwise)
    items = [(f.GetFID(), bytes(f.GetGeometryRef().ExportToWkb())) for f in features.GetLayer(0)]
    results = classify_objects(str(raster), items, md, "batch_size 16")
    engine = time.perf_counter() - start
    ds, layer = _label_layer(out, src.GetProjection())
    layer.StartTransaction()
    labels = {}
    for (key, wkb), res in zip(items, results):
        labels[key] = res.label
        _write_label(layer, wkb, res.label, float(res.confidence or 0.0))
    layer.CommitTransaction()
    del ds
    return {"seconds": time.perf_counter() - start, "engine_s": engine, "chips": len(results), "labels": labels,
            "peak_mb": _vm_hwm_mb()}


def run_chips_case(name: str, bench: Path, raster: Path) -> dict:
    """Both programs in fresh processes; the labels compared."""
    emd = chip_model(bench)
    points = chip_points(bench, raster)
    out = _interleaved(name, ("chip-loop", "chip-ours"), [str(raster), str(emd)], [str(points)], bench, 3)
    ours, loop = out["chip-ours"], out["chip-loop"]
    same = sum(ours["labels"][k] == loop["labels"].get(k) for k in ours["labels"])
    for r in (ours, loop):
        del r["labels"]
    return {"case": name, "ours": ours, "loop": loop, "ratio": ours["seconds"] / loop["seconds"],
            "same_labels": same, "chips": ours["chips"]}


def print_chips(results: list[dict]) -> None:
    for r in (r for r in results if r["case"] in CHIP_CASES):
        ours, loop = r["ours"], r["loop"]
        print(f"\n{r['case']}: Classify Objects {ours['seconds']:.1f} s ({ours['chips'] / ours['seconds']:,.0f} chips/s; "
              f"engine {ours['engine_s']:.1f} s), peak RSS {ours['peak_mb']:.0f} MB; loop {loop['seconds']:.1f} s "
              f"({loop['chips'] / loop['seconds']:,.0f} chips/s), peak RSS {loop['peak_mb']:.0f} MB; ratio "
              f"{r['ratio']:.2f}; the same label for {r['same_labels']} of {r['chips']} points")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "build" / "plugins"))
    what, raster_path, model_path, out_path = sys.argv[1:5]
    if what.startswith("chip-"):
        run_chip = chip_loop if what == "chip-loop" else classify_objects_run
        print(json.dumps(run_chip(Path(raster_path), Path(model_path), Path(sys.argv[5]), Path(out_path))))
    else:
        run = minimal_loop if what == "loop" else detect_objects_run
        print(json.dumps(run(Path(raster_path), Path(model_path), Path(out_path))))

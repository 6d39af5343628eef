# SPDX-License-Identifier: GPL-2.0-or-later
"""The block engine on a real Dask cluster: a ``dask scheduler`` and a ``dask worker`` with two worker processes on
127.0.0.1, started once for this module from the venv's own commands, in a folder where the plugin is *not*
importable (the run ships ``core/`` and the model itself).

Classify Pixels and Detect Change through ``processing.run`` and ``qgis_process`` with ``SCHEDULER`` set must give
bit-identical rasters to the in-process run, for several block sizes and paddings.  Faults: a TorchScript model
that fails on its first call in each worker process (retried, identical output), a worker process killed mid-run
(identical output), ``RETRIES 0`` (an error naming the block), cancel with ``local:2`` (no output, no worker left).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from builders import RecordingProgress, conv_module, export_onnx, read_raster, write_emd, write_raster
from qgis.core import NULL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
psutil = pytest.importorskip("psutil")

from dltools.core.engine.cluster import ClusterError  # noqa: E402
from dltools.core.errors import CancelledError  # noqa: E402
from dltools.core.model.loader import load_model_definition  # noqa: E402
from dltools.core.tools.classify_pixels.pipeline import classify_pixels  # noqa: E402
from dltools.core.trust import CodeTrust  # noqa: E402

TRUSTED = CodeTrust.all()  # the TorchScript models these tests build

_spec = importlib.util.spec_from_file_location(
    "detect_change_core_tests_dask", Path(__file__).resolve().parents[1] / "core" / "test_detect_change_core.py")
change_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(change_tests)

RNG = np.random.default_rng(8)
CLASSES = [(1, "one", (255, 0, 0)), (2, "two", (0, 255, 0)), (5, "five", (0, 0, 255))]
WEIGHT = RNG.integers(-2, 3, size=(3, 3, 5, 5)).astype(np.float32)
BIAS = np.array([0.0, 1.0, -1.0], np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded worker processes (one nanny each), torn down after the module."""
    folder = tmp_path_factory.mktemp("dask-cluster")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dask_cmd = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = open(folder / "cluster.log", "w")  # noqa: SIM115 - closed at teardown
    procs = [subprocess.Popen([dask_cmd, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)]
    client = None
    try:
        procs.append(subprocess.Popen([dask_cmd, "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1", "--local-directory",
                                       str(folder / "workers")], cwd=folder, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while client is None:
            try:
                client = distributed.Client(address, timeout=5, set_as_default=False)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        client.wait_for_workers(2, timeout=120)
        yield {"address": address, "client": client, "folder": folder}
    finally:
        if client is not None:
            client.close()
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-data")
    image = RNG.integers(1, 10, size=(3, 83, 101)).astype(np.uint8)  # no 0 anywhere (see the failing model)
    raster = write_raster(root / "in.tif", image, block=16)
    conv = conv_module(3, 3, 5, weight=WEIGHT, bias=BIAS)
    export_onnx(conv, root / "conv.onnx", 3, 16)
    emd = write_emd(root / "conv.emd", "conv.onnx", tile=16, classes=CLASSES)
    before, after = change_tests.synthetic_pair(70, 90)
    change = {"from": write_raster(root / "from.tif", before), "to": write_raster(root / "to.tif", after),
              "model": change_tests.make_model(root / "box", "box", kernel=3, threshold=100.5)}
    return {"root": root, "raster": raster, "image": image, "conv": conv, "emd": emd, "change": change}


def failing_model(folder: Path, conv, salt: float) -> Path:
    """TorchScript: ``conv`` on every call, except that the first call in each process on real data (every value
    at least 1; the engine's probes use zeros and noise) raises.  ``salt`` makes each file distinct, so every test
    sees fresh worker processes' first calls (the model is cached per process by its SHA-256)."""
    import torch

    class FailFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv
            self.register_buffer("calls", torch.zeros(1))
            self.register_buffer("salt", torch.full((1,), salt))

        def forward(self, x):
            if bool(x.min() >= 1.0):
                self.calls += 1
                if bool(self.calls[0] == 1.0):
                    raise RuntimeError("injected failure: first call in this worker process")
            return self.conv(x)

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"failfirst_{salt:g}.pt"
    torch.jit.script(FailFirst().eval()).save(str(path))
    return write_emd(folder / f"failfirst_{salt:g}.emd", path.name, tile=16, classes=CLASSES, framework="PyTorch")


def classify(data, out: Path, arguments: str, emd: Path | None = None, **kwargs) -> np.ndarray:
    classify_pixels(str(data["raster"]), load_model_definition(str(emd or data["emd"]), trust=TRUSTED), str(out),
                    arguments,
                    str(out.with_name(out.stem + "_p.tif")), **kwargs)
    return read_raster(out), read_raster(out.with_name(out.stem + "_p.tif"))


def same(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) and x.dtype == y.dtype for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ processing.run
@pytest.mark.parametrize("arguments", ["padding 2;block_size 20;batch_size 4", "padding 5;block_size 45;batch_size 1",
                                       "padding 3;blend True;block_size 30", "padding 4;edge_fill zero"])
def test_classify_pixels_on_the_cluster_equals_in_process(qgis_context, cluster, data, tmp_path, arguments):
    import processing
    from recording_feedback import RecordingFeedback

    results = {}
    for name, scheduler in (("here", ""), ("dask", cluster["address"])):
        out, probs = tmp_path / f"{name}.tif", tmp_path / f"{name}_p.tif"
        feedback = RecordingFeedback()
        processing.run("dltools:classifypixels", {
            "INPUT": str(data["raster"]), "MODEL": str(data["emd"]), "ARGUMENTS": arguments, "DEVICE": 1,
            "SCHEDULER": scheduler, "OUTPUT": str(out), "OUTPUT_PROBABILITIES": str(probs)},
            context=qgis_context, feedback=feedback)
        results[name] = (read_raster(out), read_raster(probs))
        log = "\n".join(feedback.infos)
    assert same(results["here"], results["dask"])
    # the automatic block (about 2048 pixels) holds this whole raster: one block, one worker
    assert ("blocks ran on 2 workers" if "block_size" in arguments else "1 block ran on 1 worker") in log
    assert "no block was retried" in log
    assert (tmp_path / "dask.qml").exists()


def test_progress_on_the_cluster_is_a_percentage_and_counts_blocks(qgis_context, cluster, data, tmp_path):
    """From the start a percentage (not QGIS's busy bar until the first block ends), the progress text counting
    blocks done of the total, and the log's counts in the singular where there is one."""
    import processing
    from recording_feedback import RecordingFeedback

    class Texts(RecordingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.texts: list[tuple[str, int]] = []  # (text, how many progress values came before it)

        def setProgressText(self, text):  # noqa: N802 - QGIS API
            self.texts.append((text, len(self.progress_seen)))
            super().setProgressText(text)

    for arguments, blocks in (("padding 2;block_size 20", None), ("padding 2", 1)):
        feedback = Texts()
        processing.run("dltools:classifypixels", {
            "INPUT": str(data["raster"]), "MODEL": str(data["emd"]), "ARGUMENTS": arguments, "DEVICE": 1,
            "SCHEDULER": cluster["address"], "OUTPUT": str(tmp_path / "out.tif")}, context=qgis_context,
            feedback=feedback)
        assert feedback.progress_seen[0] == pytest.approx(0.1)  # shown as a percentage before any block ends
        counts = [t for t, _ in feedback.texts if t.startswith("Dask: ") and t.endswith(" done")]
        total = int(counts[0].split(" of ")[1].split()[0])
        assert blocks is None or total == blocks
        noun = "block" if total == 1 else "blocks"
        assert counts == [f"Dask: {k} of {total} {noun} done" for k in range(total + 1)]
        start = next(line for line in feedback.infos if line.startswith(f"Dask: {total} {noun} on "))
        assert ("1 block on" in start) == (total == 1) and " on 2 workers (" in start


def test_detect_change_on_the_cluster_equals_in_process(qgis_context, cluster, data, tmp_path):
    import processing

    change = data["change"]
    outs = {}
    for name, scheduler, args in (("here", "", "padding 2;block_size 24"), ("dask", cluster["address"],
                                                                            "padding 2;block_size 24"),
                                  ("dask_big", cluster["address"], "padding 4;block_size 1000")):
        out = tmp_path / f"{name}.tif"
        processing.run("dltools:detectchange", {
            "FROM_RASTER": str(change["from"]), "TO_RASTER": str(change["to"]), "MODEL": str(change["model"]),
            "ARGUMENTS": args, "DEVICE": 1, "SCHEDULER": scheduler, "RETRIES": 1, "OUTPUT": str(out)},
            context=qgis_context)
        outs[name] = read_raster(out)
    assert np.array_equal(outs["here"], outs["dask"])
    assert np.array_equal(outs["here"], outs["dask_big"])  # padding >= the 3x3 box's radius: exact either way
    assert (outs["here"] == 1).any()


def test_qgis_process_with_a_scheduler(qgis_app, cluster, data, tmp_path):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    here = tmp_path / "here.tif"
    classify(data, here, "padding 3;block_size 40")
    out = tmp_path / "qp.tif"
    answer = qgis_process_util.qgis_process_json("dltools:classifypixels", {
        "INPUT": str(data["raster"]), "MODEL": str(data["emd"]), "ARGUMENTS": "padding 3;block_size 40",
        "DEVICE": 1, "SCHEDULER": cluster["address"], "RETRIES": 0, "OUTPUT": str(out)}, tmp_path)
    assert Path(answer["results"]["OUTPUT"]) == out
    assert np.array_equal(read_raster(out), read_raster(here))
    change = data["change"]
    ref, got = tmp_path / "c_here.tif", tmp_path / "c_qp.tif"
    change_tests.detect_change(str(change["from"]), str(change["to"]), load_model_definition(str(change["model"])),
                               str(ref), "padding 2;block_size 30")
    # local:2 from qgis_process: its sys.executable is not a plain Python, the workers must still start
    answer = qgis_process_util.qgis_process_json("dltools:detectchange", {
        "FROM_RASTER": str(change["from"]), "TO_RASTER": str(change["to"]), "MODEL": str(change["model"]),
        "ARGUMENTS": "padding 2;block_size 30", "DEVICE": 1, "SCHEDULER": "local:2", "OUTPUT": str(got)},
        tmp_path)
    assert np.array_equal(read_raster(got), read_raster(ref))
    assert any("blocks ran on 2 workers" in line for line in answer["log"]["info"])


def _object_inputs(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A co_models grid raster (band 1 = column + 1), 13 point features (one outside the raster), the mean model
    (label: the doubled mean of band 1 in a 7 x 7 chip) and a model's own function labelling chips bright/dark."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "classify_objects"))
    import prf_functions
    from co_models import grid_raster, mean_emd, mean_model_files, wkt_point
    from osgeo import ogr, osr

    folder.mkdir(parents=True, exist_ok=True)
    raster = grid_raster(folder / "grid.tif")
    mean_model_files(folder, 7)
    emd = mean_emd(folder, band=0, tile=7)
    source = prf_functions.OBJECT_CLASSIFIER.replace("mean > 100", "mean > 30")
    function = prf_functions.write_function(folder / "function", "Brightness", source,
                                            model_type="ObjectClassification", tile=7,
                                            classes=((1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 255))))
    layer = folder / "points.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(layer))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    lyr = ds.CreateLayer("points", srs, ogr.wkbPoint)
    for c in [3.5 + 4.7 * i for i in range(12)] + [200.0]:
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(wkt_point(c, 20.5)))
        lyr.CreateFeature(f)
    ds = None
    return raster, layer, emd, function


def test_classify_objects_on_the_cluster_equals_in_process(qgis_context, cluster, tmp_path):
    """Classify Objects runs on the block engine: its jobs (batch_size objects each) on the cluster give the same
    labels, values and confidences as in-process, for a model file and for a model's own Python function."""
    import processing
    from qgis.core import QgsVectorLayer
    from recording_feedback import RecordingFeedback

    raster, layer, emd, function = _object_inputs(tmp_path / "inputs")
    for model, allow in ((emd, False), (function, True)):
        rows, logs = {}, {}
        for name, scheduler in (("here", ""), ("dask", cluster["address"])):
            out = tmp_path / f"{model.stem}_{name}.gpkg"
            feedback = RecordingFeedback()
            processing.run("dltools:classifyobjects", {
                "INPUT": str(raster), "FEATURES": str(layer), "MODEL": str(model), "ARGUMENTS": "batch_size 4",
                "SCHEDULER": scheduler, "RETRIES": 0, "ALLOW_CUSTOM_CODE": allow, "OUTPUT": str(out)},
                context=qgis_context, feedback=feedback)
            rows[name] = [(f["ClassLabel"], f["ClassValue"], f["Confidence"])
                          for f in QgsVectorLayer(str(out), "out", "ogr").getFeatures()]
            logs[name] = "\n".join(feedback.infos)
        assert rows["here"] == rows["dask"] and len(rows["here"]) == 13
        assert "blocks ran on 2 workers" in logs["dask"] and "no block was retried" in logs["dask"]
        labelled = [r for r in rows["here"] if r[0] not in (None, NULL)]
        assert len(labelled) == 12
        if allow:
            # mean of band 1 (column + 1) over the 7 x 7 chip around column c: c + 1 (rounded to the pixel)
            assert [r[0] for r in labelled] == ["dark"] * 6 + ["bright"] * 6
            assert "Running the model's own Python code on the Dask workers" in logs["dask"]
        else:
            assert [r[0] for r in labelled] == [f"m{int(3.5 + 4.7 * i) + 1:g}" for i in range(12)]


# ------------------------------------------------------------------------------------------ faults
def test_a_block_failing_on_each_workers_first_call_is_retried(cluster, data, tmp_path):
    want = classify(data, tmp_path / "here.tif", "padding 2;block_size 30")
    emd = failing_model(tmp_path / "m", data["conv"], salt=1.0)
    progress = RecordingProgress()
    got = classify(data, tmp_path / "dask.tif", "padding 2;block_size 30", emd, progress=progress,
                   scheduler=cluster["address"], retries=2)
    assert same(want, got)
    retries = [w for w in progress.warnings if w.startswith("Retrying block")]
    assert 1 <= len(retries) <= 2 and all("injected failure: first call in this worker process" in w for w in retries)
    assert any("retried: block" in m for m in progress.infos)
    # the workers closed this run's model and datasets (a long-lived worker keeps nothing of a finished run)
    left = cluster["client"].run(lambda: (lambda m: len(m._MODELS) + len(m._TASKS))(sys.modules["dltools.core.engine.cluster"]))
    assert set(left.values()) == {0}


def test_retries_0_fails_naming_the_block_and_keeps_no_output(cluster, data, tmp_path):
    emd = failing_model(tmp_path / "m", data["conv"], salt=2.0)
    out = tmp_path / "dask.tif"
    with pytest.raises(ClusterError) as info:
        classify(data, out, "padding 2;block_size 30", emd, scheduler=cluster["address"], retries=0)
    message = str(info.value)
    assert message.startswith("block ") and "pixels x " in message and "failed on worker tcp://127.0.0.1:" in message
    assert "injected failure: first call in this worker process" in message and "RETRIES 0" in message
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob(".*"))


def test_a_worker_killed_mid_run_costs_only_its_blocks(cluster, data, tmp_path):
    want = classify(data, tmp_path / "here.tif", "padding 2;block_size 12;batch_size 1")
    pids = cluster["client"].run(os.getpid)
    victim = sorted(pids.values())[0]

    class KillOnce(RecordingProgress):
        def set_progress(self, percent: float) -> None:
            super().set_progress(percent)
            if self.updates == 2:
                os.kill(victim, signal.SIGKILL)

    progress = KillOnce()
    got = classify(data, tmp_path / "dask.tif", "padding 2;block_size 12;batch_size 1", progress=progress,
                   scheduler=cluster["address"])
    assert same(want, got)
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    cluster["client"].wait_for_workers(2, timeout=120)  # the nanny restarts it for the next tests


def test_an_input_the_workers_cannot_open_is_refused_up_front(cluster, data, tmp_path):
    from osgeo import gdal

    mem = "/vsimem/dltools-only-here.tif"
    gdal.Translate(mem, str(data["raster"]))
    try:
        with pytest.raises(ClusterError, match=r"Not every Dask worker can run this job: worker tcp://127\.0\.0\.1:"
                                               r"\d+ cannot open the input raster: .*dltools-only-here\.tif"):
            classify_pixels(mem, load_model_definition(str(data["emd"])), str(tmp_path / "out.tif"), "padding 2",
                            scheduler=cluster["address"])
    finally:
        gdal.Unlink(mem)
    assert not (tmp_path / "out.tif").exists()


def test_a_model_the_workers_cannot_open_is_refused_up_front(cluster, data, tmp_path, monkeypatch):
    """The client opens the model, but what it ships is a file ONNX Runtime cannot load on the workers: every
    worker's check fails, the run stops before any block saying which worker cannot open which model, and no
    output is left."""
    from dltools.core.engine import cluster as cluster_module

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an ONNX model")
    real = cluster_module.ModelRef.for_file.__func__

    def ship_broken(cls, path, kind, device, definition=None, detection=None, trust=None):
        return real(cls, broken, kind, device, definition, detection, trust)

    monkeypatch.setattr(cluster_module.ModelRef, "for_file", classmethod(ship_broken))
    out = tmp_path / "out.tif"
    with pytest.raises(ClusterError) as failure:
        classify(data, out, "padding 2", scheduler=cluster["address"])
    message = str(failure.value)
    assert message.startswith("Not every Dask worker can run this job: worker tcp://127.0.0.1:")
    assert len(re.findall(r"worker tcp://127\.0\.0\.1:\d+ cannot open the model broken\.onnx: ", message)) == 2
    assert "cannot open the input raster" not in message
    assert not out.exists() and not out.with_name("out_p.tif").exists()


def test_cancel_on_a_local_cluster_leaves_no_output_and_no_worker(data, tmp_path):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous result")
    with pytest.raises(CancelledError):
        classify_pixels(str(data["raster"]), load_model_definition(str(data["emd"])), str(out),
                        "padding 2;block_size 12;batch_size 1", progress=RecordingProgress(cancel_after=2),
                        scheduler="local:2")
    assert out.read_bytes() == b"previous result" and [p.name for p in tmp_path.iterdir()] == ["out.tif"]
    deadline = time.monotonic() + 30
    while True:
        # multiprocessing's resource tracker (one per process that ever spawned) is not a worker
        left = [p for p in me.children(recursive=True) if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"worker processes left running: {[p.cmdline() for p in left]}"


def test_scheduler_values_and_missing_dask(data, tmp_path, monkeypatch):
    from dltools.core.engine.cluster import import_distributed, parse_scheduler
    from dltools.core.errors import ArgumentError, DependencyMissingError

    assert parse_scheduler("") == ("", None) and parse_scheduler(" local ") == ("local", None)
    assert parse_scheduler("local:3") == ("local", 3) and parse_scheduler("tcp://h:8786") == ("tcp://h:8786", None)
    with pytest.raises(ArgumentError, match="local:2"):
        parse_scheduler("local:zero")
    with pytest.raises(ArgumentError, match=r"^SCHEDULER 'cluster' is not a setting this tool knows\. Leave it empty "
                                            r"to run in this process; write local .* \(e\.g\. local:2\), or give "
                                            r"the address of a running Dask scheduler \(e\.g\. tcp://"):
        parse_scheduler("cluster")
    with pytest.raises(ArgumentError, match=r"^SCHEDULER 'local 2' is not a setting this tool knows \(for 2 local "
                                            r"workers write local:2\)\. "):
        parse_scheduler("local 2")
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DependencyMissingError, match=r"^Dask is not installed in QGIS's Python, which running on a Dask "
                                                     r"cluster \(SCHEDULER\) needs: install it from QGIS with .*Install "
                                                     r"Inference Libraries \(dltools:installlibraries, LIBRARY 'Dask "
                                                     r"\(clusters\)'\).* -m pip install .*\"dask\[distributed\]\""):
        import_distributed()
    with pytest.raises(DependencyMissingError, match="leave SCHEDULER empty to run in-process"):
        classify(data, tmp_path / "x.tif", "padding 2", scheduler="local:1")
    classify(data, tmp_path / "y.tif", "padding 2")  # in-process needs no dask


def test_a_mask_on_the_cluster_equals_in_process(cluster, data, tmp_path):
    """MASK on Dask: the mask travels with the block jobs; the workers skip the same tiles, NoData outside."""
    from builders import RecordingProgress as Recorder
    from dltools.core.raster.mask import ProcessingMask
    from dltools.core.raster.request import RasterRequest
    from osgeo import ogr, osr

    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((7.5, 3.2), (80.1, 20.7), (40.2, 70.3), (7.5, 3.2)):
        ring.AddPoint_2D(500000.0 + x, 4000000.0 - y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    extent = (500000.0, 4000000.0 - 83, 500000.0 + 101, 4000000.0)
    request = RasterRequest(extent=extent, mask=ProcessingMask([poly.ExportToIsoWkb()], srs.ExportToWkt(), "tri"))
    results, logs = {}, {}
    for name, scheduler in (("here", ""), ("dask", cluster["address"])):
        progress = Recorder()
        results[name] = classify(data, tmp_path / f"{name}.tif", "padding 2;block_size 24", request=request,
                                 progress=progress, **({"scheduler": scheduler} if scheduler else {}))
        logs[name] = [line for line in progress.infos if line.startswith("MASK 'tri'")]
    assert same(results["here"], results["dask"])
    assert logs["here"] == logs["dask"] and "tiles are skipped" in logs["here"][0]
    classes = results["dask"][0]
    assert (classes == 255).sum() > 2000 and (classes != 255).sum() > 2000


# ------------------------------------------------------------------------------------------ exit after a run
#: How long a process may take to end after its result (the review measured 40 s after a local:2 run; a Python
#: with QGIS and torch loaded takes 1-3 s to tear down on the test machine).
EXIT_BOUND_S = 15.0


@pytest.mark.parametrize("where", ["local:2", "tcp"])
def test_a_python_that_ran_a_tool_on_a_cluster_exits_at_once(cluster, data, tmp_path, where):
    """A script (QGIS, processing.run, then the interpreter's normal end: atexit, distributed's finalizers) is gone
    within EXIT_BOUND_S of its result, with a LocalCluster it started and with a scheduler it only connected to."""
    from isolated_processing import run_isolated

    scheduler = "local:2" if where == "local:2" else cluster["address"]
    answer = run_isolated("dltools:classifypixels", {
        "INPUT": str(data["raster"]), "MODEL": str(data["emd"]), "ARGUMENTS": "padding 2;block_size 40",
        "DEVICE": 1, "SCHEDULER": scheduler, "OUTPUT": str(tmp_path / "out.tif")}, timeout=240, exit_normally=True)
    ended = time.time()
    assert answer["ok"], answer
    assert answer["returncode"] == 0, answer["stderr"]
    assert any("blocks ran on 2 workers" in line for line in answer["log"])
    assert ended - answer["result_at"] < EXIT_BOUND_S, f"exited {ended - answer['result_at']:.1f} s after the result"


def test_qgis_process_exits_at_once_after_a_local_cluster_run(qgis_app, data, tmp_path):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    out = tmp_path / "qp.tif"
    args = qgis_process_util.run_args("dltools:classifypixels", {
        "INPUT": str(data["raster"]), "MODEL": str(data["emd"]), "ARGUMENTS": "padding 2;block_size 40",
        "DEVICE": 1, "SCHEDULER": "local:2", "OUTPUT": str(out)}, json_output=False)
    proc = qgis_process_util.run_qgis_process(args, tmp_path, timeout=240)
    ended = time.time()
    assert proc.returncode == 0, qgis_process_util.stderr_message(proc)
    written = max(p.stat().st_mtime for p in tmp_path.glob("qp.*"))  # the GeoTIFF and its .qml: the result
    assert ended - written < EXIT_BOUND_S, f"qgis_process exited {ended - written:.1f} s after its output"

# SPDX-License-Identifier: GPL-2.0-or-later
"""The block engine's jobs on a Dask cluster (ArcGIS's "parallel processing factor" and "retries").

``scheduler`` says where: ``local`` or ``local:N`` starts a :class:`distributed.LocalCluster` of N worker
processes for this run and closes it after; ``tcp://host:8786`` (any Dask address) uses a running scheduler.
The client (QGIS, ``qgis_process``, a script):

1. ships what the workers need, so a stock ``dask worker`` with numpy, GDAL and onnxruntime/torch is enough:
   the plugin's ``core/`` package (a zip, :func:`core_zip`) and the model file, both as Dask worker plugins
   (workers that join or restart during the run get them too);
2. checks up front, on every worker, that the raster(s) and the model open there (:func:`_check_worker`), and
   says which worker cannot open what;
3. submits one task per block (:func:`run_block_on_worker`: the block's job spec pickled once per run; the
   model loaded once per worker process and reused), a bounded number at a time;
4. writes each block the workers return into the one output GeoTIFF, in the order they finish;
5. retries a block that raised up to ``retries`` times (a block lost with a killed worker is rerun by Dask
   itself), then fails naming the block's window and the worker's error;
6. on cancel or failure cancels the outstanding tasks and closes what it started; the caller's
   :class:`~core.safe_output.OutputSet` leaves no partial output.

``dask`` and ``distributed`` are imported only here and only when a scheduler is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..backends import DeviceRequest, open_backend
from ..errors import ArgumentError, CancelledError, DependencyMissingError, DLToolsError
from ..installer.advice import not_installed
from ..installer.interpreter import RunningPython, locate_python, own_interpreter
from ..progress import NullProgress, Progress, show_stage
from .blocks import BlockJob, BlockSink, BlockTask, run_block, run_in_process
from .scheduler import connect_within, local_workers, parse_address

_POLL = 0.2
_CONNECT_TIMEOUT = 20.0  # seconds to reach a scheduler and see a first worker


class ClusterError(DLToolsError):
    """The cluster cannot run the job: scheduler unreachable, a worker cannot open the inputs, a block failed."""


@dataclass
class ClusterStats:
    """What a cluster run reports back: workers that ran blocks, blocks retried, seconds in the model (summed)."""

    workers: int = 0
    retried: int = 0
    model_seconds: float = 0.0


@dataclass(frozen=True)
class ModelRef:
    """The model file as the workers see it: shipped under a content-addressed name, opened once per process."""

    upload_name: str
    sha256: str
    kind: str
    device: DeviceRequest
    source: str  # the client's path (for messages)
    definition: dict | None = None  # the model definition's JSON: arcgis.learn weights rebuild their network from it
    #: (threshold, nms_overlap) of the run, for detectors that apply them inside the network (arcgis.learn
    #: R-CNN): each worker opens the model afresh with them, as the client did
    detection: tuple[float, float] | None = None
    #: opens the shipped file instead of :func:`~core.backends.open_backend` (a model's own Python function:
    #: ``open(path, device)``, one per worker thread when ``per_thread``); picklable
    opener: Any = None
    #: the user's permission to run a code-bearing model (core.trust.CodeTrust), checked again on each worker
    trust: Any = None

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], kind: str, device: DeviceRequest,
                 definition: dict | None = None, detection: tuple[float, float] | None = None,
                 trust: Any = None) -> ModelRef:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        suffix = "".join(Path(path).suffixes[-1:])
        return cls(f"dltools-model-{sha[:20]}{suffix}", sha, kind, replace(device), str(path), definition, detection,
                   trust=trust)


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """``""`` -> ("", None); ``local`` / ``local:N`` -> ("local", N or None); an address -> (address, None)."""
    text = (scheduler or "").strip()
    if not text:
        return "", None
    if text == "local" or text.startswith("local:"):
        if text == "local":
            return "local", None
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ArgumentError(f"SCHEDULER '{text}': the number of local workers must be a whole number of 1 or "
                                "more, as in local:2")
        return "local", n
    if "://" in text or ":" in text:
        return parse_address(text), None  # checked before anything connects; a password never shown
    spaced = re.fullmatch(r"local\s+(\d+)", text)
    hint = f" (for {spaced.group(1)} local workers write local:{spaced.group(1)})" if spaced else ""
    raise ArgumentError(
        f"SCHEDULER '{text}' is not a setting this tool knows{hint}. Leave it empty to run in this process; write "
        "local for a Dask cluster on this computer, local:N for one of N worker processes (e.g. local:2), or give "
        "the address of a running Dask scheduler (e.g. tcp://192.168.1.10:8786)")


def import_distributed():
    """``distributed``, or a clear message saying what to install."""
    try:
        import distributed
    except ImportError as exc:
        raise DependencyMissingError(
            not_installed("Dask", "dask", ", which running on a Dask cluster (SCHEDULER) needs")
            + " (or leave SCHEDULER empty to run in-process)") from exc
    return distributed


# ---------------------------------------------------------------------------------------------- shipping
def package_root() -> tuple[str, Path]:
    """(top-level package name, folder) of the plugin ``core/`` belongs to (``dltools`` in QGIS and the tests)."""
    top = __name__.split(".")[0]
    return top, Path(__file__).resolve().parents[2]


def core_zip(folder: str | os.PathLike[str]) -> Path:
    """A zip of ``<package>/core/**.py`` with a bare ``<package>/__init__.py``, named by its content.

    The workers import the engine from it under the client's package name (the name pickles refer to); the
    bare ``__init__`` keeps QGIS and PyQt out of the workers.
    """
    top, root = package_root()
    files = sorted(p for p in (root / "core").rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(root)).encode())
        digest.update(p.read_bytes())
    path = Path(folder) / f"{top}-core-{digest.hexdigest()[:16]}.zip"
    if not path.exists():
        tmp = path.with_suffix(".partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{top}/__init__.py", "# SPDX-License-Identifier: GPL-2.0-or-later\n"
                                             '"""The Deep Learning Tools engine, shipped to a Dask worker."""\n')
            for p in files:
                z.write(p, f"{top}/{p.relative_to(root).as_posix()}")
        tmp.replace(path)
    return path


def _staged_model(ref: ModelRef, folder: Path) -> Path:
    """The model file under its upload name (a hard link where possible)."""
    staged = folder / ref.upload_name
    if not staged.exists():
        try:
            os.link(ref.source, staged)
        except OSError:
            shutil.copyfile(ref.source, staged)
    return staged


# ---------------------------------------------------------------------------------------------- worker side
_MODELS: dict[tuple[str, str], Any] = {}  # (run id, model SHA-256) -> open backend
_TASKS: dict[tuple[str, int], BlockTask] = {}  # (run id, thread id) -> the run's task, unpickled in that thread
_LOCK = threading.Lock()


def _worker():
    from distributed import get_worker

    return get_worker()


def _model_on_worker(run_id: str, ref: ModelRef, local_directory: str) -> Any:
    """The model, opened once per worker process (per run) from the shipped file and reused for every block."""
    key = (run_id, ref.sha256)
    if ref.opener is not None and getattr(ref.opener, "per_thread", False):
        key = (run_id, f"{ref.sha256}-{threading.get_ident()}")  # the function object is not shared by threads
    with _LOCK:
        backend = _MODELS.get(key)
        if backend is None:
            path = Path(local_directory) / ref.upload_name
            if not path.exists():
                raise ClusterError(f"the model file {ref.upload_name} was not shipped to this worker")
            if ref.opener is not None:
                backend = ref.opener.open(path, replace(ref.device))
            else:
                backend = open_backend(path, ref.kind, replace(ref.device), NullProgress(), definition=ref.definition,
                                       trust=ref.trust, detection=ref.detection)
            _MODELS[key] = backend
        return backend


def _task_for_thread(run_id: str, blob: bytes) -> BlockTask:
    """The run's task, unpickled once per worker thread (its sources hold GDAL datasets, one per thread)."""
    key = (run_id, threading.get_ident())
    with _LOCK:
        task = _TASKS.get(key)
    if task is None:
        task = pickle.loads(blob)
        with _LOCK:
            _TASKS[key] = task
    return task


def _forget_run(run_id: str) -> int:
    """After a run (on every worker): close its model and its datasets; returns how many things were dropped."""
    with _LOCK:
        models = [k for k in _MODELS if k[0] == run_id]
        tasks = [k for k in _TASKS if k[0] == run_id]
        backends = [_MODELS.pop(k) for k in models]
        for k in tasks:
            _TASKS.pop(k)
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.close()
    return len(models) + len(tasks)


def run_block_on_worker(run_id: str, blob: bytes, ref: ModelRef, job: BlockJob) -> tuple[Any, str, float]:
    """One block on a Dask worker: (the block's result, the worker's address, seconds in the model).
    Errors name the block and the worker."""
    worker = _worker()
    try:
        from osgeo import gdal

        if gdal.GetCacheMax() > 64 * 1024 * 1024:
            gdal.SetCacheMax(64 * 1024 * 1024)
        task = _task_for_thread(run_id, blob)
        backend = _model_on_worker(run_id, ref, worker.local_directory)
        before = getattr(backend, "model_seconds", 0.0)
        result = run_block(task, backend, job)
        return result, worker.address, getattr(backend, "model_seconds", 0.0) - before
    except Exception as exc:
        raise ClusterError(f"{job.describe()} failed on worker {worker.address}: {type(exc).__name__}: {exc}") \
            from exc


def _check_worker(run_id: str, blob: bytes, ref: ModelRef) -> str | None:
    """Run on every worker before the blocks: None, or what this worker cannot open."""
    dask_worker = _worker()
    try:
        task = pickle.loads(blob)  # reopens the raster(s) by path on this machine
        del task
    except Exception as exc:  # noqa: BLE001 - reported to the client with the worker's name
        return f"cannot open the input raster: {exc} (the raster must be reachable from every worker at the same " \
               "path: a shared folder, /vsicurl/ or /vsis3/)"
    try:
        _model_on_worker(run_id, ref, dask_worker.local_directory)
    except Exception as exc:  # noqa: BLE001
        return f"cannot open the model {Path(ref.source).name}: {exc}"
    return None


# ---------------------------------------------------------------------------------------------- client side
class _Call:
    """``fn(*args)`` as a pickle: unpickling it makes the call.

    Dask's scheduler deserialises the task graph it is given.  Each task is therefore ``pickle.loads(call)``
    with ``call`` pickled here: the scheduler sees only a standard-library function and bytes, and the plugin
    (imported from the shipped zip) is needed on the workers alone, so a stock ``dask scheduler`` will do.
    """

    def __init__(self, fn, *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __reduce__(self):
        return self.fn, self.args

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)


def _worker_python() -> None:
    """Spawned local workers need a Python interpreter; inside QGIS (and ``qgis_process``) ``sys.executable`` is
    QGIS itself, so point multiprocessing's spawn context at the interpreter QGIS embeds (found as the installer
    finds it: same version, same ``sys.path`` through the spawn preparation), for the whole session: the nanny
    respawns workers with it."""
    import multiprocessing

    running = RunningPython.current()
    if own_interpreter(running):
        return  # a plain (or virtual-environment) Python: its own interpreter
    try:
        found = locate_python(running)
    except DependencyMissingError as exc:
        raise ClusterError(f"SCHEDULER local needs the Python that QGIS uses to start worker processes. {exc}") from exc
    multiprocessing.get_context("spawn").set_executable(str(found))


def _connect(distributed, address: str, n_local: int | None, progress: Progress):
    """(client, the LocalCluster this run started or None)."""
    if address == "local":
        n = local_workers(n_local, progress)  # never more than the cores this process may use
        progress.info(f"Starting a local Dask cluster of {n} worker process{'es' if n != 1 else ''}")
        _worker_python()
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        try:
            client = distributed.Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        return client, cluster
    return connect_within(distributed, address, _CONNECT_TIMEOUT, progress), None


#: The progress a Dask run reports before its first block ends: enough for QGIS to show a percentage.
_FIRST_TICK = 0.1


def _count(n: int, noun: str) -> str:
    """``1 block``, ``2 blocks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cancelled(progress: Progress) -> None:
    if progress.is_canceled():
        raise CancelledError("The run was cancelled.")


def run_on_cluster(task: BlockTask, ref: ModelRef, jobs: list[BlockJob], sink: BlockSink, progress: Progress,
                   scheduler: str, retries: int = 2) -> ClusterStats:
    """Run ``jobs`` on the Dask cluster ``scheduler`` into ``sink``."""
    address, n_local = parse_scheduler(scheduler)
    if retries < 0:
        raise ArgumentError(f"RETRIES must be 0 or more, not {retries}")
    distributed = import_distributed()
    if address == "local" and not ref.device.threads:
        n = n_local or max(1, os.cpu_count() or 1)
        ref = replace(ref, device=replace(ref.device, threads=max(1, (os.cpu_count() or 1) // n)))
    blob = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
    run_id = uuid.uuid4().hex[:12]
    client = cluster = None
    plugins: list[str] = []
    pending: dict[Any, tuple[BlockJob, int]] = {}
    ok = False
    staging = Path(tempfile.mkdtemp(prefix="dltools-dask-"))
    # a percentage from the start, not a busy bar until the first block ends (QGIS's feedback only reports a
    # change of at least 0.1 %, and starts at 0)
    progress.set_progress(_FIRST_TICK)
    show_stage(progress, "Dask: connecting to the scheduler" if address != "local" else "Dask: starting workers")
    try:
        client, cluster = _connect(distributed, address, n_local, progress)
        _wait_for_workers(client, address, progress)
        from distributed.diagnostics.plugin import UploadFile

        for path, load in ((core_zip(staging), True), (_staged_model(ref, staging), False)):
            name = f"dltools-{run_id}-{path.name}"
            client.register_plugin(UploadFile(str(path), load=load), name=name)
            plugins.append(name)
        _cancelled(progress)
        _check_workers(client, _Call(_check_worker, run_id, blob, ref).dumps(), run_id, pending, progress)
        dispatch = _Dispatch(client=client, distributed=distributed, task=task, call=(run_id, blob, ref),
                             pending=pending, sink=sink, progress=progress, retries=retries)
        stats = dispatch.run(jobs)
        sink.close()
        ok = True
        return stats
    finally:
        if cluster is not None and not ok:
            _stop_local_workers(cluster)  # a cancel or failure: do not wait for threads stuck in a read
        if client is not None:
            if pending:
                with contextlib.suppress(Exception):
                    client.cancel(list(pending), force=True)
            if plugins and (cluster is None or ok):  # the workers close this run's model and datasets
                with contextlib.suppress(Exception):
                    client.run(pickle.loads, _Call(_forget_run, run_id).dumps())
            for name in plugins:
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(name)
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            sink.abort()


def _stop_local_workers(cluster: Any) -> None:
    """Kill the worker processes of the LocalCluster this run started, at once.

    A cancelled or failed run must not wait for its workers: a worker thread can be stuck for the whole HTTP
    time-out in a GDAL read of a server that never answers, and a graceful close waits 4 s for it before the nanny
    kills the process anyway.  The nannies are first told that the end is wanted (no restart), then each worker
    process is killed; ``cluster.close`` then finds them gone.  Nothing of the run is lost: its output is
    discarded anyway.
    """
    import signal

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)
        with contextlib.suppress(Exception):
            nanny.close_gracefully(reason="dltools-run-ended")
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # SIGTERM: TerminateProcess on Windows


def _wait_for_workers(client: Any, address: str, progress: Progress) -> None:
    """Until the scheduler has a worker (a fresh local cluster starts them), or a clear error."""
    _cancelled(progress)
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while not client.scheduler_info(n_workers=-1).get("workers"):
        _cancelled(progress)
        if time.monotonic() > deadline:
            raise ClusterError(f"The Dask scheduler at {address} has no workers: start some with  dask worker "
                               f"{address}")
        time.sleep(_POLL)


def _check_workers(client: Any, check: bytes, run_id: str, pending: dict[Any, tuple[BlockJob, int]],
                   progress: Progress) -> None:
    """Every worker opens the run's task and model once before any block is sent: a worker that cannot (a path it
    does not see, a library it lacks) is named with its reason."""
    checks = {w: client.submit(pickle.loads, check, key=f"dltools-{run_id}-check-{i}", workers=[w],
                               allow_other_workers=False, pure=False)
              for i, w in enumerate(client.scheduler_info(n_workers=-1)["workers"])}
    for fut in checks.values():
        pending[fut] = (None, 0)  # cancelled with the rest on cancel or failure
    problems = {}
    for w, fut in checks.items():
        while not fut.done():
            _cancelled(progress)
            time.sleep(_POLL / 4)
        pending.pop(fut)
        outcome = fut.result() if fut.status == "finished" else f"failed the check: {fut.exception()}"
        if outcome:
            problems[w] = outcome
    if problems:
        raise ClusterError("Not every Dask worker can run this job: " + "; ".join(
            f"worker {w} {p}" for w, p in sorted(problems.items())))


@dataclass
class _Dispatch:
    """The blocks of one run on the cluster: a bounded number in flight, each failed one retried ``retries``
    times, results written into the sink as they come, progress by the blocks' units."""

    client: Any
    distributed: Any
    task: BlockTask
    call: tuple[str, bytes, ModelRef]  # run id, the pickled task, the model
    pending: dict[Any, tuple[BlockJob, int]]  # future -> (job, attempt); cancelled by the caller on failure
    sink: BlockSink
    progress: Progress
    retries: int
    ran_on: Counter = field(default_factory=Counter)
    retried: dict[int, list[str]] = field(default_factory=dict)
    model_seconds: float = 0.0

    def submit(self, job: BlockJob, attempt: int) -> None:
        run_id, blob, ref = self.call
        call = _Call(run_block_on_worker, run_id, blob, ref, job).dumps()
        fut = self.client.submit(pickle.loads, call, key=f"dltools-{run_id}-{job.index}-{attempt}", pure=False,
                                 retries=0)
        self.pending[fut] = (job, attempt)

    def run(self, jobs: list[BlockJob]) -> ClusterStats:
        client, progress, retries = self.client, self.progress, self.retries
        workers = client.scheduler_info(n_workers=-1)["workers"]
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
        progress.info(f"Dask: {_count(len(jobs), 'block')} on {_count(len(workers), 'worker')} "
                      f"({threads} thread{'s' if threads != 1 else ''}) at {client.scheduler.address}, up to {retries} retr"
                      f"{'y' if retries == 1 else 'ies'} per block")
        total = sum(self.task.units(j) for j in jobs) or 1
        done = [0, 0]  # units, jobs
        show_stage(progress, f"Dask: 0 of {_count(len(jobs), 'block')} done")
        queue = list(reversed(jobs))
        limit = max(4, 2 * threads)
        while queue or self.pending:
            _cancelled(progress)
            while queue and len(self.pending) < limit:
                self.submit(queue.pop(), 0)
            try:
                with client.as_current():
                    finished = self.distributed.wait(list(self.pending), timeout=_POLL,
                                                     return_when="FIRST_COMPLETED").done
            except TimeoutError:
                continue
            for fut in finished:
                self._finished(fut, jobs, total, done)
        blocks_word = "block" if len(jobs) == 1 else "blocks"
        ran_on, retried = self.ran_on, self.retried
        progress.info(f"Dask: {len(jobs)} {blocks_word} ran on {len(ran_on)} worker{'s' if len(ran_on) != 1 else ''} ("
                      + ", ".join(f"{w}: {n}" for w, n in sorted(ran_on.items())) + ")"
                      + (f"; retried: {', '.join(f'block {i} x{len(m)}' for i, m in sorted(retried.items()))}"
                         if retried else "; no block was retried"))
        return ClusterStats(len(ran_on), len(retried), self.model_seconds)

    def _finished(self, fut: Any, jobs: list[BlockJob], total: int, done: list[int]) -> None:
        """One block's future: its result into the sink, or a retry, or the run's error."""
        job, attempt = self.pending.pop(fut)
        if fut.status == "finished":
            result, worker, seconds = fut.result()
            self.model_seconds += seconds
            fut.release()
            self.sink.write(job, result)
            self.ran_on[worker] += 1
            done[0] += self.task.units(job)
            done[1] += 1
            self.progress.set_progress(100.0 * done[0] / total)
            show_stage(self.progress, f"Dask: {done[1]} of {_count(len(jobs), 'block')} done")
            return
        error = fut.exception() if fut.status == "error" else f"the task was {fut.status}"
        fut.release()
        message = str(error)
        if attempt < self.retries:
            self.retried.setdefault(job.index, []).append(message)
            self.progress.warning(f"Retrying {job.describe()} ({attempt + 1} of {self.retries}): {message}")
            self.submit(job, attempt + 1)
            return
        if not message.startswith("block "):
            message = f"{job.describe()} failed: {type(error).__name__}: {message}"
        raise ClusterError(f"{message} (tried {attempt + 1} time{'s' if attempt else ''}; RETRIES {self.retries})")


def run_jobs(task: BlockTask, model: Any, jobs: list[Any], sink: BlockSink, progress: Progress, scheduler: str,
             retries: int, model_ref: Callable[[], ModelRef]) -> ClusterStats:
    """The one door of every tool to the block engine: ``jobs`` in-process (``scheduler`` empty) with ``model``
    opened here, or on the Dask cluster ``scheduler`` with the model that ``model_ref()`` ships to the workers."""
    if not (scheduler or "").strip():
        run_in_process(task, model, jobs, sink, progress)
        return ClusterStats()
    return run_on_cluster(task, model_ref(), jobs, sink, progress, scheduler, retries)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Installing into the plugin's private folder with real pip and QGIS's real Python (no venv, no onnxruntime).

Each failure leaves the previous state working: a small library installed before stays importable.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from builders import RecordingProgress
from dltools.core.errors import CancelledError, DependencyMissingError, InstallError
from dltools.core.installer import folder as libfolder
from dltools.core.installer.catalogue import Library, library
from dltools.core.installer.install import change_libraries
from dltools.core.installer.pip_run import PipOptions
from installer_helpers import (
    SYSTEM_PYTHON,
    closed_port,
    import_in,
    isolate_pip,
    python_with_new_pip,
    serve,
    simple_index_handler,
    system_python_without_onnxruntime,
    tree_hashes,
    write_wheel,
)

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "build" / "plugins"
PROBE = Library(key="probe", label="a small test library", requirements=("dltools-probe",), modules=("dltools_probe",))


def _numpy_folder(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import numpy, os; print(os.path.dirname(numpy.__file__))"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def onnxruntime_wheels(tmp_path_factory):
    """A folder of wheel files for onnxruntime, filled with ``pip download`` from the package index."""
    python = system_python_without_onnxruntime()
    folder = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run([str(python), "-m", "pip", "download", "--disable-pip-version-check", "-q", "-d",
                           str(folder), "onnxruntime"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"pip download onnxruntime failed (no package index reachable?): {proc.stderr[-500:]}")
    return folder


@pytest.fixture
def previous_state(tmp_path, monkeypatch):
    """A private folder holding a small library (dltools-probe 1.0, VALUE = 1), installed offline."""
    python = system_python_without_onnxruntime()
    isolate_pip(monkeypatch)
    wheels = tmp_path / "probe-wheels"
    write_wheel(wheels, "dltools-probe", "1.0", 1)
    base = tmp_path / "libs" / "py3.11"
    change_libraries(base, "install", [PROBE], PipOptions(wheels=str(wheels)), RecordingProgress(), python=python)
    return python, base


def _still_works(python: Path, base: Path) -> None:
    proc = import_in(python, base, "dltools_probe", PLUGINS)
    assert proc.returncode == 0, proc.stderr
    assert "VALUE 1" in proc.stdout
    assert [p.name for p in base.parent.iterdir()] == [base.name], "a temporary folder was left behind"


def test_wheel_folder_install_keeps_qgis_numpy(tmp_path, monkeypatch, onnxruntime_wheels):
    python = system_python_without_onnxruntime()
    isolate_pip(monkeypatch)
    numpy_dir = _numpy_folder(python)
    before = tree_hashes(numpy_dir)
    base = tmp_path / "libs" / "py3.11"
    progress = RecordingProgress()
    outcome = change_libraries(base, "install", [library("onnxruntime")], PipOptions(wheels=str(onnxruntime_wheels)),
                               progress, python=python)
    assert outcome.active_now and outcome.libraries == ["onnxruntime"]
    assert "onnxruntime" in outcome.versions and "numpy" not in outcome.versions
    assert not list(libfolder.site_dir(base).glob("numpy*")), "pip installed a second numpy"
    assert tree_hashes(numpy_dir) == before
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100
    assert any(line.startswith("Successfully installed") for line in progress.infos)
    proc = import_in(python, base, "onnxruntime", PLUGINS)
    assert proc.returncode == 0, proc.stderr
    assert f"FILE {libfolder.site_dir(base)}" in proc.stdout
    assert f"NUMPY {numpy_dir}" in proc.stdout
    assert libfolder.read_manifest(base)["libraries"][0]["key"] == "onnxruntime"


def test_an_unreachable_index(previous_state):
    python, base = previous_state
    url = f"http://127.0.0.1:{closed_port()}/simple"
    with pytest.raises(InstallError) as e:
        change_libraries(base, "install", [library("onnxruntime")], PipOptions(index_url=url), RecordingProgress(),
                         python=python)
    message = str(e.value)
    assert message.startswith(f"Cannot reach the package index {url}: check the network connection and QGIS's proxy")
    assert "folder of wheel files (WHEELS)" in message and "Nothing was changed. pip's last lines:" in message
    _still_works(python, base)


class _EmptyIndex(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body = b"<!DOCTYPE html><html><body></body></html>"
        self.send_response(200 if self.path.rstrip("/") == "/simple" else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def test_a_package_pip_cannot_find(previous_state):
    python, base = previous_state
    with serve(_EmptyIndex) as url:
        with pytest.raises(InstallError) as e:
            change_libraries(base, "install", [library("onnxruntime")], PipOptions(index_url=f"{url}/simple"),
                             RecordingProgress(), python=python)
    message = str(e.value)
    assert message.startswith(f"pip found no onnxruntime for this platform and Python (linux, Python "
                              f"{sys.version_info.major}.{sys.version_info.minor}) in the package index {url}/simple")
    _still_works(python, base)


class _SlowIndex(http.server.BaseHTTPRequestHandler):
    """An index whose one wheel arrives a few bytes a second: pip is in the middle of downloading for a long time."""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.startswith("/simple/onnxruntime"):
            name = "onnxruntime-99.0-py3-none-any.whl"
            body = f'<html><body><a href="/files/{name}">{name}</a></body></html>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/files/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"\0" * 64)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
            return
        self.send_error(404)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


class _CancelWhenDownloading(RecordingProgress):
    def __init__(self) -> None:
        super().__init__()
        self.cancelled_at: float | None = None

    def info(self, message: str) -> None:
        super().info(message)
        if "Downloading" in message and self.cancelled_at is None:
            threading.Timer(1.0, self._cancel).start()

    def _cancel(self) -> None:
        self.cancelled_at = time.monotonic()

    def is_canceled(self) -> bool:
        return self.cancelled_at is not None


def test_a_cancel_in_the_middle_ends_pip_within_two_seconds(previous_state):
    import psutil

    python, base = previous_state
    progress = _CancelWhenDownloading()
    # children left by earlier tests of the same session (a Dask worker, a QGIS child) are not this test's pip
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with serve(_SlowIndex) as url:
        with pytest.raises(CancelledError, match="The installation was cancelled: pip was stopped"):
            change_libraries(base, "install", [library("onnxruntime")], PipOptions(index_url=f"{url}/simple"),
                             progress, python=python)
        stopped = time.monotonic()
    assert progress.cancelled_at is not None, progress.infos
    assert stopped - progress.cancelled_at < 2.0
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not left, f"pip is still running: {left}"
    _still_works(python, base)


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs (needs root and mount); skipped with the reason where it cannot be mounted."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs ({proc.stderr.strip() or 'mount failed'}): the full-disk test needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk(tmp_path, monkeypatch, small_disk, onnxruntime_wheels):
    python = system_python_without_onnxruntime()
    isolate_pip(monkeypatch)
    write_wheel(tmp_path / "probe-wheels", "dltools-probe", "1.0", 1)
    base = small_disk / "py3.11"
    change_libraries(base, "install", [PROBE], PipOptions(wheels=str(tmp_path / "probe-wheels")), RecordingProgress(),
                     python=python)
    before = tree_hashes(base)
    with pytest.raises(InstallError) as e:
        change_libraries(base, "install", [library("onnxruntime")], PipOptions(wheels=str(onnxruntime_wheels)),
                         RecordingProgress(), python=python)
    assert str(e.value).startswith(f"No space left on device while installing into {small_disk}: free some space")
    assert tree_hashes(base) == before
    _still_works(python, base)


def test_upgrade_and_remove(previous_state, tmp_path):
    python, base = previous_state
    wheels = tmp_path / "probe-wheels"
    write_wheel(wheels, "dltools-probe", "2.0", 2)
    outcome = change_libraries(base, "upgrade", [PROBE], PipOptions(wheels=str(wheels)), RecordingProgress(),
                               python=python, imported={"dltools_probe"})
    assert outcome.versions["dltools-probe"] == "2.0" and outcome.restart_needed
    assert "VALUE 2" in import_in(python, base, "dltools_probe", PLUGINS).stdout
    outcome = change_libraries(base, "remove", [], PipOptions(), RecordingProgress(), python=python)
    assert outcome.active_now and not base.exists() and not list(base.parent.iterdir())


def test_activate_goes_where_a_user_site_goes(tmp_path):
    base = tmp_path / "py3.11"
    site = libfolder.site_dir(base)
    (site / "extra").mkdir(parents=True)
    (site / "more.pth").write_text("extra\n")
    saved = list(sys.path)
    try:
        assert libfolder.activate(base) == site
        first_site = next(i for i, p in enumerate(sys.path) if Path(p).name in ("site-packages", "dist-packages")
                          and p != str(site))
        assert sys.path.index(str(site)) < first_site
        assert str(site / "extra") in sys.path  # its .pth files are read, as for any site folder
        assert libfolder.activate(base) == site and sys.path.count(str(site)) == 1
    finally:
        sys.path[:] = saved
    assert libfolder.activate(tmp_path / "none") is None


def test_a_deferred_swap_and_removal_happen_at_the_next_load(tmp_path):
    base = tmp_path / "py3.11"
    libfolder.write_manifest(base.mkdir() or base, [{"key": "old"}], {})
    pending = base.with_name(base.name + libfolder.PENDING_SUFFIX)
    pending.mkdir()
    libfolder.write_manifest(pending, [{"key": "new"}], {})
    assert libfolder.apply_pending(base) == "updated"
    assert libfolder.read_manifest(base)["libraries"] == [{"key": "new"}] and not pending.exists()
    base.with_name(base.name + libfolder.REMOVE_MARK).write_text("x")
    assert libfolder.apply_pending(base) == "removed"
    assert sorted(tmp_path.iterdir()) == []


def test_a_mirror_index_and_pip_percentages(tmp_path, monkeypatch, onnxruntime_wheels):
    """INDEX_URL on a real mirror (an HTTP package index on 127.0.0.1); a pip that reports percentages (24.1+)
    moves the progress bar through the download instead of line by line."""
    system_python_without_onnxruntime()
    isolate_pip(monkeypatch)
    python = python_with_new_pip(tmp_path)
    base = tmp_path / "libs" / "py3.11"
    progress = RecordingProgress()
    with serve(simple_index_handler(onnxruntime_wheels)) as url:
        outcome = change_libraries(base, "install", [library("onnxruntime")],
                                   PipOptions(index_url=f"{url}/simple"), progress, python=python)
    assert "onnxruntime" in outcome.versions
    downloading = [p for p in progress.percents if 40 < p < 75]
    # pip's own percentages of the wheel's bytes land between "downloading" (40) and "installing" (80)
    assert downloading, progress.percents
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100
    assert not any(line.startswith("Progress ") for line in progress.infos)  # the bar moves; the log stays readable
    assert any(f"Looking in indexes: {url}/simple" in line for line in progress.infos)


def test_a_python_without_pip_is_refused_clearly(tmp_path):
    system_python_without_onnxruntime()
    venv = tmp_path / "nopip"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    base = tmp_path / "libs" / "py3.11"
    with pytest.raises(DependencyMissingError) as e:
        change_libraries(base, "install", [library("onnxruntime")], PipOptions(), RecordingProgress(),
                         python=venv / "bin" / "python")
    assert str(e.value).startswith(f"QGIS's Python ({venv / 'bin' / 'python'}) has no pip, which the installer needs. "
                                   "Debian/Ubuntu: sudo apt install python3-pip")
    assert not base.parent.exists() or not list(base.parent.iterdir())


def test_a_locked_folder_is_swapped_in_at_the_next_load(previous_state, tmp_path):
    """Windows keeps a loaded library's files locked, so the folder cannot be renamed: the new state waits beside
    it and the next plugin load swaps it in (here the lock is an immutable folder, chattr +i)."""
    python, base = previous_state
    write_wheel(tmp_path / "v2", "dltools-probe", "2.0", 2)
    if subprocess.run(["chattr", "+i", str(base)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        outcome = change_libraries(base, "upgrade", [PROBE], PipOptions(wheels=str(tmp_path / "v2")),
                                   RecordingProgress(), python=python)
    finally:
        subprocess.run(["chattr", "-i", str(base)], check=True)
    assert not outcome.active_now and outcome.versions["dltools-probe"] == "2.0"
    pending = base.with_name(base.name + libfolder.PENDING_SUFFIX)
    assert libfolder.read_manifest(pending)["versions"]["dltools-probe"] == "2.0"
    assert libfolder.read_manifest(base)["versions"]["dltools-probe"] == "1.0"  # still what this session uses
    proc = import_in(python, base, "dltools_probe", PLUGINS)  # the next start: activate() swaps first
    assert "VALUE 2" in proc.stdout, proc.stderr
    assert sorted(p.name for p in base.parent.iterdir()) == [base.name]


def test_a_disk_too_full_to_copy_the_folder(tmp_path, monkeypatch, small_disk):
    python = system_python_without_onnxruntime()
    isolate_pip(monkeypatch)
    write_wheel(tmp_path / "probe-wheels", "dltools-probe", "1.0", 1)
    base = small_disk / "py3.11"
    change_libraries(base, "install", [PROBE], PipOptions(wheels=str(tmp_path / "probe-wheels")), RecordingProgress(),
                     python=python)
    before = tree_hashes(base)
    filler = small_disk / ".filler"
    filler.write_bytes(b"\0" * shutil.disk_usage(small_disk).free)
    try:
        with pytest.raises(InstallError) as e:
            change_libraries(base, "upgrade", [PROBE], PipOptions(wheels=str(tmp_path / "probe-wheels")),
                             RecordingProgress(), python=python)
    finally:
        filler.unlink()
    assert str(e.value).startswith(f"Cannot copy the library folder {base} to prepare the change (No space left on "
                                   "device: free some space there). Nothing was changed.")
    assert tree_hashes(base) == before
    _still_works(python, base)


def test_a_choice_that_replaces_another_rebuilds_the_folder_without_it(tmp_path, monkeypatch):
    """As ONNX Runtime for NVIDIA GPUs replaces the CPU build (one module, two distributions): the folder is built
    anew from the other choices, without the replaced one's files."""
    python = system_python_without_onnxruntime()
    isolate_pip(monkeypatch)
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "dltools-probe-cpu", "1.0", 1, module="dltools_probe")
    write_wheel(wheels, "dltools-probe-gpu", "1.0", 2, module="dltools_probe")
    write_wheel(wheels, "dltools-other", "1.0", 3)
    cpu = Library(key="cpu", label="cpu", requirements=("dltools-probe-cpu",), modules=("dltools_probe",),
                  replaces=("dltools-probe-gpu",))
    gpu = Library(key="gpu", label="gpu", requirements=("dltools-probe-gpu",), modules=("dltools_probe",),
                  replaces=("dltools-probe-cpu",))
    other = Library(key="other", label="other", requirements=("dltools-other",), modules=("dltools_other",))
    base = tmp_path / "libs" / "py3.11"
    options = PipOptions(wheels=str(wheels))
    for lib in (cpu, other, gpu):
        outcome = change_libraries(base, "install", [lib], options, RecordingProgress(), python=python)
    assert outcome.libraries == ["other", "gpu"]
    assert sorted(outcome.versions) == ["dltools-other", "dltools-probe-gpu"]
    assert "VALUE 2" in import_in(python, base, "dltools_probe", PLUGINS).stdout
    assert "VALUE 3" in import_in(python, base, "dltools_other", PLUGINS).stdout
    outcome = change_libraries(base, "install", [cpu], options, RecordingProgress(), python=python)
    assert sorted(outcome.versions) == ["dltools-other", "dltools-probe-cpu"]
    assert "VALUE 1" in import_in(python, base, "dltools_probe", PLUGINS).stdout

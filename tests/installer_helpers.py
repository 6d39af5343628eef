# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the installer's tests: QGIS's own Python without ONNX Runtime, small wheels, real local servers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

#: the Python QGIS runs on this machine (Debian's), without the test venv: it has no onnxruntime
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def system_python_without_onnxruntime() -> Path:
    if not SYSTEM_PYTHON.is_file():
        pytest.skip(f"{SYSTEM_PYTHON} (QGIS's Python here) is absent")
    proc = subprocess.run([str(SYSTEM_PYTHON), "-c", "import onnxruntime"], capture_output=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if proc.returncode == 0:
        pytest.skip(f"{SYSTEM_PYTHON} already has onnxruntime: the installer cannot be shown to bring it")
    proc = subprocess.run([str(SYSTEM_PYTHON), "-m", "pip", "--version"], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} has no pip (apt install python3-pip)")
    return SYSTEM_PYTHON


def isolate_pip(monkeypatch) -> None:  # noqa: ANN001 - pytest's monkeypatch
    """pip reads no configuration file and no PIP_* variable of this machine: the test says where packages are."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def write_wheel(folder: Path, name: str, version: str, value: int, module: str = "") -> Path:
    """A pure-Python wheel ``name`` whose module (``name`` with underscores unless given) says ``VALUE = value``
    (a small library to install offline; two wheels may share a module, as onnxruntime and onnxruntime-gpu do)."""
    dist = name.replace("-", "_")
    module = module or dist
    dist_info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VALUE = {value}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: dltools-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(handler_class: type[http.server.BaseHTTPRequestHandler]):
    """A real HTTP server on 127.0.0.1 in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove nothing there changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def import_in(python: Path, base: Path, module: str, plugins: Path) -> subprocess.CompletedProcess:
    """``python`` (no venv) puts the user base ``base`` on sys.path as the plugin does and imports ``module``."""
    script = (f"import sys; sys.path.insert(0, {str(plugins)!r}); "
              "from dltools.core.installer.folder import activate; "
              f"activate({str(base)!r}); import {module} as m, numpy; "
              "print('FILE', m.__file__); print('VALUE', getattr(m, 'VALUE', getattr(m, '__version__', ''))); "
              "print('NUMPY', numpy.__file__)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=env, timeout=120)


def simple_index_handler(wheels: Path) -> type[http.server.BaseHTTPRequestHandler]:
    """A package index (PEP 503 "simple" pages) over a folder of wheel files, as a mirror serves it."""

    def project(filename: str) -> str:
        return filename.split("-")[0].lower().replace("_", "-")

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                links = "".join(f'<a href="/files/{w.name}">{w.name}</a>' for w in sorted(wheels.glob("*.whl"))
                                if project(w.name) == parts[1].lower())
                body, kind = f"<html><body>{links}</body></html>".encode(), "text/html"
                if not links:
                    self.send_error(404)
                    return
            elif len(parts) == 2 and parts[0] == "files" and (wheels / parts[1]).is_file():
                body, kind = (wheels / parts[1]).read_bytes(), "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    return Index


def python_with_new_pip(folder: Path, minimum: str = "24.1") -> Path:
    """A virtual environment over the system Python (so it sees QGIS's numpy) with pip >= ``minimum``, which
    prints download percentages (``--progress-bar raw``); skipped where pip cannot be fetched."""
    wheels = folder / "pip-wheel"
    proc = subprocess.run([str(SYSTEM_PYTHON), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                           f"pip>={minimum}"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"pip>={minimum} cannot be downloaded: {proc.stderr[-300:]}")
    venv = folder / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    wheel = next(wheels.glob("pip-*.whl"))
    subprocess.run([str(venv / "bin" / "python"), str(wheel / "pip"), "install", "-q", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return venv / "bin" / "python"

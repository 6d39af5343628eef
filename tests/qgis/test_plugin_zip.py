# SPDX-License-Identifier: GPL-2.0-or-later
"""`make package` builds a zip that installs as QGIS does it: unzipped into a plugins folder, it loads
(qgis_process lists the dltools tools) and holds only plugin files (no tests, caches or build output)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qgis_process_util  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _build_zip() -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("make package lists files with git; this is not a git checkout")
    proc = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    version = next(line.split("=", 1)[1].strip() for line in (ROOT / "metadata.txt").read_text().splitlines()
                   if line.startswith("version="))
    path = ROOT / "dist" / f"dltools-{version}.zip"
    assert path.is_file()
    return path


def test_zip_holds_only_the_plugin(tmp_path):
    names = zipfile.ZipFile(_build_zip()).namelist()
    assert "dltools/metadata.txt" in names and "dltools/__init__.py" in names and "dltools/plugin.py" in names
    assert "dltools/resources/icons/dltools.svg" in names
    assert any(n.startswith("dltools/core/pipelines/") for n in names)
    assert all(n.startswith("dltools/") for n in names)
    for bad in ("tests/", "__pycache__", ".pyc", "build/", ".venv", "scripts/", ".ci/", "Makefile"):
        assert not any(bad in n for n in names), bad


def test_unzipped_plugin_loads_in_qgis_process(tmp_path):
    if not qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(_build_zip()).extractall(plugins)
    profile = tmp_path / "profile"
    qgis_process_util.enable_plugin(profile)
    env = qgis_process_util.qgis_process_env(profile)
    env["QGIS_PLUGINPATH"] = str(plugins)
    proc = subprocess.run([str(qgis_process_util.QGIS_PROCESS), "list"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for alg in ("classifypixels", "classifyobjects", "detectchange", "describemodel", "modeltoecd", "packagemodel",
                "extractpackage"):
        assert f"dltools:{alg}" in proc.stdout, alg

# SPDX-License-Identifier: GPL-2.0-or-later
"""The interpreter QGIS runs, found on fake layouts of every QGIS distribution and on this machine's real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dltools.core.errors import DependencyMissingError
from dltools.core.installer.interpreter import RunningPython, locate_python


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o755)
    return path


def _run(exe: Path, prefix: Path, platform: str = "linux", version: tuple[int, int] = (3, 11)) -> RunningPython:
    return RunningPython(executable=str(exe), exec_prefix=str(prefix), base_exec_prefix=str(prefix), version=version,
                         platform=platform)


def test_linux_distribution_package(tmp_path):
    usr = tmp_path / "usr"
    qgis = _touch(usr / "bin" / "qgis")
    _touch(usr / "bin" / "python3")
    python = _touch(usr / "bin" / "python3.11")
    assert locate_python(_run(qgis, usr)) == python
    assert locate_python(_run(_touch(usr / "bin" / "qgis_process.bin"), usr)) == python
    python.unlink()  # a distribution with python3 only
    assert locate_python(_run(qgis, usr)) == usr / "bin" / "python3"


def test_an_interpreter_without_execute_permission_is_not_taken(tmp_path):
    usr = tmp_path / "usr"
    qgis = _touch(usr / "bin" / "qgis")
    _touch(usr / "bin" / "python3.11").chmod(0o644)
    python3 = _touch(usr / "bin" / "python3")
    assert locate_python(_run(qgis, usr)) == python3


def test_macos_app_bundle(tmp_path):
    contents = tmp_path / "Applications" / "QGIS-LTR.app" / "Contents"
    qgis = _touch(contents / "MacOS" / "QGIS")
    # QGIS 3.22's bundle: the prefix has no bin/, the interpreter sits in Contents/MacOS/bin
    python = _touch(contents / "MacOS" / "bin" / "python3.9")
    assert locate_python(_run(qgis, contents / "Resources" / "python", "darwin", (3, 9))) == python
    python.unlink()
    framework = contents / "Frameworks" / "Python.framework" / "Versions" / "3.9"
    bundled = _touch(framework / "bin" / "python3.9")
    assert locate_python(_run(qgis, contents / "Resources" / "python", "darwin", (3, 9))) == bundled
    assert locate_python(_run(qgis, framework, "darwin", (3, 9))) == bundled  # prefix is the framework


def test_windows_osgeo4w(tmp_path):
    root = tmp_path / "OSGeo4W"
    qgis = _touch(root / "bin" / "qgis-ltr-bin.exe")
    _touch(root / "bin" / "python3.exe")
    python = _touch(root / "apps" / "Python39" / "python.exe")
    assert locate_python(_run(qgis, root / "apps" / "Python39", "win32", (3, 9))) == python
    # a prefix that says nothing useful: OSGeo4W's bin\python3.exe
    assert locate_python(_run(qgis, tmp_path / "elsewhere", "win32", (3, 9))) == root / "bin" / "python3.exe"


def test_windows_standalone_installer(tmp_path):
    root = tmp_path / "Program Files" / "QGIS 3.22.16"
    qgis = _touch(root / "bin" / "qgis-bin.exe")
    python = _touch(root / "apps" / "Python39" / "python.exe")
    assert locate_python(_run(qgis, tmp_path / "nowhere", "win32", (3, 9))) == python  # found from the binary
    assert locate_python(_run(qgis, root / "apps" / "Python39", "win32", (3, 9))) == python


def test_a_plain_or_virtual_environment_python_is_its_own_interpreter(tmp_path):
    venv = tmp_path / "venv"
    python = _touch(venv / "bin" / "python")
    _touch(venv / "bin" / "python3.11")
    assert locate_python(_run(python, venv)) == python
    conda = tmp_path / "conda" / "envs" / "qgis"
    exe = _touch(conda / "python.exe")
    assert locate_python(_run(exe, conda, "win32")) == exe


def test_nothing_found_says_where_it_looked(tmp_path):
    qgis = _touch(tmp_path / "usr" / "bin" / "qgis")
    with pytest.raises(DependencyMissingError, match=r"The Python 3\.11 interpreter that QGIS runs was not found") as e:
        locate_python(_run(qgis, tmp_path / "usr"))
    assert str(tmp_path / "usr" / "bin" / "python3.11") in str(e.value)


def test_the_real_layout_of_this_machine():
    """Debian's QGIS: /usr/bin/qgis with the prefix /usr; the interpreter found runs QGIS's Python version."""
    if not Path("/usr/bin/qgis").is_file() and not Path("/usr/bin/qgis_process.bin").is_file():
        pytest.skip("QGIS is not installed as a distribution package here")
    exe = "/usr/bin/qgis" if Path("/usr/bin/qgis").is_file() else "/usr/bin/qgis_process.bin"
    found = locate_python(RunningPython(executable=exe, exec_prefix="/usr", base_exec_prefix="/usr",
                                        version=sys.version_info[:2], platform=sys.platform))
    assert found == Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    out = subprocess.run([str(found), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=True)
    assert out.stdout.strip() == str(tuple(sys.version_info[:2]))

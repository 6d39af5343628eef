# SPDX-License-Identifier: GPL-2.0-or-later
"""Run QGIS's command-line ``qgis_process`` on the plugin of this checkout, away from the user's QGIS profile.

What works with QGIS 3.22.16 as Debian packages it (checked by hand and by tests/qgis/test_describe_model.py):

* ``/usr/bin/qgis_process`` is a Debian shell wrapper that runs ``qgis_process.bin $QGIS_OPTS "$@"`` with
  ``QGIS_OPTS='--noversioncheck'`` from /etc/default/qgis. qgis_process 3.22 does not know that option and stops
  with "Command --noversioncheck not known!", so call ``/usr/bin/qgis_process.bin`` directly (the wrapper only
  adds GRASS's library folder to LD_LIBRARY_PATH, which these tools do not need).
* The environment::

      QT_QPA_PLATFORM=offscreen
      QGIS_CUSTOM_CONFIG_PATH=<a temporary folder>          # a throwaway profile; the user's is never touched
      QGIS_PLUGINPATH=<repo>/build/plugins                  # holds the dltools -> <repo> link tests/conftest.py makes
      PYTHONPATH=<repo>/.venv/lib/python3.11/site-packages  # onnxruntime and torch for QGIS's own Python 3.11

* Python plugins are disabled in a new profile, so enable the plugin once per profile::

      qgis_process.bin plugins enable dltools

  That only writes ``[PythonPlugins] dltools=true`` into ``<profile>/profiles/default/QGIS/QGIS3.ini``; the
  helpers below write that line themselves (one QGIS start-up fewer), and the test suite also checks the command.
  ``qgis_process.bin plugins`` then marks the plugin with "*" (loaded, has a Processing provider).
* Then::

      qgis_process.bin list
      qgis_process.bin --json run dltools:describemodel -- MODEL=/data/trained.emd OUTPUT_JSON=/tmp/d.json

  3.22 takes parameter values only as ``NAME=VALUE`` after ``--`` (a list parameter repeats the name; "-" for
  JSON parameters on stdin is refused as "Invalid parameter value -").  ``--json`` prints one JSON object on
  stdout with ``inputs``, ``log`` (``info`` lines), ``results`` and the algorithm/provider details.  On failure
  the exit code is 1 and the algorithm's error message is printed on stderr (stdout has no JSON).

Test modules import this file by path, since ``tests/qgis`` is not on ``sys.path`` (pytest runs with
``--import-mode=importlib``, and a ``qgis`` package there would shadow QGIS's)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import qgis_process_util  # noqa: E402
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "build" / "plugins"
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
VENV_SITE_PACKAGES = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
PLUGIN = "dltools"

#: stderr lines QGIS prints on every start that say nothing about the run
_NOISE = ("QStandardPaths: XDG_RUNTIME_DIR not set", "DeprecationWarning: setapi() is deprecated")


class QgisProcessError(AssertionError):
    """qgis_process failed where the caller expected it to work; the message carries its output."""


def available() -> bool:
    return QGIS_PROCESS.is_file() and os.access(QGIS_PROCESS, os.X_OK)


def profile_dir(tmp_path: Path) -> Path:
    """The throwaway QGIS settings folder used for ``tmp_path`` (made on first use, plugin enabled)."""
    profile = Path(tmp_path) / "qgis-profile"
    enable_plugin(profile)
    return profile


def enable_plugin(profile: Path) -> None:
    """What ``qgis_process.bin plugins enable dltools`` writes, without starting QGIS for it."""
    ini = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    if ini.is_file() and f"{PLUGIN}=true" in ini.read_text(encoding="utf-8", errors="replace"):
        return
    ini.parent.mkdir(parents=True, exist_ok=True)
    with ini.open("a", encoding="utf-8") as fh:
        fh.write(f"\n[PythonPlugins]\n{PLUGIN}=true\n")


def qgis_process_env(profile: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_CUSTOM_CONFIG_PATH": str(profile),
        "QGIS_PLUGINPATH": str(PLUGINS),
        "PYTHONPATH": os.pathsep.join(p for p in (str(VENV_SITE_PACKAGES), env.get("PYTHONPATH", "")) if p),
        "DLTOOLS_THREADS": env.get("DLTOOLS_THREADS", "2"),
    })
    return env


COMMANDS = ("run", "list", "help", "plugins")


def run_qgis_process(args: Sequence[str], tmp_path: Path, timeout: float = 300,
                     profile: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``qgis_process.bin *args`` with the plugin enabled in a profile under ``tmp_path``.

    ``args`` are qgis_process's own (``["list"]``, ``["--json", "run", "dltools:describemodel", "--",
    "MODEL=..."]``); when they start with an algorithm id instead of a command, ``run`` is put in front
    (``["dltools:describemodel", "--MODEL=..."]`` works: 3.22 also takes ``--NAME=VALUE``).
    The caller checks ``returncode``; :func:`qgis_process_json` raises on failure instead.
    """
    if not (PLUGINS / PLUGIN).exists():
        raise QgisProcessError(f"{PLUGINS / PLUGIN} is missing: tests/conftest.py creates it")
    args = [str(a) for a in args]
    first = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if first is not None and args[first] not in COMMANDS:
        args.insert(first, "run")
    profile = profile or profile_dir(tmp_path)
    return subprocess.run([str(QGIS_PROCESS), *args], env=qgis_process_env(profile), capture_output=True,
                          text=True, timeout=timeout, cwd=str(tmp_path))


def format_value(value: Any) -> list[str]:
    """One parameter value as qgis_process 3.22 takes it (a list gives the parameter several times)."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in format_value(item)]
    if isinstance(value, dict):
        return [json.dumps(value)]
    return [str(value)]


def run_args(alg_id: str, params: Mapping[str, Any], json_output: bool = True) -> list[str]:
    args = ["--json"] if json_output else []
    args += ["run", alg_id, "--"]
    for name, value in params.items():
        args += [f"{name}={v}" for v in format_value(value)]
    return args


def stderr_message(proc: subprocess.CompletedProcess) -> str:
    """stderr without the start-up noise every qgis_process run prints."""
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not any(n in line for n in _NOISE)]
    return "\n".join(lines)


def qgis_process_json(alg_id: str, params: Mapping[str, Any], tmp_path: Path, timeout: float = 300) -> dict:
    """Run an algorithm with ``--json`` and return the parsed answer (``results``, ``log``, ``inputs``, ...)."""
    proc = run_qgis_process(run_args(alg_id, params), tmp_path, timeout=timeout)
    if proc.returncode != 0:
        raise QgisProcessError(f"qgis_process run {alg_id} exited with {proc.returncode}:\n{stderr_message(proc)}\n"
                               f"stdout:\n{proc.stdout[-4000:]}")
    start = proc.stdout.find("{")
    if start < 0:
        raise QgisProcessError(f"qgis_process run {alg_id} printed no JSON:\n{proc.stdout[-4000:]}")
    return json.loads(proc.stdout[start:])


def qgis_process_failure(alg_id: str, params: Mapping[str, Any], tmp_path: Path, timeout: float = 300) -> str:
    """Run an algorithm that must fail; return its error message (stderr without the start-up noise)."""
    proc = run_qgis_process(run_args(alg_id, params), tmp_path, timeout=timeout)
    if proc.returncode == 0:
        raise QgisProcessError(f"qgis_process run {alg_id} succeeded but was expected to fail:\n{proc.stdout[-4000:]}")
    return stderr_message(proc)

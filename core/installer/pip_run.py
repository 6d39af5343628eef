# SPDX-License-Identifier: GPL-2.0-or-later
"""Running pip in a child process of QGIS's Python: its command, its environment, its output, its end.

pip's output becomes progress (percentages where pip prints them: ``--progress-bar raw`` from pip 24.1) and log
lines; a cancel ends pip (and anything it started) within a second or two; a failure becomes a sentence that
says what went wrong and what to do, with pip's last lines.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CancelledError, DependencyMissingError, InstallError
from ..progress import Progress

_PROBE = """
import json, os, sys, sysconfig
try:
    from importlib.metadata import version
except ImportError:
    version = None
def v(name):
    try:
        return version(name)
    except Exception:
        return None
print(json.dumps({"python": list(sys.version_info[:2]), "numpy": v("numpy"), "pip": v("pip"),
                  "managed": os.path.isfile(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")),
                  "platform": sys.platform}))
"""

#: environment variables that would make pip see (or skip) other folders than QGIS's own and the user base
_DROPPED_ENV = ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONSTARTUP", "PIP_USER", "PIP_TARGET", "PIP_PREFIX",
                "PIP_REQUIRE_VIRTUALENV", "VIRTUAL_ENV")


@dataclass(frozen=True)
class PythonFacts:
    """What QGIS's interpreter says about itself before pip runs."""

    python: Path
    version: tuple[int, int]
    numpy: str | None
    pip: str | None
    managed: bool  # EXTERNALLY-MANAGED (Debian 12, Ubuntu 23.04+): pip wants --break-system-packages even for --user
    platform: str


@dataclass(frozen=True)
class PipOptions:
    """Where pip takes packages from."""

    index_url: str = ""
    wheels: str = ""  # a folder of wheel files: offline, no index at all
    proxy: str = ""  # scheme://[user:password@]host:port, from QGIS's network settings


@dataclass
class PipResult:
    returncode: int
    lines: list[str] = field(default_factory=list)


def child_env(user_base: Path | None, proxy: str = "") -> dict[str, str]:
    """The child's environment; the proxy goes in ``PIP_PROXY`` (pip's ``--proxy``), where other users of the
    machine cannot read its password (a command line is public, a process's environment is not)."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if user_base is not None:
        env["PYTHONUSERBASE"] = str(user_base)
    if proxy:
        env["PIP_PROXY"] = proxy
    return env


def without_password(text: str) -> str:
    """``scheme://user:***@host`` for every URL with a password in ``text`` (proxy credentials stay out of logs)."""
    return re.sub(r"(\w+://[^:/@\s]+):[^@\s]*@", r"\1:***@", text)


def _popen_flags() -> dict:
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0) | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def probe(python: Path) -> PythonFacts:
    try:
        proc = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=60,
                              env=child_env(None), **_popen_flags())
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise InstallError(f"QGIS's Python {python} could not be started to install libraries: {exc}") from exc
    facts = PythonFacts(python=python, version=tuple(data["python"]), numpy=data["numpy"], pip=data["pip"],
                        managed=bool(data["managed"]), platform=data["platform"])
    if facts.pip is None:
        raise DependencyMissingError(
            f"QGIS's Python ({python}) has no pip, which the installer needs. Debian/Ubuntu: sudo apt install "
            "python3-pip; other systems: reinstall QGIS with its Python's pip (OSGeo4W: the python3-pip package)")
    return facts


def _pip_version(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or "0")[:2])


def install_command(facts: PythonFacts, requirements: list[str], constraints: Path, options: PipOptions,
                    upgrade: bool = False) -> list[str]:
    """``python -m pip install --user ...`` for the user base given in the environment."""
    cmd = [str(facts.python), "-m", "pip", "install", "--user", "--no-input", "--no-warn-script-location",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "30", "--constraint", str(constraints)]
    cmd += ["--progress-bar", "raw" if _pip_version(facts.pip) >= (24, 1) else "off"]
    if facts.managed:  # only lifts Debian's ban on --user installs; the user base is the plugin's own folder
        cmd.append("--break-system-packages")
    if upgrade:
        cmd.append("--upgrade")
    if options.wheels:
        cmd += ["--no-index", "--find-links", options.wheels]
    elif options.index_url:
        cmd += ["--index-url", options.index_url]
    return cmd + list(requirements)


class PipProgress:
    """pip's lines as progress: resolving 5-40 %, downloading 40-75 % (raw percentages), installing 80-95 %."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.percent = 0.0

    def _at_least(self, percent: float) -> None:
        if percent > self.percent:
            self.percent = percent
            self.progress.set_progress(percent)

    def line(self, text: str) -> None:
        raw = re.match(r"Progress (\d+) of (\d+)", text)
        if raw:
            done, total = int(raw.group(1)), max(1, int(raw.group(2)))
            self._at_least(40 + 35 * done / total)
            return
        if text.startswith(("Collecting", "Requirement already satisfied")):
            self._at_least(min(40, self.percent + 3 if self.percent >= 5 else 5))
        elif text.lstrip().startswith("Downloading"):
            self._at_least(40)
        elif text.startswith("Installing collected packages"):
            self._at_least(80)
        elif text.startswith("Successfully installed"):
            self._at_least(95)
        self.progress.info(text)


def _reader(stream, lines: queue.Queue) -> None:  # noqa: ANN001 - a text stream
    for text in iter(stream.readline, ""):
        lines.put(text.rstrip("\r\n"))
    lines.put(None)


def _stop(proc: subprocess.Popen) -> None:
    """End pip and whatever it started (its process group), hard after one second."""
    try:
        if sys.platform == "win32":
            proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=1.0)
    except (OSError, subprocess.TimeoutExpired):
        try:
            if sys.platform == "win32":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait(timeout=5)


def run_pip(cmd: list[str], env: dict[str, str], progress: Progress, keep: int = 40) -> PipResult:
    """Run ``cmd``, streaming its lines into ``progress``; CancelledError (pip ended) when the user cancels."""
    watcher = PipProgress(progress)
    progress.debug(without_password(" ".join(cmd)))
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, text=True, encoding="utf-8", errors="replace", bufsize=1, **_popen_flags())
    except OSError as exc:
        raise InstallError(f"pip could not be started ({cmd[0]}): {exc}") from exc
    lines: queue.Queue = queue.Queue()
    thread = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    thread.start()
    tail: deque[str] = deque(maxlen=keep)
    while True:
        if progress.is_canceled():
            _stop(proc)
            proc.stdout.close()
            raise CancelledError("The installation was cancelled: pip was stopped and nothing was changed.")
        try:
            text = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if text is None:
            break
        if text.strip():
            tail.append(text)
            watcher.line(text)
    proc.wait()
    thread.join(timeout=1)
    proc.stdout.close()
    return PipResult(returncode=proc.returncode, lines=list(tail))


_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "Connection refused",
            "Name or service not known", "Temporary failure in name resolution", "nodename nor servname",
            "getaddrinfo failed", "ConnectTimeoutError", "Read timed out", "Network is unreachable",
            "No route to host", "Could not fetch URL", "SSLError", "CERTIFICATE_VERIFY_FAILED")


def explain_failure(result: PipResult, requirements: list[str], facts: PythonFacts, options: PipOptions,
                    folder: Path) -> str:
    """pip's failure in words: what went wrong, what to do, then pip's last lines."""
    text = "\n".join(result.lines)
    last = "\n".join(result.lines[-8:])
    where = (f"the wheel folder {options.wheels}" if options.wheels else
             f"the package index {options.index_url or 'https://pypi.org/simple (or the one in your pip configuration)'}")
    platform = f"{facts.platform}, Python {facts.version[0]}.{facts.version[1]}"
    if "No space left on device" in text or "Errno 28" in text:
        head = (f"No space left on device while installing into {folder}: free some space there (or in the "
                "temporary folder) and run the installer again")
    elif "ProxyError" in text or "Cannot connect to proxy" in text or "Tunnel connection failed" in text:
        head = (f"pip could not get through the proxy {without_password(options.proxy) or '(from the environment)'} to "
                f"{where}: check "
                "QGIS's proxy settings (Settings › Options › Network), or install from a folder of wheel files (WHEELS)")
    elif any(marker in text for marker in _NETWORK):
        head = (f"Cannot reach {where}: check the network connection and QGIS's proxy settings (Settings › Options › "
                "Network), give a mirror as INDEX_URL, or, offline, install from a folder of wheel files (WHEELS) "
                "downloaded on another machine with  pip download")
    elif "No matching distribution found" in text or "Could not find a version that satisfies" in text:
        missing = re.findall(r"No matching distribution found for (\S+)", text)
        head = (f"pip found no {', '.join(missing) or ' '.join(requirements)} for this platform and Python "
                f"({platform}) in {where}")
        if facts.numpy:
            head += f" that works with QGIS's numpy {facts.numpy}"
    elif "ResolutionImpossible" in text or "conflicting dependencies" in text:
        head = (f"pip found no versions of {' '.join(requirements)} that work together with QGIS's own packages "
                f"(numpy {facts.numpy} stays as QGIS has it)")
    else:
        head = f"pip failed (exit code {result.returncode}) installing {' '.join(requirements)}"
    return without_password(f"{head}. Nothing was changed. pip's last lines:\n{last}")


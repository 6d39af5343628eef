# SPDX-License-Identifier: GPL-2.0-or-later
"""Install, upgrade or remove the plugin's libraries: a new folder is built and swapped in only on success.

The previous folder is copied into a temporary sibling, pip works on the copy (as its ``PYTHONUSERBASE``), and
the copy replaces the folder by renames when pip has succeeded. A failed, cancelled or out-of-space install
deletes the copy: whatever worked before still works, untouched. QGIS's own numpy is pinned by a constraint file,
so pip never installs another numpy over or beside it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import CancelledError, InstallError
from ..progress import Progress
from . import folder as libfolder
from .catalogue import Library
from .interpreter import locate_python
from .pip_run import PipOptions, PythonFacts, child_env, explain_failure, install_command, probe, run_pip

ACTIONS = ("install", "upgrade", "remove")


@dataclass(frozen=True)
class InstallOutcome:
    """What a run did, for the log and the tool's outputs."""

    action: str
    folder: Path
    libraries: list[str]
    versions: dict[str, str]
    active_now: bool  # False: the new state waits for the next start of QGIS (a locked folder on Windows)
    restart_needed: bool  # a library of the old state was already imported in this QGIS session


def installed_versions(base: Path) -> dict[str, str]:
    """``{distribution: version}`` of what the user base holds."""
    from importlib import metadata

    site = libfolder.site_dir(base)
    if not site.is_dir():
        return {}
    return {dist.metadata["Name"]: dist.version for dist in metadata.distributions(path=[str(site)])}


def _constraints(facts: PythonFacts, folder: Path) -> Path:
    """The constraint file that keeps QGIS's numpy: ``numpy==<the version QGIS runs>``."""
    path = folder / "dltools-constraints.txt"
    path.write_text(f"numpy=={facts.numpy}\n" if facts.numpy else "", encoding="utf-8")
    return path


def _prepare(base: Path, work: Path, copy: bool, progress: Progress) -> None:
    """The working copy: the current folder's content, or a fresh folder (a replaced choice's files must go).
    A cancel stops the copy (PyTorch's folder is gigabytes); a full disk is said in words."""

    def copy_file(src: str, dst: str) -> str:
        if progress.is_canceled():
            raise CancelledError("The installation was cancelled while the library folder was copied; nothing "
                                 "was changed.")
        return shutil.copy2(src, dst)

    try:
        if copy and base.is_dir():
            shutil.copytree(base, work, symlinks=True, copy_function=copy_file)
        else:
            work.mkdir(parents=True)
    except OSError as exc:  # shutil.Error (several files) carries the errors' texts, not an errno
        full = exc.errno == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(exc)
        reason = os.strerror(errno.ENOSPC) + ": free some space there" if full else (exc.strerror or str(exc)[:300])
        raise InstallError(f"Cannot copy the library folder {base} to prepare the change ({reason}). Nothing was "
                           "changed.") from exc


def _pip_into(work: Path, facts: PythonFacts, requirements: list[str], options: PipOptions, upgrade: bool,
              progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="dltools-pip-") as scratch:
        cmd = install_command(facts, requirements, _constraints(facts, Path(scratch)), options, upgrade=upgrade)
        progress.info(f"pip ({facts.python}, pip {facts.pip}) installs {' '.join(requirements)} into {work.name}; "
                      f"QGIS's numpy {facts.numpy} is kept")
        result = run_pip(cmd, child_env(work, options.proxy), progress)
    if result.returncode != 0:
        raise InstallError(explain_failure(result, requirements, facts, options, work.parent))


def _installed_libraries(base: Path) -> list[Library]:
    """The choices the folder was built from (their records are kept in its manifest)."""
    found = []
    for item in libfolder.read_manifest(base)["libraries"]:
        try:
            found.append(Library(key=item["key"], label=item["label"], requirements=tuple(item["requirements"]),
                                 modules=tuple(item["modules"]), replaces=tuple(item.get("replaces", ()))))
        except (KeyError, TypeError):
            continue
    return found


def change_libraries(base: Path, action: str, chosen: list[Library], options: PipOptions, progress: Progress,
                     imported: set[str] | None = None, python: Path | None = None) -> InstallOutcome:
    """Install/upgrade the libraries ``chosen`` into the user base ``base``, or remove everything it holds.

    ``imported``: the modules already imported in this session (their new versions need a restart of QGIS).
    ``python``: the interpreter pip runs in (default: the one QGIS runs, :func:`.interpreter.locate_python`).
    """
    if action not in ACTIONS:
        raise InstallError(f"ACTION must be one of {', '.join(ACTIONS)}, not '{action}'")
    imported = imported or set()
    had = _installed_libraries(base)
    restart = any(m in imported for lib in had for m in lib.modules)
    if action == "remove":
        now = libfolder.remove(base)
        progress.set_progress(100)
        return InstallOutcome(action=action, folder=base, libraries=[], versions={}, active_now=now,
                              restart_needed=restart)
    chosen_keys = {lib.key for lib in chosen}
    replaced = {d for lib in chosen for d in lib.replaces}
    conflicting = [lib for lib in had if set(lib.requirements) & replaced]
    keep = [lib for lib in had if lib not in conflicting and lib.key not in chosen_keys]
    fresh = bool(conflicting)  # onnxruntime <-> onnxruntime-gpu: rebuild without the replaced one
    requirements = [r for lib in (keep if fresh else []) + chosen for r in lib.requirements]
    base.parent.mkdir(parents=True, exist_ok=True)
    facts = probe(python or locate_python())
    progress.set_progress(2)
    work = libfolder.temporary_sibling(base, "partial")
    try:
        _prepare(base, work, not fresh, progress)
        _pip_into(work, facts, list(dict.fromkeys(requirements)), options, action == "upgrade", progress)
        now_libs = keep + list(chosen)
        versions = installed_versions(work)
        libfolder.write_manifest(work, [asdict(lib) for lib in now_libs], versions)
        now = libfolder.swap_in(work, base)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress.set_progress(100)
    return InstallOutcome(action=action, folder=base, libraries=[lib.key for lib in now_libs], versions=versions,
                          active_now=now,
                          restart_needed=restart or any(m in imported for lib in chosen for m in lib.modules))

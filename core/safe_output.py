# SPDX-License-Identifier: GPL-2.0-or-later
"""Outputs that never destroy what was there before.

Every tool writes each output file under a temporary name beside its target and
moves it into place only when the whole run has succeeded.  A cancelled or
failed run therefore leaves an existing output (and its ``.qml`` style) exactly
as it was, and never leaves a half-written file under the name the user chose.

The temporary name keeps the target's extension (GDAL and OGR pick the driver
from it) and is hidden (leading dot), so a file browser does not show it while
the run is going.  Side files that GDAL, OGR or the styling step write next to
the temporary file (``.aux.xml``, ``.qml``, ``.gpkg-journal`` ...) follow it.

:func:`refuse_overlap` is the other half of the promise: a run refuses, before
it writes anything, an output that is one of its inputs or another output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from .errors import DLToolsError, OutputError

# Files GDAL derives from a raster: stale once the raster is replaced.
_DERIVED = (".aux.xml", ".ovr", ".msk")
#: A child process's temporary folder (its TMPDIR, core.runner) starts with this: the files in it whose names start
#: with :data:`ANSWER_PREFIX` (Detect Objects' objects) are its answer, the rest (libraries' own temporary files) is
#: removed when the run ends; a failed or killed run takes the whole folder with it.
SCRATCH_PREFIX = "dltools-run-"
ANSWER_PREFIX = "dltools-"


def tidy_scratch(folder: str) -> None:
    """After a run: remove what is not an answer from the child's temporary ``folder``, and the folder once no
    answer is left in it."""
    with contextlib.suppress(OSError):
        entries = os.listdir(folder)
        for name in entries:
            if not name.startswith(ANSWER_PREFIX):
                path = os.path.join(folder, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
        if not any(name.startswith(ANSWER_PREFIX) for name in entries):
            os.rmdir(folder)


def remove_scratch_file(path: str) -> None:
    """Remove a run's temporary file, and its child's temporary folder once no answer is left in it."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    folder = os.path.dirname(path)
    if os.path.basename(folder).startswith(SCRATCH_PREFIX):
        tidy_scratch(folder)


def _stem(path: str) -> str:
    """``/a/b/out.tif`` -> ``out``; ``out.tar.gz``-like names keep all but the last suffix."""
    return os.path.splitext(os.path.basename(path))[0]


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name the same file (through links, relative parts, case on Windows)."""
    a, b = os.fspath(a), os.fspath(b)
    if not a or not b:
        return False
    with contextlib.suppress(OSError):
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _plain_path(value: str | None) -> str | None:
    """The file part of a GDAL/OGR data source string (``out.gpkg|layername=x`` -> ``out.gpkg``)."""
    if not value:
        return None
    value = str(value).split("|", 1)[0]
    if value.startswith(("memory:", "/vsimem/")) or value == "TEMPORARY_OUTPUT":
        return None
    return value


def refuse_overlap(outputs: Mapping[str, str | None], inputs: Mapping[str, str | None]) -> None:
    """Raise :class:`OutputError` when an output is an input, or two outputs are one file.

    Keys are the parameter names the user sees (``OUTPUT``, ``INPUT`` ...); the
    message names both, so the user knows which field to change.
    """
    outs = [(k, p) for k, v in outputs.items() if (p := _plain_path(v))]
    ins = [(k, p) for k, v in inputs.items() if (p := _plain_path(v))]
    for i, (okey, opath) in enumerate(outs):
        for ikey, ipath in ins:
            if same_path(opath, ipath):
                raise OutputError(f"{okey} '{opath}' is the same file as the input {ikey}: "
                                  f"choose another output file, the run never writes over its inputs")
        for okey2, opath2 in outs[i + 1:]:
            if same_path(opath, opath2):
                raise OutputError(f"{okey} and {okey2} are the same file '{opath}': give each output its own file")


def check_output_folder(target: str | os.PathLike[str]) -> str:
    """The folder ``target`` goes in, or :class:`OutputError` saying why nothing can be written there."""
    directory = os.path.dirname(os.path.abspath(os.fspath(target)))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OutputError(f"Output folder '{directory}' is a file, not a folder")
    if not os.path.isdir(directory):
        raise OutputError(f"Output folder '{directory}' does not exist")
    if not os.access(directory, os.W_OK):
        raise OutputError(f"Output folder '{directory}' is not writable")
    return directory


class OutputSet:
    """The files one run writes, each under a temporary name until :meth:`commit`.

    Use it as a context manager: leaving the block normally commits (renames
    every temporary file onto its target), an exception discards them and
    re-raises.  ``path_for(target)`` is what the writer opens instead of the
    target.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str, str]] = []  # (temporary, target, temporary stem)

    def path_for(self, target: str | os.PathLike[str], plain_name: bool = False) -> str:
        """A fresh temporary path beside ``target``, registered for commit/discard.

        ``plain_name``: a name with no dot but the extension's (``out_dltools-1a2b3c4d.gpkg``, not hidden), for
        writers that take everything after the first dot of a file name for its extension (QGIS's
        ``ogr:dbname='…'`` destinations find no driver for ``.out.dltools-1a2b3c4d.gpkg``).
        """
        target = os.fspath(target)
        directory = check_output_folder(target)
        if os.path.isdir(target):
            raise OutputError(f"Output '{target}' is a folder; give a file name")
        ext = os.path.splitext(target)[1]
        token = secrets.token_hex(4)
        tmp_stem = f"{_stem(target).replace('.', '_')}_dltools-{token}" if plain_name else \
            f".{_stem(target)}.dltools-{token}"
        tmp = os.path.join(directory, tmp_stem + ext)
        self._pending.append((tmp, target, tmp_stem))
        if _ANNOUNCE is not None:
            _ANNOUNCE(tmp, tmp_stem)
        return tmp

    def temporary(self, target: str | os.PathLike[str]) -> str | None:
        """The temporary path registered for ``target``, if any."""
        target = os.fspath(target)
        for tmp, tgt, _ in self._pending:
            if tgt == target:
                return tmp
        return None

    def copy_of(self, written: str | os.PathLike[str], target: str | os.PathLike[str]) -> str:
        """``target`` as a copy of the output ``written`` (already written under its temporary name), side files
        (its style, statistics) included, committed or discarded with the rest: one result under two names,
        without producing it twice.  Returns the copy's temporary path."""
        source = next((entry for entry in self._pending if entry[1] == os.fspath(written)), None)
        if source is None or not os.path.exists(source[0]):
            raise OutputError(f"Internal error: the output '{os.fspath(written)}' was not written before its copy")
        tmp, _, stem = source
        copy = self.path_for(target)
        copy_stem = self._pending[-1][2]
        if os.path.splitext(copy)[1] != os.path.splitext(tmp)[1]:
            raise OutputError(f"Internal error: '{os.fspath(target)}' cannot be a copy of '{os.fspath(written)}'")
        try:
            for side in self._side_files(tmp, stem):
                shutil.copyfile(side, Path(os.path.dirname(copy)) / (copy_stem + side.name[len(stem):]))
        except OSError as exc:
            raise OutputError(no_space_message(target, exc) or
                              f"Cannot write the output '{os.fspath(target)}': {exc.strerror or exc}") from exc
        return copy

    @staticmethod
    def _side_files(tmp: str, stem: str) -> list[Path]:
        """The temporary file and every side file written next to it (same hidden, unique stem)."""
        with contextlib.suppress(OSError):
            return [p for p in Path(tmp).parent.iterdir() if p.name.startswith(stem)]
        return []

    def commit(self) -> None:
        """Move every temporary file (and its side files) onto its target."""
        for tmp, target, tmp_stem in self._pending:
            if not os.path.exists(tmp):
                raise OutputError(f"Internal error: the output '{target}' was never written")
            tdir, tstem = os.path.dirname(os.path.abspath(target)), _stem(target)
            provided = set()
            for side in self._side_files(tmp, tmp_stem):
                suffix = side.name[len(Path(tmp).name):] if side.name.startswith(Path(tmp).name) else None
                if suffix is not None:
                    dest = target + suffix
                else:
                    dest = os.path.join(tdir, tstem + side.name[len(tmp_stem):])
                provided.add(dest)
                if side.name == Path(tmp).name:
                    continue
                try:
                    os.replace(side, dest)
                except OSError as exc:
                    raise OutputError(f"Cannot move the finished output into place as '{dest}': {exc}") from exc
            for derived in _DERIVED:
                if target + derived not in provided:
                    with contextlib.suppress(OSError):
                        os.remove(target + derived)
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise OutputError(f"Cannot move the finished output into place as '{target}': {exc}") from exc
        self._pending.clear()

    def discard(self) -> None:
        """Delete every temporary file and its side files; the targets are untouched."""
        for tmp, _target, tmp_stem in self._pending:
            for side in self._side_files(tmp, tmp_stem):
                with contextlib.suppress(OSError):
                    side.unlink()
        self._pending.clear()

    def __enter__(self) -> OutputSet:
        return self

    def _explained(self, exc: BaseException) -> BaseException | None:
        """``exc`` told in terms of the targets: a full disk names the output, temporary names become targets."""
        text = str(exc)
        hit = [(tmp, target) for tmp, target, _ in self._pending if tmp in text]
        if not hit and self._pending and no_space_message("", exc):
            hit = [(self._pending[0][0], self._pending[0][1])]
        if not hit:
            return None
        message = no_space_message(hit[0][1], exc)
        if message:
            return OutputError(message)
        if isinstance(exc, DLToolsError) and type(exc).__init__ in (Exception.__init__, BaseException.__init__):
            for tmp, target in hit:
                text = text.replace(tmp, target)
            return type(exc)(text)
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException as error:
                self.discard()
                better = self._explained(error)
                if better is not None:
                    raise better from error
                raise
        else:
            better = self._explained(exc)
            self.discard()
            if better is not None:
                raise better from exc


#: Told of every temporary path (and its stem) an OutputSet hands out. A child process (core.runner) tells its
#: parent, which removes them if the child is killed or crashes before it could clean up itself.
_ANNOUNCE: Callable[[str, str], None] | None = None


def announce_temporaries(callback: Callable[[str, str], None] | None) -> None:
    """Set (or clear, with None) the process-wide listener for temporary output paths."""
    global _ANNOUNCE
    _ANNOUNCE = callback


def remove_temporaries(paths: list[tuple[str, str]]) -> None:
    """Remove temporary files (and their side files: the same unique stem) that a killed process left behind."""
    for tmp, stem in paths:
        for side in OutputSet._side_files(tmp, stem):
            with contextlib.suppress(OSError):
                side.unlink()


@contextlib.contextmanager
def replacing(target: str | os.PathLike[str]) -> Iterator[str]:
    """One output: ``with replacing(out) as tmp: write(tmp)``; ``out`` changes only if the block succeeds."""
    with OutputSet() as outputs:
        yield outputs.path_for(target)


def no_space_message(target: str | os.PathLike[str], exc: BaseException) -> str | None:
    """The user's message when ``exc`` says the disk is full (ENOSPC, or GDAL's wording of it), else None."""
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in text or "ENOSPC" in text:
        return (f"No space left on device while writing the output '{os.fspath(target)}': free some space or choose "
                "another folder; nothing was written and any earlier file of that name is unchanged")
    return None


def _write_text(outputs: OutputSet, target: str | os.PathLike[str], fill: Callable[[TextIO], None],
                encoding: str) -> None:
    """``fill`` writes one text output into its temporary file of ``outputs`` (flushed to the disk)."""
    tmp = outputs.path_for(target)
    try:
        with open(tmp, "w", encoding=encoding, newline="\n") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(no_space_message(target, exc) or
                          f"Cannot write the output '{os.fspath(target)}': {exc.strerror or exc}") from exc


def write_texts(files: Mapping[str | os.PathLike[str], str], encoding: str = "utf-8") -> None:
    """Write several text outputs together: all of them replace their targets, or none does.  The one atomic
    text writer of the plugin (:func:`write_json_atomic` is it for one JSON document)."""
    with OutputSet() as outputs:
        for target, text in files.items():
            _write_text(outputs, target, lambda fh, text=text: fh.write(text), encoding)


def write_json_atomic(data: Any, target: str | os.PathLike[str], indent: int = 4) -> Path:
    """One JSON document (UTF-8, ``indent``, a final newline) under a temporary name, renamed onto ``target``
    when complete: never a half-written file, and a failure leaves the earlier file as it was."""
    def fill(fh: TextIO) -> None:
        json.dump(data, fh, indent=indent, ensure_ascii=False)
        fh.write("\n")

    with OutputSet() as outputs:
        _write_text(outputs, target, fill, "utf-8")
    return Path(target)


def item_outputs(items: list[str], folder: str, suffix: str = "_classified", ext: str = ".tif") -> list[str]:
    """One output path per item in ``folder``, never the same for two items and never one of the items.

    ``a/x.tif`` and ``b/x.tif`` become ``x_classified.tif`` and ``x_2_classified.tif`` (in item order); a name that
    is an input item (``x_classified.tif`` among the items) is skipped the same way.
    """
    taken: set[str] = set()
    outputs: list[str] = []
    for item in items:
        stem = _stem(item)
        n = 1
        while True:
            name = f"{stem}{'' if n == 1 else f'_{n}'}{suffix}{ext}"
            path = os.path.join(folder, name)
            key = os.path.normcase(os.path.abspath(path))
            if key not in taken and not any(same_path(path, other) for other in items):
                break
            n += 1
        taken.add(key)
        outputs.append(path)
    return outputs


def check_new_folder(target: str | os.PathLike[str], what: str = "OUTPUT_FOLDER") -> str:
    """``target`` as an absolute path when a run may create it: absent, or an empty folder; else OutputError."""
    target = os.path.abspath(os.fspath(target))
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise OutputError(f"{what} '{target}' is a file, not a folder: choose a new folder name")
        if any(os.scandir(target)):
            raise OutputError(f"{what} '{target}' is not empty: choose a new or empty folder (the run never writes "
                              "over or mixes with what is there)")
    existing = os.path.dirname(target)
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise OutputError(f"{what} '{target}' cannot be created: '{existing}' is not a writable folder")
    return target


@contextlib.contextmanager
def replacing_folder(target: str | os.PathLike[str], what: str = "OUTPUT_FOLDER") -> Iterator[str]:
    """A whole output folder: ``with replacing_folder(out) as tmp: write files under tmp``.

    The files go into a hidden temporary folder beside ``out``, renamed onto ``out`` when the block
    succeeds (``out`` absent or empty); a failure or a cancel removes the temporary folder, so no half
    folder is ever left under the chosen name.
    """
    import shutil

    target = check_new_folder(target, what)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.dltools-{secrets.token_hex(4)}")
    os.mkdir(tmp)
    try:
        yield tmp
        check_new_folder(target, what)  # nothing appeared there meanwhile
        if os.path.isdir(target):
            os.rmdir(target)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        message = no_space_message(target, exc)
        if message:
            raise OutputError(message) from exc
        raise

# SPDX-License-Identifier: GPL-2.0-or-later
"""Loading a model's function and the helper modules beside it, each model in isolation.

Python caches imported modules by name in ``sys.modules``: two models whose functions both ``import helper``
from their own folders would share whichever ``helper`` was imported first, and model B would run model A's
code.  So a model's folder is on ``sys.path`` only while its function runs (loading and every call), the
modules it imports from that folder live in :class:`ModelModules`, not in ``sys.modules``, between calls, and a
cached module of the same name as one of the folder's files (another model's, or anything else) is hidden for
the duration of the call.  The function file itself is loaded under a name of its own.

Every file imported from the model's folder is hashed (SHA-256) and named in the log, so the log says exactly
which code ran.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from ..model.function_source import sha256_of

#: sys.modules and sys.path are process-wide: one model's call at a time swaps them.
_LOCK = threading.RLock()


def _file_of(module: ModuleType) -> Path | None:
    name = getattr(module, "__file__", None)
    if not name:
        return None
    try:
        return Path(name).resolve()
    except OSError:
        return None


class ModelModules:
    """The helper modules a model imports from its ``folders`` (the function's folder first)."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = [Path(f).resolve() for f in folders]
        self.own: dict[str, ModuleType] = {}
        self.hashes: dict[Path, str] = {}  # every file imported from the folders -> its SHA-256
        names: set[str] = set()
        for folder in self.folders:
            if folder.is_dir():
                names |= {p.stem for p in folder.glob("*.py")}
                names |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        self.names = names

    def _inside(self, module: ModuleType) -> Path | None:
        path = _file_of(module)
        if path is None:
            return None
        return path if any(folder == path.parent or folder in path.parents for folder in self.folders) else None

    def _shadowed(self, name: str) -> bool:
        return name.split(".")[0] in self.names

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The model's folders on ``sys.path`` and its own modules in ``sys.modules``, for one call."""
        with _LOCK:
            added = [str(f) for f in self.folders if str(f) not in sys.path]
            sys.path[0:0] = added
            hidden = {n: m for n, m in sys.modules.items() if self._shadowed(n) and self.own.get(n) is not m}
            for name in hidden:
                del sys.modules[name]
            sys.modules.update(self.own)
            before = set(sys.modules)
            try:
                yield
            finally:
                for name in set(sys.modules) - before:
                    path = self._inside(sys.modules[name])
                    if path is not None:
                        self.own[name] = sys.modules[name]
                        if path not in self.hashes and path.is_file():
                            self.hashes[path] = sha256_of(path)
                for name in self.own:
                    sys.modules.pop(name, None)
                sys.modules.update(hidden)
                for folder in added:
                    with contextlib.suppress(ValueError):
                        sys.path.remove(folder)

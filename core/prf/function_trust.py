# SPDX-License-Identifier: GPL-2.0-or-later
"""Trust in one model's own Python function, as the dialog offers it for TorchScript files.

A model's ``InferenceFunction`` ``.py`` imports helper modules from its own folder (:mod:`.loading`), so trusting
"this function" means trusting the code of that folder as it is now: the function's *digest* is the SHA-256 of
the names and SHA-256s of every ``.py`` file in the function's folder and its sub-folders. A changed, added or
removed ``.py`` there is a new, untrusted function. The digest joins the user's per-file trusted SHA-256s
(:class:`core.trust.CodeTrust` ``digests``, kept in QGIS settings); a run honours it as it honours
``ALLOW_CUSTOM_CODE``. A folder with more than :data:`MAX_PY_FILES` ``.py`` files has no digest (it is not a
model's folder; allow the run's custom code instead).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..model.definition import ModelDefinition
from ..model.function_source import function_path, sha256_of

MAX_PY_FILES = 500
#: arcgis.learn's standard raster functions (the plugin re-implements what they do, and never runs them).
ARCGIS_LEARN_FUNCTION = re.compile(
    r"ArcGIS(ImageClassifier|ObjectDetector|InstanceDetector|ObjectClassifier|ImageCaptioner|SuperResolution|"
    r"ImageTsClassifier|ImageTranslation|PixelClassifier)\.py$", re.IGNORECASE)


def own_function(md: ModelDefinition) -> Path | None:
    """The model's own function file, which runs only when allowed; None when there is none (or it is one of
    arcgis.learn's standard functions, which the plugin replaces natively and never runs)."""
    path = function_path(md)
    if path is None or not path.is_file():
        return None
    if not md.custom_function and ARCGIS_LEARN_FUNCTION.search(path.name):
        return None
    return path


def function_digest(md: ModelDefinition) -> str | None:
    """The SHA-256 the user trusts the model's function by (see the module text), None without one."""
    path = own_function(md)
    if path is None:
        return None
    folder = path.parent
    try:
        files = sorted(p for p in folder.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)
    except OSError:
        return None
    if len(files) > MAX_PY_FILES:
        return None
    digest = hashlib.sha256(b"dltools model function\n")
    try:
        for file in files:
            digest.update(f"{file.relative_to(folder).as_posix()} {sha256_of(file)}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()


def function_trusted(md: ModelDefinition) -> bool:
    """Whether the user trusted this very function (its digest) in the dialog."""
    trust = md.code_trust
    digests = getattr(trust, "digests", None)
    if not digests:
        return False
    digest = function_digest(md)
    return digest is not None and digest in digests


def function_allowed(md: ModelDefinition, allowed: bool) -> bool:
    """The run's permission (``allowed``: ALLOW_CUSTOM_CODE or the setting) or the user's trust in this function."""
    return bool(allowed) or function_trusted(md)

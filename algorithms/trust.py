# SPDX-License-Identifier: GPL-2.0-or-later
"""Where the user's trust in code-bearing models is kept: QGIS settings, read into core's plain
:class:`~..core.trust.CodeTrust` record.

Three ways to trust, from the widest: the provider setting (every model, Processing > Options > Providers >
Deep Learning Tools), the run's ALLOW_CUSTOM_CODE, and one file by its SHA-256 (offered in the tool's dialog:
"This model contains code. Run it?"). A trusted digest names the file's exact bytes: a changed file is a new,
untrusted program.
"""

from __future__ import annotations

from qgis.core import QgsSettings

from ..core.flags import is_true
from ..core.trust import CodeTrust

#: Processing > Options > Providers > Deep Learning Tools: run every model's own code (off by default).
ALLOW_CUSTOM_CODE_SETTING = "DLTOOLS_ALLOW_CUSTOM_CODE"
#: The SHA-256 digests of the model files the user trusted one by one.
TRUSTED_MODELS_KEY = "DeepLearningTools/trusted_model_sha256"


def custom_code_allowed_by_setting() -> bool:
    """The provider setting, read the way ProcessingConfig stores it (safe from a worker thread)."""
    value = QgsSettings().value(f"Processing/Configuration/{ALLOW_CUSTOM_CODE_SETTING}", False)
    return is_true(str(value))


def trusted_digests() -> frozenset[str]:
    """The SHA-256 digests of the model files trusted one by one."""
    value = QgsSettings().value(TRUSTED_MODELS_KEY, [])
    if isinstance(value, str):
        value = [value] if value else []
    return frozenset(str(v).strip().lower() for v in value or [] if str(v).strip())


def trust_model(sha256: str) -> None:
    """Trust the model file with this SHA-256 from now on (the dialog's "Run it" answer)."""
    digests = set(trusted_digests()) | {sha256.strip().lower()}
    QgsSettings().setValue(TRUSTED_MODELS_KEY, sorted(digests))


def forget_model(sha256: str) -> None:
    """Stop trusting the model file with this SHA-256."""
    digests = set(trusted_digests()) - {sha256.strip().lower()}
    QgsSettings().setValue(TRUSTED_MODELS_KEY, sorted(digests))


def code_trust(allowed_for_run: bool = False) -> CodeTrust:
    """The user's trust for one run: everything when the run or the provider setting allows model code, else the
    files trusted one by one."""
    return CodeTrust(everything=allowed_for_run or custom_code_allowed_by_setting(), digests=trusted_digests())

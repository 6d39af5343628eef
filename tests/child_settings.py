# SPDX-License-Identifier: GPL-2.0-or-later
"""The provider settings of a run's child process, reset around each test of a module that imports the fixture
(``from child_settings import child_defaults, setting``): a child process, 80 % of memory, no limit per call, the
next run's process kept ready."""

from __future__ import annotations

import pytest
from qgis.core import QgsSettings

KEYS = ("DLTOOLS_RUN_IN_CHILD", "DLTOOLS_MEMORY_PERCENT", "DLTOOLS_CALL_SECONDS", "DLTOOLS_KEEP_PROCESS_READY")


@pytest.fixture(autouse=True)
def child_defaults(qgis_app):  # noqa: ANN001, ANN201
    """Each test starts from the defaults and leaves the settings as it found them."""
    settings = QgsSettings()
    saved = {k: settings.value(f"Processing/Configuration/{k}") for k in KEYS}
    for k in KEYS:
        settings.remove(f"Processing/Configuration/{k}")
    yield
    for k, v in saved.items():
        settings.remove(f"Processing/Configuration/{k}") if v is None else \
            settings.setValue(f"Processing/Configuration/{k}", v)


def setting(name: str, value) -> None:  # noqa: ANN001
    """Set one provider setting for the rest of this test."""
    QgsSettings().setValue(f"Processing/Configuration/{name}", value)

# SPDX-License-Identifier: GPL-2.0-or-later
"""The errors of the raster function host (importable from :mod:`.host` too)."""

from __future__ import annotations

from ..errors import BackendError, ModelDefinitionError


class CustomCodeRefusedError(ModelDefinitionError):
    """The model needs its own Python code and running it was not allowed."""


class CustomFunctionError(BackendError):
    """The model's Python function failed or broke the contract."""

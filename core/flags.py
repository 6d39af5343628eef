# SPDX-License-Identifier: GPL-2.0-or-later
"""The one reading of a true/false value, wherever one comes from: an .emd key, a model argument, a raster
function's configuration or parameter, a QGIS setting.

ArcGIS writes booleans as ``True``/``False``, Python functions as ``1``/``0``, people as ``yes``/``no``: any of
them, in any case, means the same everywhere in the plugin.  What a caller does with a value that is none of them
(refuse it naming the key, or take it as false) stays the caller's.
"""

from __future__ import annotations

from typing import Any

TRUE_WORDS = ("true", "1", "t", "y", "yes")
FALSE_WORDS = ("false", "0", "f", "n", "no")


def parse_bool(value: Any) -> bool | None:
    """True or False for a boolean, 0/1 or one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (any case, blanks
    around ignored); None for anything else (an empty text included)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
    return None


def is_true(value: Any) -> bool:
    """Lenient: only a true value (:func:`parse_bool`) is true; anything else, None included, is false."""
    return parse_bool(value) is True

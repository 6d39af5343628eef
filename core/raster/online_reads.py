# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading an online layer's window: retries with back-off on server errors and time-outs, and a clear error.

GDAL's WMS driver fetches the tiles a window needs in parallel (``MaxConnections``), answers 404/204 tiles with
an empty (transparent, so NoData) block and caches what it got on disk; a tile that fails makes the whole read
fail with a message like "Unable to download block 12, 34 ... HTTP status code: 500".  The tiles that did arrive
are in GDAL's caches, so trying the read again asks the server for the failed tiles only.  A server error (5xx)
or a time-out (status 0) is tried again after 0.5, 1 and 2 s; any other status, or the last failure, becomes an
:class:`~core.errors.InputDataError` naming the tile's URL and the HTTP status.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import InputDataError

T = TypeVar("T")
#: Seconds waited before each retry of a read that failed with a 5xx or a time-out.
BACKOFF = (0.5, 1.0, 2.0)

_BLOCK = re.compile(r"Unable to download block (\d+),\s*(\d+)")
_STATUS = re.compile(r"HTTP status code:\s*(\d+)(?:, error:\s*(.*?))?\.?\s*(?:\n|$)")


def is_online(path: str) -> bool:
    """Whether ``path`` is a GDAL description of a web service (GDAL WMS or WMTS XML) rather than a file."""
    text = str(path).lstrip()
    return text.startswith(("<GDAL_WMS", "<GDAL_WMTS", "WMTS:"))


#: The element that carries a run's HTTP options (credentials, headers) inside the description: taken out before
#: GDAL sees the description, so they never reach GDAL's messages, logs or outputs.
_HTTP_ELEMENT = re.compile(r"<DLToolsHttp>([A-Za-z0-9_=-]*)</DLToolsHttp>")


def with_http_options(description: str, options: dict[str, str]) -> str:
    """``description`` carrying GDAL configuration options for its requests (``GDAL_HTTP_USERPWD``,
    ``GDAL_HTTP_HEADERS``): they travel with it (to the run's child process and to Dask workers, which fetch their
    own blocks) and are set, for the reading thread only, around each open and read (:func:`http_options`), so
    QGIS's own requests in the same process never send them."""
    if not options:
        return description
    blob = base64.urlsafe_b64encode(json.dumps(options, sort_keys=True).encode()).decode()
    end = description.rindex("</")
    return f"{description[:end]}<DLToolsHttp>{blob}</DLToolsHttp>{description[end:]}"


def split_http_options(path: str) -> tuple[str, dict[str, str]]:
    """(the description GDAL opens, its HTTP options) of :func:`with_http_options`' text; a file's path as it is."""
    text = str(path)
    found = _HTTP_ELEMENT.search(text) if is_online(text) else None
    if found is None:
        return text, {}
    options = json.loads(base64.urlsafe_b64decode(found.group(1)).decode())
    return text[:found.start()] + text[found.end():], {str(k): str(v) for k, v in options.items()}


@contextlib.contextmanager
def http_options(options: dict[str, str]) -> Iterator[None]:
    """GDAL configuration ``options`` for this thread while the block runs (GDAL's WMS driver reads them in the
    thread that opens or reads: its parallel requests run in that thread too)."""
    if not options:
        yield
        return
    from osgeo import gdal

    before = {key: gdal.GetThreadLocalConfigOption(key, None) for key in options}
    for key, value in options.items():
        gdal.SetThreadLocalConfigOption(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            gdal.SetThreadLocalConfigOption(key, value)


def service_url(description: str) -> str:
    """The service's URL (template) in a GDAL WMS/WMTS description, for messages."""
    for tag in ("ServerUrl", "GetCapabilitiesUrl"):
        found = re.search(rf"<{tag}>(.*?)</{tag}>", description, re.S)
        if found:
            return found.group(1).strip().replace("&amp;", "&")
    return description[:80]


def failed_tile(description: str, message: str) -> tuple[str, int | None, str]:
    """(URL of the tile GDAL could not download, its HTTP status or None, GDAL's error text) from GDAL's message."""
    url = service_url(description)
    block = _BLOCK.search(message)
    level = re.search(r"<TileLevel>(\d+)</TileLevel>", description)
    if block and "${x}" in url:
        url = url.replace("${x}", block.group(1)).replace("${y}", block.group(2))
        url = url.replace("${z}", level.group(1)) if level else url
    elif block:
        url = f"{url} (block {block.group(1)}, {block.group(2)})"
    status = _STATUS.search(message)
    code = int(status.group(1)) if status else None
    error = (status.group(2) or "").strip() if status else message.strip().splitlines()[0]
    return url, code, error


def read_with_retries(read: Callable[[], T], description: str, backoff: tuple[float, ...] = BACKOFF) -> T:
    """``read()`` tried again on 5xx and time-outs (see the module docstring); other failures raise at once."""
    for attempt in range(len(backoff) + 1):
        try:
            return read()
        except RuntimeError as exc:
            url, code, error = failed_tile(description, str(exc))
            transient = code is not None and (code == 0 or code >= 500)
            if transient and attempt < len(backoff):
                time.sleep(backoff[attempt])
                continue
            tries = f" ({attempt + 1} tries)" if attempt else ""
            if code == 0:
                raise InputDataError(f"The online layer did not answer: {url}: {error}{tries}. Check the "
                                     "connection, or try again later") from exc
            if code is not None:
                raise InputDataError(f"The online layer answered HTTP {code} for {url}{tries}: {error}") from exc
            raise InputDataError(f"Cannot read the online layer {url}: {error}") from exc
    raise AssertionError("unreachable")

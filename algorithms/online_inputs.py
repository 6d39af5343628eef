# SPDX-License-Identifier: GPL-2.0-or-later
"""Raster parameters as the engine's inputs: a GDAL file's path, or an online layer's plain description.

A layer of QGIS's ``wms`` provider (XYZ tiles, WMS, WMTS) or ``arcgismapserver`` provider is not read through
QGIS (its provider belongs to the project's thread): its source string is parsed into a
:class:`~core.raster.online.OnlineLayer`, which core/ turns into a GDAL description at the resolution of the
run.  The same source string works as the parameter's value in ``processing.run`` and ``qgis_process``
(``type=xyz&url=...``, with or without QGIS's ``wms://`` prefix).  Other providers keep the refusal that asks
for a GeoTIFF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qgis.core import QgsProcessingException, QgsProcessingParameterRasterLayer

from ..core.raster.online import OnlineLayer, looks_like_online_uri, parse_layer_uri
from .online_auth import with_credentials
from .running import run_engine

ONLINE_PROVIDERS = ("wms", "arcgismapserver")
_PREFIX = "wms://"


@dataclass
class RasterInput:
    """A raster parameter's value: ``path`` of a GDAL raster, or ``online`` layer; ``crs`` the layer's."""

    path: str | None
    online: OnlineLayer | None
    crs: Any  # QgsCoordinateReferenceSystem, or None for a source string
    name: str


def _online_text(value: Any) -> str | None:
    if isinstance(value, str) and looks_like_online_uri(value):
        text = value.strip()
        return text[len(_PREFIX):] if text.startswith(_PREFIX) else text
    return None


def raster_input(alg, parameters: dict[str, Any], name: str, context, what: str) -> RasterInput:  # noqa: ANN001
    """The raster parameter ``name`` (see the module docstring); a clear error for what cannot be read."""
    text = _online_text(parameters.get(name))
    if text is not None:
        online = with_credentials(run_engine(parse_layer_uri, text, "wms", name))
        return RasterInput(None, online, None, f"{online.service.upper()} {urlsplit(online.url).netloc}".strip())
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"The {what} raster layer could not be loaded")
    provider = layer.providerType()
    if provider in ONLINE_PROVIDERS:
        online = with_credentials(run_engine(parse_layer_uri, layer.source(), provider, layer.name()))
        return RasterInput(None, online, layer.crs(), layer.name())
    return RasterInput(alg.gdal_source(layer, what), None, layer.crs(), layer.name())


def with_online_uris_loadable(alg, parameters: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN001
    """``parameters`` with each raster parameter's plain online source string given QGIS's ``wms://`` prefix, so
    QGIS's own parameter check can load it (it tries GDAL for a plain string)."""
    changed = dict(parameters)
    for definition in alg.parameterDefinitions():
        if isinstance(definition, QgsProcessingParameterRasterLayer):
            text = _online_text(parameters.get(definition.name()))
            if text is not None:
                changed[definition.name()] = _PREFIX + text
    return changed


def use_qgis_proxy(url: str, progress) -> None:  # noqa: ANN001
    """QGIS's proxy (Settings > Options > Network) for GDAL's requests, process-wide as QGIS's own GDAL layers get
    it: ``GDAL_HTTP_PROXY`` (and ``GDAL_HTTP_PROXYUSERPWD``), as GDAL options and in the environment (which the
    run's child process and local Dask workers inherit), unless GDAL already has a proxy or ``url`` is one QGIS
    excludes from the proxy.  The system's proxy (QGIS's "Default Proxy") reaches GDAL through the
    environment (``http_proxy``) already."""
    from osgeo import gdal
    from qgis.core import QgsSettings

    settings = QgsSettings()
    if not settings.value("proxy/proxyEnabled", False, type=bool) or gdal.GetConfigOption("GDAL_HTTP_PROXY"):
        return
    kind = str(settings.value("proxy/proxyType", "HttpProxy"))
    host, port = str(settings.value("proxy/proxyHost", "")), str(settings.value("proxy/proxyPort", ""))
    excluded = [u for u in str(settings.value("proxy/proxyExcludedUrls", "") or "").split("|") if u]
    if kind not in ("HttpProxy", "HttpCachingProxy", "Socks5Proxy") or not host or \
            any(url.startswith(u) for u in excluded):
        return
    address = f"{'socks5://' if kind == 'Socks5Proxy' else ''}{host}" + (f":{port}" if port else "")
    options = {"GDAL_HTTP_PROXY": address}
    user = str(settings.value("proxy/proxyUser", "") or "")
    if user:
        options["GDAL_HTTP_PROXYUSERPWD"] = f"{user}:{settings.value('proxy/proxyPassword', '')}"
    for key, value in options.items():  # the environment too: the run's child process and Dask workers read it
        gdal.SetConfigOption(key, value)
        os.environ[key] = value
    progress.info(f"Requests go through QGIS's proxy {address}")

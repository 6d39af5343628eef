# SPDX-License-Identifier: GPL-2.0-or-later
"""QGIS's side of the private library folder: where the profile keeps it, and QGIS's proxy for pip."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from qgis.core import QgsApplication, QgsSettings

from ..core.flags import is_true
from ..core.installer.folder import activate, libs_root, version_folder

#: QGIS proxy types pip can use (Settings › Options › Network); "DefaultProxy" is the system's, which pip reads
#: from the environment (HTTP_PROXY/HTTPS_PROXY) itself.
_HTTP_PROXY_TYPES = ("HttpProxy", "HttpCachingProxy")


def private_base() -> Path:
    """``<QGIS settings folder>/python/dltools-libs/py3.X`` (or under ``$DLTOOLS_LIBS_DIR``)."""
    return version_folder(libs_root(QgsApplication.qgisSettingsDirPath()))


def activate_private_libraries() -> Path | None:
    """Put the plugin's libraries on ``sys.path``; never fails the plugin's start (None then)."""
    try:
        return activate(private_base())
    except (OSError, ValueError):
        return None


def qgis_proxy_url(settings: QgsSettings | None = None) -> tuple[str, str]:
    """(proxy URL for pip, a note for the log) from QGIS's network settings; ("", note) when none applies."""
    settings = settings or QgsSettings()
    if not is_true(str(settings.value("proxy/proxyEnabled", False))):
        return "", ""
    kind = str(settings.value("proxy/proxyType", "DefaultProxy"))
    if kind not in _HTTP_PROXY_TYPES:
        return "", (f"QGIS's proxy type {kind} is not passed to pip (pip takes HTTP proxies); the system's proxy "
                    "variables (HTTP_PROXY, HTTPS_PROXY) still apply")
    host = str(settings.value("proxy/proxyHost", "")).strip()
    if not host:
        return "", "QGIS's proxy is enabled without a host: not used"
    port = str(settings.value("proxy/proxyPort", "")).strip()
    user = str(settings.value("proxy/proxyUser", "") or "")
    password = str(settings.value("proxy/proxyPassword", "") or "")
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    url = f"http://{auth}{host}{':' + port if port else ''}"
    shown = f"http://{user + ':***@' if user else ''}{host}{':' + port if port else ''}"
    return url, f"pip uses QGIS's proxy {shown}"

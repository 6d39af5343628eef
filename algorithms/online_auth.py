# SPDX-License-Identifier: GPL-2.0-or-later
"""An online layer's QGIS authentication configuration (``authcfg=``) as what GDAL can send.

QGIS keeps a connection's credentials in its authentication database, encrypted with the master password; a
layer's source names only the configuration's id.  GDAL cannot read that database, so the algorithm layer reads
the configuration here and hands GDAL its user name and password (basic authentication, the only method GDAL's
WMS driver can take).  Any other method (certificates, OAuth2, an Esri token) is refused, naming the
configuration and its method.  The credentials travel beside the GDAL description (core.raster.online_reads),
never in a log line or an output.
"""

from __future__ import annotations

from dataclasses import replace

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsProcessingException

from ..core.raster.online import OnlineLayer


def with_credentials(layer: OnlineLayer) -> OnlineLayer:
    """``layer`` with its ``authcfg`` resolved into a user name and password; a clear refusal otherwise."""
    if not layer.authcfg:
        return layer
    what = f"The online layer '{layer.name or layer.url}' uses the QGIS authentication configuration {layer.authcfg}"
    manager = QgsApplication.authManager()
    if manager is None or manager.isDisabled():
        reason = manager.disabledMessage() if manager is not None else "no authentication manager"
        raise QgsProcessingException(f"{what}, but QGIS's authentication system is not available: {reason}")
    if layer.authcfg not in manager.availableAuthMethodConfigs():
        raise QgsProcessingException(f"{what}, which this QGIS profile's authentication database does not hold "
                                     "(Settings > Options > Authentication)")
    ok, config = manager.loadAuthenticationConfig(layer.authcfg, QgsAuthMethodConfig(), True)
    if not ok:
        raise QgsProcessingException(f"{what}, which cannot be read: the master password was not given or is "
                                     "wrong")
    method = config.method()
    if method != "Basic":
        raise QgsProcessingException(
            f"{what}, of the method '{method}', which GDAL cannot send: only Basic authentication (a user name and "
            "password) can be used for an online layer; save the layer as a GeoTIFF first")
    return replace(layer, username=config.config("username"), password=config.config("password"), authcfg="")

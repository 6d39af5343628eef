# SPDX-License-Identifier: GPL-2.0-or-later
"""Online layers behind authentication, against the tests' map server (tests/tile_server.py) on 127.0.0.1:

* a server that requires basic authentication (401 without it), reached through a QGIS authentication
  configuration (``authcfg=``) of the Basic method stored in a real QGIS authentication database (the session's
  own, QGIS_AUTH_DB_DIR_PATH set in conftest.py, with a master password set here), in the child process, in
  QGIS's process and on a local Dask cluster; the password appears in no log line, output or cached tile;
* a server that requires a header (403 without it), sent from the layer's ``http-header:NAME=value`` key, and the
  ``referer=`` key sent as the Referer;
* other authentication methods, and an id the database does not hold, refused by name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import read_raster
from recording_feedback import RecordingFeedback

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_online_layers as online  # noqa: E402
from test_online_layers import RES, classify, extent_text  # noqa: E402

scene, server = online.scene, online.server  # the same scene and map server fixtures

USER, PASSWORD = "ann", "tile-s3cret-Pw"
MASTER = "the-tests-master-password"


def _store(method: str, **values: str) -> str:
    """A configuration of ``method`` stored in QGIS's authentication database; its id."""
    from qgis.core import QgsApplication, QgsAuthMethodConfig

    manager = QgsApplication.authManager()
    assert manager.setMasterPassword(MASTER, True)
    config = QgsAuthMethodConfig(method)
    config.setName(f"test {method}")
    for key, value in values.items():
        config.setConfig(key, value)
    ok, config = manager.storeAuthenticationConfig(config)
    assert ok and config.id()
    return config.id()


def _all_text(feedback: RecordingFeedback) -> str:
    return "\n".join(feedback.infos + feedback.errors + [feedback.textLog()])


@pytest.mark.parametrize("where", ["child", "in-process", "dask"])
def test_basic_authentication_from_a_qgis_auth_configuration(context, scene, server, tmp_path, monkeypatch, where):
    from qgis.core import QgsProcessingException

    extra = {}
    if where == "in-process":
        monkeypatch.setenv("DLTOOLS_IN_PROCESS", "1")
    elif where == "dask":
        pytest.importorskip("distributed", reason="dask[distributed] is not installed")
        extra = {"SCHEDULER": "local:1", "RETRIES": 0}
    server.basic_auth = (USER, PASSWORD)
    ref, got = tmp_path / "ref.tif", tmp_path / "authed.tif"
    classify(context, scene["tif"], ref, MODEL=scene["emd"])
    with pytest.raises(QgsProcessingException, match=rf"answered HTTP 401 for {server.url}/xyz/17/"):
        classify(context, server.uri, tmp_path / "refused.tif", MODEL=scene["emd"], EXTENT=extent_text(),
                 CELL_SIZE=RES, **extra)
    assert not (tmp_path / "refused.tif").exists()
    server.requests.clear()
    server.headers.clear()
    auth_id = _store("Basic", username=USER, password=PASSWORD, realm="")
    feedback = classify(context, f"{server.uri}&authcfg={auth_id}", got, RecordingFeedback(), MODEL=scene["emd"],
                        EXTENT=extent_text(), CELL_SIZE=RES, **extra)
    assert np.array_equal(read_raster(got), read_raster(ref))
    tiles = [h for r, h in zip(server.requests, server.headers) if r.endswith(".png")]
    assert len(tiles) == 9 and all(h.get("Authorization", "").startswith("Basic ") for h in tiles)
    # the password is in no log line, no output and no cached tile
    assert PASSWORD not in _all_text(feedback)
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_other_authentication_methods_are_refused_naming_the_configuration(context, scene, server, tmp_path):
    from qgis.core import QgsProcessingException

    cert = _store("Identity-Cert", certid="abc")
    token = _store("EsriToken", token="t0ken")
    for auth_id, method in ((cert, "Identity-Cert"), (token, "EsriToken")):
        with pytest.raises(QgsProcessingException,
                           match=rf"authentication configuration {auth_id}, of the method '{method}', which GDAL "
                                 "cannot send"):
            classify(context, f"{server.uri}&authcfg={auth_id}", tmp_path / "no.tif", MODEL=scene["emd"],
                     EXTENT=extent_text(), CELL_SIZE=RES)
    with pytest.raises(QgsProcessingException, match="configuration zz99zz9, which this QGIS profile's"):
        classify(context, f"{server.uri}&authcfg=zz99zz9", tmp_path / "no.tif", MODEL=scene["emd"],
                 EXTENT=extent_text(), CELL_SIZE=RES)
    assert server.tile_requests() == [] and not (tmp_path / "no.tif").exists()


def test_a_required_header_and_the_referer_from_the_layers_connection(context, scene, server, tmp_path):
    """XYZ tiles from a server that answers 403 without the header; the header's value holds a comma (GDAL's
    list of headers is quoted). (QGIS 3.22's own wms provider does not know ``http-header:`` keys, so a WMTS
    with one cannot be loaded by QGIS: tests/core/test_online_layers.py reads one through the engine.)"""
    from qgis.core import QgsProcessingException

    server.required_header = ("X-Api-Key", "key, with a comma")
    ref, got = tmp_path / "ref.tif", tmp_path / "header.tif"
    classify(context, scene["tif"], ref, MODEL=scene["emd"])
    with pytest.raises(QgsProcessingException, match=rf"answered HTTP 403 for {server.url}/xyz/17/"):
        classify(context, server.uri, tmp_path / "refused.tif", MODEL=scene["emd"], EXTENT=extent_text(),
                 CELL_SIZE=RES)
    server.requests.clear()
    server.headers.clear()
    uri = f"{server.uri}&http-header:X-Api-Key=key,%20with%20a%20comma&referer=http://maps.example.test/"
    classify(context, uri, got, MODEL=scene["emd"], EXTENT=extent_text(), CELL_SIZE=RES)
    assert np.array_equal(read_raster(got), read_raster(ref))
    tiles = [h for r, h in zip(server.requests, server.headers) if r.endswith(".png")]
    assert len(tiles) == 9
    assert all(h.get("X-Api-Key") == "key, with a comma" and h.get("Referer") == "http://maps.example.test/"
               for h in tiles)


def test_qgis_process_reads_the_auth_configuration_with_the_master_password_file(context, scene, server, tmp_path,
                                                                                   monkeypatch):
    """qgis_process asks no one for the master password: QGIS reads it from ``QGIS_AUTH_PASSWORD_FILE`` (as QGIS
    Server does), and the plugin then sends the configuration's user name and password."""
    if not online.qgis_process_util.available():
        pytest.skip("qgis_process is not installed")
    qgis_process_util = online.qgis_process_util
    server.basic_auth = (USER, PASSWORD)
    auth_id = _store("Basic", username=USER, password=PASSWORD, realm="")
    params = {"INPUT": f"{server.uri}&authcfg={auth_id}", "MODEL": scene["emd"], "EXTENT": extent_text(),
              "CELL_SIZE": repr(RES), "OUTPUT": str(tmp_path / "locked.tif")}
    # without the master password QGIS cannot open its database: the run stops, naming the configuration
    message = qgis_process_util.qgis_process_failure("dltools:classifypixels", params, tmp_path)
    assert f"configuration {auth_id}, which cannot be read: the master password was not given" in message
    assert PASSWORD not in message
    assert not (tmp_path / "locked.tif").exists() and server.tile_requests() == []
    password_file = tmp_path / "master.txt"
    password_file.write_text(MASTER, encoding="utf-8")
    monkeypatch.setenv("QGIS_AUTH_PASSWORD_FILE", str(password_file))
    out = tmp_path / "cli.tif"
    answer = qgis_process_util.qgis_process_json("dltools:classifypixels", dict(params, OUTPUT=str(out)), tmp_path)
    assert answer["results"]["OUTPUT"] == str(out)
    ref = tmp_path / "ref.tif"
    from dltools.core.model.loader import load_model_definition
    from dltools.core.tools.classify_pixels.pipeline import classify_pixels

    classify_pixels(scene["tif"], load_model_definition(scene["emd"]), str(ref), "")
    assert np.array_equal(read_raster(out), read_raster(ref))
    tiles = [h for r, h in zip(server.requests, server.headers) if r.endswith(".png")]
    assert len(tiles) == 9 and all(h.get("Authorization", "").startswith("Basic ") for h in tiles)
    assert PASSWORD not in json.dumps(answer)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Install and Check Inference Libraries through processing.run and a Graphical Modeler model (.model3); QGIS's
proxy settings as pip gets them. (The real installs run in qgis_process: tests/qgis/test_installer_qgis_process.py.)
"""

from __future__ import annotations

import json

import pytest
from installer_helpers import closed_port, isolate_pip
from qgis.core import QgsProcessingException, QgsSettings
from recording_feedback import RecordingFeedback


def test_an_unreachable_index_through_processing_run(context, tmp_path, monkeypatch):
    import processing

    isolate_pip(monkeypatch)
    monkeypatch.setenv("DLTOOLS_LIBS_DIR", str(tmp_path / "libs"))
    url = f"http://127.0.0.1:{closed_port()}/simple"
    with pytest.raises(QgsProcessingException) as e:
        # the GPU build: not in the test environment, so pip must ask the index
        processing.run("dltools:installlibraries", {"LIBRARY": 1, "INDEX_URL": url}, context=context,
                       feedback=RecordingFeedback())
    assert str(e.value).startswith(f"Cannot reach the package index {url}: check the network connection and QGIS's "
                                   "proxy settings (Settings › Options › Network), give a mirror as INDEX_URL, or, "
                                   "offline, install from a folder of wheel files (WHEELS)")
    assert [p.name for p in (tmp_path / "libs").iterdir()] == []  # nothing half-installed


def test_check_libraries_in_a_model3(context, tmp_path):
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
    )

    model = QgsProcessingModelAlgorithm("check libraries", "dltools tests")
    child = QgsProcessingModelChildAlgorithm("dltools:checklibraries")
    child.setChildId("check")
    child.addParameterSources("OUTPUT_JSON", [QgsProcessingModelChildParameterSource.fromStaticValue(
        str(tmp_path / "check.json"))])
    out = QgsProcessingModelOutput("report")
    out.setChildId("check")
    out.setChildOutputName("OUTPUT_JSON")
    child.setModelOutputs({"report": out})
    model.addChildAlgorithm(child)
    path = tmp_path / "check.model3"
    assert model.toFile(str(path))
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    name = next(p.name() for p in loaded.destinationParameterDefinitions())
    processing.run(loaded, {name: str(tmp_path / "check.json")}, context=context, feedback=RecordingFeedback())
    report = json.loads((tmp_path / "check.json").read_text())
    rows = {row["library"]: row for row in report["libraries"]}
    import numpy
    import onnxruntime

    assert rows["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in rows["onnxruntime"]["devices"]
    assert rows["numpy"]["version"] == numpy.__version__ and rows["numpy"]["source"] == "QGIS's Python"
    assert set(rows) == {"onnxruntime", "torch", "torchvision", "dask", "distributed", "numpy"}
    import torch

    assert rows["torch"]["version"] == torch.__version__
    if torch.cuda.is_available():
        assert rows["torch"]["devices"].startswith("CUDA: 0: " + torch.cuda.get_device_name(0))
    else:
        assert rows["torch"]["devices"] == "CPU (torch.cuda sees no GPU)"


@pytest.fixture
def proxy_settings(qgis_app):
    settings = QgsSettings()
    keys = ("proxy/proxyEnabled", "proxy/proxyType", "proxy/proxyHost", "proxy/proxyPort", "proxy/proxyUser",
            "proxy/proxyPassword")
    saved = {k: settings.value(k) for k in keys if settings.contains(k)}
    yield settings
    for k in keys:
        settings.remove(k)
    for k, v in saved.items():
        settings.setValue(k, v)


def test_qgis_proxy_settings_become_pip_proxy(proxy_settings):
    from dltools.algorithms.libraries import qgis_proxy_url

    s = proxy_settings
    s.setValue("proxy/proxyEnabled", False)
    assert qgis_proxy_url(s) == ("", "")
    s.setValue("proxy/proxyEnabled", True)
    s.setValue("proxy/proxyType", "HttpProxy")
    s.setValue("proxy/proxyHost", "proxy.example.org")
    s.setValue("proxy/proxyPort", "3128")
    assert qgis_proxy_url(s) == ("http://proxy.example.org:3128", "pip uses QGIS's proxy http://proxy.example.org:3128")
    s.setValue("proxy/proxyUser", "ana maria")
    s.setValue("proxy/proxyPassword", "p@ss:word")
    url, note = qgis_proxy_url(s)
    assert url == "http://ana%20maria:p%40ss%3Aword@proxy.example.org:3128"
    assert "p@ss" not in note and note.endswith("http://ana maria:***@proxy.example.org:3128")
    s.setValue("proxy/proxyType", "Socks5Proxy")
    url, note = qgis_proxy_url(s)
    assert url == "" and note.startswith("QGIS's proxy type Socks5Proxy is not passed to pip")


def test_a_library_qgis_already_has_is_left_where_it_is(context, tmp_path, monkeypatch):
    """This test's Python has onnxruntime: offline (an empty wheel folder) the install succeeds, adds nothing and
    says so."""
    import processing

    isolate_pip(monkeypatch)
    monkeypatch.setenv("DLTOOLS_LIBS_DIR", str(tmp_path / "libs"))
    (tmp_path / "wheels").mkdir()
    feedback = RecordingFeedback()
    result = processing.run("dltools:installlibraries", {"LIBRARY": 0, "WHEELS": str(tmp_path / "wheels")},
                            context=context, feedback=feedback)
    assert result["INSTALLED"] == ""
    log = "\n".join(feedback.infos)
    assert "ONNX Runtime for the CPU: QGIS's Python already has it, so pip added nothing" in log
    assert any("Requirement already satisfied: onnxruntime" in line for line in log.splitlines())

# SPDX-License-Identifier: GPL-2.0-or-later
"""The Processing provider: registered the way QGIS loads the plugin, removable and re-addable."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from qgis.core import QgsApplication

ROOT = Path(__file__).resolve().parents[2]


def _session_plugin():
    """The plugin instance tests/conftest.py's qgis_app fixture created and registered."""
    for module in list(sys.modules.values()):
        state = getattr(module, "_QGIS", None)
        if isinstance(state, dict) and "plugin" in state:
            return state["plugin"]
    raise AssertionError("the qgis_app fixture's plugin instance was not found")


def test_provider_is_registered(qgis_app):
    provider = QgsApplication.processingRegistry().providerById("dltools")
    assert provider is not None
    assert provider.id() == "dltools"
    assert provider.name() == "Deep Learning Tools"
    version = next(line.split("=", 1)[1].strip() for line in (ROOT / "metadata.txt").read_text().splitlines()
                   if line.startswith("version="))
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert provider.longName() == f"Deep Learning Tools {version}"
    assert provider.versionInfo() == version
    assert not provider.icon().isNull()
    assert Path(provider.svgIconPath()).resolve() == ROOT / "resources" / "icons" / "dltools.svg"
    assert Path(provider.svgIconPath()).is_file()


def test_describe_model_is_in_the_provider(qgis_app):
    alg = QgsApplication.processingRegistry().algorithmById("dltools:describemodel")
    assert alg is not None
    assert (alg.name(), alg.displayName(), alg.group(), alg.groupId()) == (
        "describemodel", "Describe Model", "", "")
    assert not alg.icon().isNull()
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == ["MODEL", "ARGUMENTS", "DEVICE", "GPU_ID", "OUTPUT_HTML", "OUTPUT_JSON"]
    for param in alg.parameterDefinitions():
        assert param.help().strip(), f"parameter {param.name()} has no help text"
    assert sorted(o.name() for o in alg.outputDefinitions()) == ["OUTPUT_HTML", "OUTPUT_JSON"]
    assert alg.shortHelpString().startswith("Reports what Deep Learning Tools reads from a model")


def test_every_algorithm_has_help_for_every_parameter(qgis_app):
    provider = QgsApplication.processingRegistry().providerById("dltools")
    algorithms = provider.algorithms()
    assert "dltools:describemodel" in [a.id() for a in algorithms]
    for alg in algorithms:
        for param in alg.parameterDefinitions():
            assert param.help().strip(), f"{alg.id()} parameter {param.name()} has no help text"


def test_unload_removes_the_provider_and_it_can_come_back(qgis_app):
    import dltools

    registry = QgsApplication.processingRegistry()
    plugin = _session_plugin()
    assert registry.providerById("dltools") is plugin.provider
    try:
        plugin.unload()
        assert plugin.provider is None
        assert registry.providerById("dltools") is None
        assert registry.algorithmById("dltools:describemodel") is None
        plugin.unload()  # a second unload is harmless
        plugin.initProcessing()
        plugin.initProcessing()  # idempotent: one provider only
        assert registry.providerById("dltools") is plugin.provider
        assert [p.id() for p in registry.providers()].count("dltools") == 1
        assert registry.algorithmById("dltools:describemodel") is not None

        # "reload plugin": the old instance unloads, a new one registers
        plugin.unload()
        fresh = dltools.classFactory(None)
        fresh.initGui()  # the GUI path registers the provider too
        assert registry.providerById("dltools") is fresh.provider
        fresh.unload()
        assert registry.providerById("dltools") is None
    finally:
        if registry.providerById("dltools") is None:
            plugin.initProcessing()
    assert registry.providerById("dltools") is plugin.provider
    assert registry.algorithmById("dltools:describemodel") is not None


def test_the_provider_lists_every_tool_by_hand(qgis_app):
    """The public ids, exactly: a tool that disappears from the toolbox breaks saved models and scripts."""
    provider = QgsApplication.processingRegistry().providerById("dltools")
    assert sorted(a.name() for a in provider.algorithms()) == sorted([
        "checklibraries", "classifyobjects", "classifypixels", "computeaccuracyobjectdetection",
        "computeaccuracypixelclassification", "describemodel", "detectchange", "detectobjects",
        "exporttrainingdata", "extractpackage", "installlibraries", "modeltoecd", "nonmaximumsuppression",
        "packagemodel", "trainmodel"])


def test_a_broken_tool_fails_loudly(tmp_path):
    """A tool module that cannot be imported stops the provider with its error (it used to be skipped silently)."""
    import shutil
    import subprocess

    plugin = tmp_path / "dltools"
    shutil.copytree(ROOT, plugin, ignore=shutil.ignore_patterns(".venv", ".git", "build", "tests", "__pycache__"))
    broken = plugin / "algorithms" / "detect_objects.py"
    broken.write_text(broken.read_text() + "\nraise ImportError('a broken tool for this test')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from qgis.core import QgsApplication; "
            "app = QgsApplication([], False); app.initQgis(); import dltools.algorithms.provider as p; "
            "print([a.name() for a in p.algorithms()])")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode != 0, run.stdout
    assert "a broken tool for this test" in run.stderr

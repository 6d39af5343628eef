# SPDX-License-Identifier: GPL-2.0-or-later
"""The translations scaffold: ``make translations`` collects the tr() strings with pylupdate5 and compiles the
translators' .ts files with lrelease, and the plugin shows a .qm's strings when QGIS runs in its locale."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _messages(ts: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(ts).getroot()
    assert root.tag == "TS"
    return {(ctx.findtext("name"), msg.findtext("source")): msg.find("translation")
            for ctx in root.iter("context") for msg in ctx.iter("message")}


def _make_translations(i18n: Path) -> None:
    for tool in ("pylupdate5", "lrelease"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make install brings pyqt5-dev-tools and qttools5-dev-tools)")
    if not (ROOT / ".git").exists():
        pytest.skip("make translations lists the sources with git; this is not a git checkout")
    proc = subprocess.run(["make", "-s", "translations", f"I18N_DIR={i18n}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr


def test_the_committed_template_holds_the_tool_names():
    messages = _messages(ROOT / "i18n" / "dltools_en.ts")
    assert ("ClassifyPixelsAlgorithm", "Classify Pixels Using Deep Learning") in messages
    assert ("DLToolsAlgorithm", "Model definition") in messages


@pytest.fixture(scope="module")
def i18n_xx(tmp_path_factory):
    """A translation into the made-up locale "xx" built the way a translator would: copy the template, translate,
    run make translations."""
    i18n = tmp_path_factory.mktemp("i18n")
    _make_translations(i18n)
    template = i18n / "dltools_en.ts"
    messages = _messages(template)
    assert ("ClassifyPixelsAlgorithm", "Classify Pixels Using Deep Learning") in messages
    assert ("DLToolsAlgorithm", "Model definition") in messages  # strings of the shared base class
    assert ("DetectChangeAlgorithm", "Detect Change Using Deep Learning") in messages
    assert all(t is not None and not (t.text or "") for t in messages.values())  # English: nothing translated
    assert not list(i18n.glob("*.qm"))  # English needs no .qm

    tree = ET.parse(template)
    wanted = {("ClassifyPixelsAlgorithm", "Classify Pixels Using Deep Learning"): "Pixel klassifizieren XX",
              ("DLToolsAlgorithm", "Model definition"): "Modelldefinition XX"}
    for ctx in tree.getroot().iter("context"):
        for msg in ctx.iter("message"):
            key = (ctx.findtext("name"), msg.findtext("source"))
            if key in wanted:
                translation = msg.find("translation")
                translation.text = wanted[key]
                translation.attrib.pop("type", None)
    tree.write(i18n / "dltools_xx.ts", encoding="utf-8", xml_declaration=True)
    _make_translations(i18n)  # updates dltools_xx.ts from the sources, keeping the translations, and compiles it
    kept = _messages(i18n / "dltools_xx.ts")
    assert kept[("DLToolsAlgorithm", "Model definition")].text == "Modelldefinition XX"
    assert (i18n / "dltools_xx.qm").stat().st_size > 0
    return i18n


def test_a_qm_for_the_locale_translates_the_tools(qgis_app, i18n_xx):
    import dltools.plugin as plugin_module
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("dltools:classifypixels")
    assert alg.displayName() == "Classify Pixels Using Deep Learning"
    translator = plugin_module.install_translator(i18n_xx, "xx_YY")  # falls back to the language alone
    assert translator is not None
    try:
        assert alg.displayName() == "Pixel klassifizieren XX"
        # filed under the base class, found through it (the toolbox has no group level, so a parameter name)
        assert alg.create().parameterDefinition("MODEL").description() == "Modelldefinition XX"
        assert alg.createInstance().displayName() == "Pixel klassifizieren XX"
        # the help page is the English README: Help still opens the tool's section
        assert alg.helpUrl().endswith("#classify-pixels-using-deep-learning")
    finally:
        from qgis.PyQt.QtCore import QCoreApplication

        QCoreApplication.removeTranslator(translator)
    assert alg.displayName() == "Classify Pixels Using Deep Learning"


def test_the_plugin_loads_the_qm_of_the_qgis_locale_and_removes_it(qgis_app, i18n_xx, monkeypatch):
    import dltools.plugin as plugin_module
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("dltools:detectchange")
    monkeypatch.setattr(plugin_module, "I18N_DIR", i18n_xx)
    monkeypatch.setattr(plugin_module, "qgis_locale", lambda: "xx")
    plugin = plugin_module.DeepLearningToolsPlugin(None)  # iface=None, as qgis_process creates it
    try:
        assert plugin.translator is not None
        assert alg.create().parameterDefinition("MODEL").description() == "Modelldefinition XX"
    finally:
        plugin.unload()
    assert plugin.translator is None and alg.create().parameterDefinition("MODEL").description() == "Model definition"


def test_no_qm_means_english_and_no_error(qgis_app, tmp_path, monkeypatch):
    import dltools.plugin as plugin_module

    assert plugin_module.translation_file(tmp_path, "de_DE") is None
    (tmp_path / "dltools_de.qm").write_bytes(b"not a qm file")
    assert plugin_module.translation_file(tmp_path, "de_DE") == tmp_path / "dltools_de.qm"
    assert plugin_module.install_translator(tmp_path, "de_DE") is None  # unreadable: logged, English stays
    monkeypatch.setattr(plugin_module, "I18N_DIR", tmp_path / "absent")
    plugin = plugin_module.DeepLearningToolsPlugin(None)
    assert plugin.translator is None
    plugin.unload()

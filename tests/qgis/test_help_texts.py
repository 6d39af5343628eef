# SPDX-License-Identifier: GPL-2.0-or-later
"""Every tool explains itself: a short help text, and help on every parameter (shown in the dialog)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPECTED = {"classifypixels", "classifyobjects", "detectchange", "describemodel", "modeltoecd", "packagemodel",
            "extractpackage", "detectobjects", "nonmaximumsuppression"}


@pytest.fixture(scope="module")
def algorithms(qgis_app):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("dltools")
    assert provider is not None
    return {alg.name(): alg for alg in provider.algorithms()}


def test_every_tool_is_registered(algorithms):
    assert set(algorithms) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tool_and_parameters_have_help(algorithms, name):
    alg = algorithms[name]
    assert len(alg.shortHelpString()) > 80, name
    assert alg.group() == "" and alg.groupId() == ""  # directly under "Deep Learning Tools" in the toolbox
    url = alg.helpUrl()
    from urllib.parse import unquote, urlparse

    page = Path(unquote(urlparse(url).path))
    assert url.startswith("file://") and page.is_file(), f"{name}: Help opens {url!r}"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = alg.HELP_SECTION or alg.displayName()
    if f"\n## {section}\n" in readme:  # a tool with its own README section opens there
        assert "#" in url and f'id="{urlparse(url).fragment}"' in page.read_text(encoding="utf-8"), url
    for param in alg.parameterDefinitions():
        assert param.help().strip(), f"{name}: parameter {param.name()} has no help text"
        assert param.name() == param.name().upper(), f"{name}: parameter id {param.name()} is not UPPER_CASE"

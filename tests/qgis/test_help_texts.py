# SPDX-License-Identifier: GPL-2.0-or-later
"""Every tool explains itself: a short help text, and help on every parameter (shown in the dialog)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPECTED = {"classifypixels", "classifyobjects", "detectchange", "describemodel", "modeltoecd", "packagemodel",
            "extractpackage", "detectobjects", "nonmaximumsuppression", "exporttrainingdata", "installlibraries",
            "checklibraries", "computeaccuracyobjectdetection", "computeaccuracypixelclassification",
            "trainmodel"}


#: Each tool's README section (its Help button opens the local help page there) and that heading's anchor,
#: spelled out as GitHub writes it, so a renamed heading or a wrong slug fails here.
SECTIONS = {
    "classifypixels": ("Classify Pixels Using Deep Learning", "classify-pixels-using-deep-learning"),
    "classifyobjects": ("Classify Objects Using Deep Learning", "classify-objects-using-deep-learning"),
    "detectchange": ("Detect Change Using Deep Learning", "detect-change-using-deep-learning"),
    "detectobjects": ("Detect Objects Using Deep Learning", "detect-objects-using-deep-learning"),
    "nonmaximumsuppression": ("Non Maximum Suppression", "non-maximum-suppression"),
    "describemodel": ("Describe Model", "describe-model"),
    "modeltoecd": ("Deep Learning Model To Ecd (legacy)", "deep-learning-model-to-ecd-legacy"),
    "packagemodel": ("Deep learning packages", "deep-learning-packages"),
    "extractpackage": ("Deep learning packages", "deep-learning-packages"),
    "exporttrainingdata": ("Export Training Data For Deep Learning", "export-training-data-for-deep-learning"),
    "installlibraries": ("Install Inference Libraries", "install-inference-libraries"),
    "checklibraries": ("Check Inference Libraries", "check-inference-libraries"),
    "computeaccuracyobjectdetection": ("Compute Accuracy For Object Detection", "compute-accuracy-for-object-detection"),
    "computeaccuracypixelclassification": ("Compute Accuracy For Pixel Classification",
                                           "compute-accuracy-for-pixel-classification"),
    "trainmodel": ("Train Deep Learning Model", "train-deep-learning-model"),
}


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
    heading, anchor = SECTIONS[name]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in readme, f"{name}: the README has no section '## {heading}'"
    assert urlparse(url).fragment == anchor, f"{name}: Help opens {url!r}, not the section '{heading}'"
    assert f'<h2 id="{anchor}">' in page.read_text(encoding="utf-8"), f"{name}: the help page has no #{anchor}"
    for param in alg.parameterDefinitions():
        assert param.help().strip(), f"{name}: parameter {param.name()} has no help text"
        assert param.name() == param.name().upper(), f"{name}: parameter id {param.name()} is not UPPER_CASE"


def test_the_manuals_gui_lines_name_what_the_toolbox_shows(algorithms):
    """Each "**GUI:** Processing Toolbox › …" line of the README and docs/ names the provider and then a tool's
    display name: the tools sit directly under "Deep Learning Tools" (no "Deep learning" group any more)."""
    import re

    root = Path(__file__).resolve().parents[2]
    names = {alg.displayName() for alg in algorithms.values()}
    seen = 0
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for path in re.findall(r"\*\*GUI:\*\* Processing Toolbox › ([^\n]*?)\*([^*]+)\*", doc.read_text("utf-8")):
            assert path == ("Deep Learning Tools › ", path[1]) and path[1] in names, (doc.name, path)
            seen += 1
    assert seen >= 4

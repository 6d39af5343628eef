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


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 4)
    return text[start:end if end > 0 else len(text)]


def _table_rows(text: str) -> list[tuple[list[str], str, str]]:
    """(ids, second cell, whole row) of every table row that starts with backquoted UPPER_CASE ids."""
    import re

    rows = []
    for row in re.findall(r"^\| *`[A-Z][A-Z_]+`[^\n]*", text, re.M):
        cells = [c.strip() for c in row.strip("|").split("|")]
        rows.append((re.findall(r"`([A-Z][A-Z_]+)`", cells[0]), cells[1] if len(cells) > 1 else "", row))
    return rows


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_manual_names_every_parameter_and_no_other(algorithms, name):
    """A tool's README section names every parameter its dialog shows; every id in a parameter table is one of its
    parameters or outputs (a renamed or removed id fails here); a parameter under the dialog's Advanced Parameters
    is called advanced in its row, and a row that says "advanced" has one."""
    import re

    from qgis.core import QgsProcessingParameterDefinition as Definition

    heading = SECTIONS[name][0]
    text = _section((Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8"), heading)
    alg = algorithms[name]
    shown = {p.name(): p for p in alg.parameterDefinitions() if not p.flags() & Definition.FlagHidden}
    mentioned = set(re.findall(r"`([A-Z][A-Z_]+)`", text))
    assert set(shown) <= mentioned, f"{heading}: not in the manual: {sorted(set(shown) - mentioned)}"
    sharing = [a for n, a in algorithms.items() if SECTIONS[n][0] == heading]
    known = {d.name() for a in sharing for d in [*a.parameterDefinitions(), *a.outputDefinitions()]}
    for ids, _, row in _table_rows(text):
        assert set(ids) <= known, f"{heading}: the table names {sorted(set(ids) - known)}, which the tool has not"
        advanced = [i for i in ids if i in shown and shown[i].flags() & Definition.FlagAdvanced]
        if advanced:
            assert "advanced" in row, f"{heading}: {advanced} are advanced in the dialog; the row does not say so"
        elif any(i in shown for i in ids):
            assert "advanced" not in row.split("|")[2], f"{heading}: {ids} are not advanced; the row says they are"


def test_the_classify_objects_manual_gives_the_dialogs_own_labels(algorithms):
    """docs/classify_objects.md's "Name in the dialog" column is what the dialog shows, "(advanced)" where the
    parameter is under Advanced Parameters."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "classify_objects.md").read_text(encoding="utf-8")
    params = {p.name(): p for p in algorithms["classifyobjects"].parameterDefinitions()}
    from qgis.core import QgsProcessingParameterDefinition as Definition

    rows = [r for r in _table_rows(_section(text, "Parameters")) if r[0][0] in params]
    assert {i for ids, _, _ in rows for i in ids} == set(params)
    for ids, label, _ in rows:
        advanced = any(params[i].flags() & Definition.FlagAdvanced for i in ids)
        assert label.endswith(" (advanced)") == advanced, (ids, label)
        label = label.removesuffix(" (advanced)")
        labels = label.split(", ") if len(ids) > 1 else [label]
        assert labels == [params[i].description() for i in ids], (ids, label)

# SPDX-License-Identifier: GPL-2.0-or-later
"""Test set-up: the plugin is importable as ``dltools`` (as QGIS names its folder),
QGIS runs offscreen, and tests needing ../shared/testdata skip when it is absent."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "build" / "plugins"
TESTDATA = ROOT.parent / "shared" / "testdata"

PLUGINS.mkdir(parents=True, exist_ok=True)
_link = PLUGINS / "dltools"
if not _link.exists():
    _link.symlink_to(ROOT, target_is_directory=True)
for p in (str(PLUGINS), str(Path(__file__).parent), "/usr/share/qgis/python/plugins"):
    if p not in sys.path:
        sys.path.insert(0 if p != "/usr/share/qgis/python/plugins" else len(sys.path), p)
os.environ["QGIS_PLUGINPATH"] = str(PLUGINS)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DLTOOLS_THREADS", "2")
# what the plugin's import_torch sets before torch is first imported (huge pages under large CPU tensors); the tests
# import torch themselves, earlier
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# the plugin's private libraries (Install Inference Libraries) of the user's QGIS profile stay out of the tests
os.environ.setdefault("DLTOOLS_LIBS_DIR", str(ROOT / "build" / "test-libs"))
# QGIS's authentication database (and the master password a test sets) in a folder of this session, never the
# user's profile
if "QGIS_AUTH_DB_DIR_PATH" not in os.environ:
    import atexit
    import tempfile

    _auth_dir = tempfile.mkdtemp(prefix="dltools-test-auth-")
    os.environ["QGIS_AUTH_DB_DIR_PATH"] = _auth_dir
    atexit.register(shutil.rmtree, _auth_dir, True)


def testdata_path(*parts: str) -> Path:
    """A file under ../shared/testdata, or skip the test saying what is missing."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (../shared/testdata is not checked out)")
    return path


@pytest.fixture
def testdata():
    return testdata_path


PACKAGE_CACHE = "dlpk-cache"


@pytest.fixture(autouse=True)
def _package_cache(tmp_path_factory, monkeypatch):
    """Packages extract into a cache under the session's temporary folder (emptied as each test module ends:
    _module_temporaries), never the user's."""
    monkeypatch.setenv("DLTOOLS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / PACKAGE_CACHE))


@pytest.fixture(scope="module", autouse=True)
def _module_temporaries(request, tmp_path_factory):
    """Remove what a module's tests wrote under the session's temporary folder once the module ends.

    The suite saves hundreds of model files (resnet weights, checkpoints, packages): kept to the end of the session
    they came to 38 GB, more than a CI machine's free disk. pytest removes a passing test's ``tmp_path`` itself
    (``tmp_path_retention_policy = "failed"``); this removes the folders module fixtures made with
    ``tmp_path_factory.mktemp`` and the package cache, so the suite holds one module's files at a time. A module with
    a failure keeps its folders for reading.
    """
    base = tmp_path_factory.getbasetemp()
    before = {path.name for path in base.iterdir()} - {PACKAGE_CACHE}
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        return
    for path in base.iterdir():
        if path.name not in before and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _keep_shared_testdata_clean():
    """QGIS writes GDAL .aux.xml statistics next to rasters it opens; remove the ones a run leaves in ../shared."""
    before = set(TESTDATA.rglob("*.aux.xml")) if TESTDATA.exists() else set()
    yield
    if TESTDATA.exists():
        for path in set(TESTDATA.rglob("*.aux.xml")) - before:
            try:
                path.unlink()
            except OSError:
                pass


_QGIS = {}


@pytest.fixture(scope="session")
def qgis_app():
    """A real QgsApplication with Processing and the plugin loaded the way QGIS does it."""
    if "app" not in _QGIS:
        from qgis.core import QgsApplication

        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], False)
        app.initQgis()
        from processing.core.Processing import Processing

        Processing.initialize()
        import dltools

        plugin = dltools.classFactory(None)
        plugin.initProcessing()
        _QGIS.update(app=app, plugin=plugin)
    yield _QGIS["app"]


@pytest.fixture
def qgis_context(qgis_app, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProject

    ctx = QgsProcessingContext()
    ctx.setProject(QgsProject.instance())
    return ctx


@pytest.fixture
def context(qgis_context):
    """The same processing context under the name QGIS's own tests use."""
    return qgis_context

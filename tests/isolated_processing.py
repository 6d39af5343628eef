# SPDX-License-Identifier: GPL-2.0-or-later
"""Run one ``processing.run`` in a fresh process, for inputs that could crash or hang the test process.

``python isolated_processing.py '{"alg": "dltools:classifypixels", "params": {...}}'`` prints one JSON line:
``{"ok": true, "result": {...}, "log": [...]}`` or ``{"ok": false, "error": "...", "log": [...]}``; a crash or a
hang shows as a non-zero exit status or a timeout in the caller (:func:`run_isolated`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_isolated(alg: str, params: dict, timeout: float = 120.0, env: dict | None = None,
                 exit_normally: bool = False) -> dict:
    """Run ``alg`` with ``params`` in a child process; the parsed JSON line, plus ``returncode``.

    ``exit_normally``: the child ends as any script does (atexit handlers, interpreter teardown) instead of
    ``os._exit``; the JSON line then carries ``result_at``, the time.time() when the result was there."""
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})}
    request = {"alg": alg, "params": params, "exit_normally": exit_normally}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(request)],
                          capture_output=True, text=True, timeout=timeout, env=environment, cwd=str(ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    out = json.loads(lines[-1]) if lines else {"ok": False, "error": None}
    out["returncode"] = proc.returncode
    out["stderr"] = proc.stderr[-4000:]
    return out


def _main(request: dict) -> dict:
    sys.path.insert(0, str(ROOT / "build" / "plugins"))
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import dltools

    plugin = dltools.classFactory(None)
    plugin.initProcessing()
    import processing

    log: list[str] = []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802 - QGIS API
            log.append(info)

        def reportError(self, error, fatalError=False):  # noqa: N802, N803 - QGIS API
            log.append(error)

    try:
        result = processing.run(request["alg"], request["params"], feedback=Feedback())
        return {"ok": True, "result": {k: str(v) for k, v in result.items()}, "log": log}
    except QgsProcessingException as exc:
        return {"ok": False, "error": str(exc), "log": log}
    finally:
        plugin.unload() if hasattr(plugin, "unload") else None


if __name__ == "__main__":
    _request = json.loads(sys.argv[1])
    _answer = _main(_request)
    _answer["result_at"] = time.time()
    print(json.dumps(_answer), flush=True)
    sys.stdout.flush()
    if not _request.get("exit_normally"):
        os._exit(0)  # skip QGIS's teardown: only the JSON line matters

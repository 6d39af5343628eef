# SPDX-License-Identifier: GPL-2.0-or-later
"""PrintProgress, the progress the README's notebook example passes to the engine: it prints what a run says."""

from __future__ import annotations

from dltools.core.progress import NullProgress, PrintProgress, SubProgress


def test_print_progress_prints_info_and_warnings(capsys):
    progress = PrintProgress()
    progress.info("Tiles: 4")
    progress.warning("ExtractBands looks odd")
    progress.debug("not shown")
    progress.set_progress(50.0)
    assert capsys.readouterr().out == "Tiles: 4\nWARNING: ExtractBands looks odd\n"
    assert not progress.is_canceled() and isinstance(progress, NullProgress)
    SubProgress(progress, 0.0, 50.0).info("through a sub-task")
    assert capsys.readouterr().out == "through a sub-task\n"

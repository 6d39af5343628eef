# SPDX-License-Identifier: GPL-2.0-or-later
"""Every Python file of the repository says its licence in its first line, as the plugin repository's reviewers
and the GPL's "how to apply" section expect: ``# SPDX-License-Identifier: GPL-2.0-or-later``.

The files checked are the ones git knows or would add (tracked, plus untracked files that .gitignore does not
exclude), so a file a contributor has just created fails here before it is committed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPDX_LINE = "# SPDX-License-Identifier: GPL-2.0-or-later"


def python_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the files to check are the ones git lists")
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.py"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return sorted({name for name in proc.stdout.split("\0") if name and (ROOT / name).is_file()})


def has_spdx_line(path: Path) -> bool:
    """The SPDX line is the first line, or the second after a ``#!`` line (an executable script)."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
        if first.startswith("#!"):
            first = fh.readline().rstrip("\r\n")
    return first == SPDX_LINE


def test_every_python_file_starts_with_the_spdx_line():
    files = python_files()
    assert "plugin.py" in files and "tests/test_spdx_headers.py" in files  # the listing itself works
    missing = [name for name in files if not has_spdx_line(ROOT / name)]
    assert not missing, (
        f"{len(missing)} Python file(s) lack the licence line. Make this exactly the first line of each "
        f"(the second after a '#!' line):\n\n{SPDX_LINE}\n\nFiles:\n" + "\n".join(f"  {name}" for name in missing)
    )


def test_the_check_sees_a_missing_line(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(f"{SPDX_LINE}\n\"\"\"Doc.\"\"\"\n", encoding="utf-8")
    script = tmp_path / "script.py"
    script.write_text(f"#!/usr/bin/env python3\n{SPDX_LINE}\n", encoding="utf-8")
    bad = tmp_path / "bad.py"
    bad.write_text(f"\"\"\"Doc.\"\"\"\n{SPDX_LINE}\n", encoding="utf-8")
    other = tmp_path / "other.py"
    other.write_text("# SPDX-License-Identifier: MIT\n", encoding="utf-8")
    empty = tmp_path / "empty.py"
    empty.write_text("", encoding="utf-8")
    assert has_spdx_line(good) and has_spdx_line(script)
    assert not has_spdx_line(bad) and not has_spdx_line(other) and not has_spdx_line(empty)

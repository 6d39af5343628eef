# SPDX-License-Identifier: GPL-2.0-or-later
"""What a runtime's error becomes in the user's message (core.errors.plain_reason)."""

from __future__ import annotations

import pytest
from dltools.core.errors import plain_reason


def test_a_torchscript_error_is_the_models_own_line_not_the_interpreters_traceback():
    torch = pytest.importorskip("torch")

    class Failing(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool(x.sum() > 0):
                raise RuntimeError("injected failure: the model's own words")
            return x

    scripted = torch.jit.script(Failing())
    with pytest.raises(Exception) as info:  # noqa: PT011 - torch raises its own error class
        scripted(torch.ones(1, 2))
    assert "Traceback of TorchScript" in str(info.value)  # the long form this test is about
    assert plain_reason(info.value) == "RuntimeError: injected failure: the model's own words"


def test_other_errors_keep_their_text_and_the_limit():
    assert plain_reason(ValueError("\x1b[31mbad\x1b[0m value")) == "bad value"
    long = plain_reason("x" * 500, limit=40)
    assert len(long) == 40 and long.endswith("…")

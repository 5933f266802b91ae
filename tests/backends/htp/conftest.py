"""Every htp kernel test runs twice: with the native (C) requantization and table lookups, and with
their PyTorch forms."""

from __future__ import annotations

import pytest

from openqnn.backends.htp import native


@pytest.fixture(autouse=True, params=["native", "torch"])
def requant_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "torch":
        monkeypatch.setattr(native, "library", lambda: None)
    elif native.library() is None:
        pytest.skip("no C compiler: the native requantization is not built here")
    return str(request.param)

"""Fixtures of the Nemo client's tests (the fakes themselves are in ``fakes.py``)."""

from __future__ import annotations

import pytest

from tests.nemo.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()

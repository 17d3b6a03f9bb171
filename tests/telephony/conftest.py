"""Fixtures for end-to-end telephony tests (see telephony_harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telephony_harness import Harness, start_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness, stop = await start_harness()
    try:
        yield harness
    finally:
        await stop()

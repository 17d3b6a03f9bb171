"""Fixtures for the Asterisk protocol tests: a simulated PBX and our FastAGI server, on port 0."""

from __future__ import annotations

import pytest

from acd.asterisk.fastagi import FastAgiServer
from acd.pbxsim import PbxSim

TIME_SCALE = 0.02  # telephone seconds → real seconds: a 3 s timeout takes 60 ms


@pytest.fixture
async def agi_server():
    server = FastAgiServer(deadline=5.0, grace=0.5)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def sim(agi_server: FastAgiServer):
    pbx = PbxSim(agi_target=("127.0.0.1", agi_server.port), time_scale=TIME_SCALE, auth_failure_delay=0.05)
    await pbx.start()
    yield pbx
    await pbx.close()

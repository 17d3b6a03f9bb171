"""Adapter: several Asterisk servers, each with its own AMI connection, behind one front.

Which server a thing belongs to:

* a **call** — the server whose dialplan ran the FastAGI session: `server=` in the AGI URL's query
  (the dialplan passes `${ACD_SERVER}` from `acd.conf`), else the one whose AMI host is the
  session's peer address, else the first server;
* a **device** (a manager's phone) — the server that last reported it in a real state (not
  UNKNOWN / INVALID / UNAVAILABLE: every PBX answers "unavailable" for a phone registered
  elsewhere); until one has, any report counts;
* an **Originate** (callbacks, click-to-call) — the server of the device it rings; a **Hangup**
  — the server that originated that channel, else every connected server (the others answer
  "No such channel").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from acd.asterisk.ami import Action, AmiClient, AmiMessage, AmiNotConnected, OriginateResult, action_headers

UNOWNED_STATES = frozenset({"UNKNOWN", "INVALID", "UNAVAILABLE"})
MAX_REMEMBERED = 10_000  # originated channels whose server is remembered


class DeviceOwners:
    """Which server a device lives on, learnt from what the servers report."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}

    def report(self, server: str, device: str, state: str) -> bool:
        """Record a report; True when it should count (it comes from the device's server)."""
        if state.upper() not in UNOWNED_STATES:
            self._owner[device] = server
        owner = self._owner.get(device)
        return owner is None or owner == server

    def owner(self, device: str) -> str | None:
        return self._owner.get(device)


class AmiServers:
    """What the callback dialer needs of an AMI client (`connected`, `wait_connected`,
    `originate`, `send`), spread over several servers."""

    def __init__(self, clients: Mapping[str, AmiClient], owner_of: Callable[[str], str | None]) -> None:
        self.clients = clients
        self.owner_of = owner_of
        self.made_on: dict[str, str] = {}  # channel name or uniqueid (ChannelId) → the server that originated it

    @property
    def connected(self) -> bool:
        return any(c.connected for c in self.clients.values())

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        waits = [asyncio.ensure_future(c.wait_connected(timeout)) for c in self.clients.values()]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in waits:
                task.cancel()

    def client_for_device(self, device: str) -> AmiClient:
        name = self.owner_of(device)
        if name is not None and name in self.clients:
            return self.clients[name]
        return next((c for c in self.clients.values() if c.connected), next(iter(self.clients.values())))

    async def originate(self, action: Action, *, timeout: float | None = None) -> OriginateResult:  # noqa: ASYNC109
        headers = action_headers(action)
        device = next((v for k, v in headers if k.lower() == "channel"), "")
        client = self.client_for_device(device)
        name = next(n for n, c in self.clients.items() if c is client)
        for key, value in headers:
            if key.lower() == "channelid":
                self.made_on[value] = name
        result = await client.originate(action, timeout=timeout)
        if result.channel:
            self.made_on[result.channel] = name
        while len(self.made_on) > MAX_REMEMBERED:
            del self.made_on[next(iter(self.made_on))]  # the oldest: long over
        return result

    async def send(self, action: Action, *, timeout: float | None = None) -> AmiMessage:  # noqa: ASYNC109
        headers = action_headers(action)
        channel = next((v for k, v in headers if k.lower() == "channel"), "")
        name = self.made_on.get(channel)
        if name is not None:
            return await self.clients[name].send(action, timeout=timeout)
        replies: list[AmiMessage] = []
        for client in self.clients.values():
            if client.connected:
                with contextlib.suppress(AmiNotConnected):
                    replies.append(await client.send(action, timeout=timeout))
        if not replies:
            raise AmiNotConnected("no Asterisk server is connected")
        return next((r for r in replies if r.ok), replies[-1])


__all__ = ["UNOWNED_STATES", "AmiServers", "DeviceOwners"]

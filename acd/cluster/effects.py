"""Adapter: the dispatching node's effects as another node hears them — each one once, in id
order, the ones sent while this node's listening connection was down included.

    leader: INSERT cluster_effects + NOTIFY {"id", "cmd"}   (Bus.publish_effect)
    here:   NOTIFY heard ───────────────▶ deliver(cmd)       (ids in order, none twice)
            listening connection lost ──▶ hold what is heard from then on
            listening connection back ──▶ read the rows after the last id delivered, deliver them,
                                          then what was held (an offer read back never comes
                                          after its own withdrawal heard live)

Without this, an offer forwarded while the node that holds the call was not listening would
never ring: the offer would run out as a missed offer and pause the manager.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from acd.cluster.leader import CONNECTION_ERRORS, RETRY
from acd.runtime import cancel_and_wait

log = logging.getLogger("acd.cluster")

ReadAfter = Callable[[int], Awaitable[list[tuple[int, dict[str, Any]]]]]


class EffectFeed:
    def __init__(
        self,
        read_after: ReadAfter,
        deliver: Callable[[dict[str, Any]], None],
        stale: Callable[[dict[str, Any]], bool] = lambda _cmd: False,
    ) -> None:
        self._read_after = read_after
        self._deliver = deliver
        self._stale = stale  # read back but no longer worth passing on (an offer that ran out)
        self.last = 0  # the id of the last effect delivered (ids grow in the leader's sending order)
        self.caught_up = 0  # effects delivered from the table rather than heard (metrics, tests)
        self._gap = False  # the connection was lost: what is heard waits until the table is read
        self._losses = 0
        self._held: list[tuple[int, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._listening.set()

    def start_at(self, last: int) -> None:
        """Nothing before `last` (the newest effect when this node started listening) is news."""
        self.last = max(self.last, last)

    def heard(self, payload: str) -> None:
        data = json.loads(payload)
        effect_id, cmd = int(data["id"]), data["cmd"]
        if self._gap:
            self._held.append((effect_id, cmd))
        else:
            self._pass_on(effect_id, cmd)

    def lost(self) -> None:
        """The listening connection is down: notifications may be missing from here on."""
        self._gap = True
        self._losses += 1
        self._listening.clear()

    def back(self) -> None:
        """Listening again: read what was missed, then go on with what is heard."""
        self._listening.set()
        if self._gap and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._catch_up(), name="acd-cluster-effects-catch-up")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _catch_up(self) -> None:
        while self._gap:
            await self._listening.wait()
            losses = self._losses
            try:
                while rows := await self._read_after(self.last):
                    for effect_id, cmd in rows:
                        if self._stale(cmd):
                            self.last = max(self.last, effect_id)
                        elif self._pass_on(effect_id, cmd):
                            self.caught_up += 1
            except CONNECTION_ERRORS as err:
                log.warning("cluster: cannot read the effects missed while not listening (%s); retrying", err)
                await asyncio.sleep(RETRY)
                continue
            if losses != self._losses:
                continue  # lost again while reading: read on once it is back
            held, self._held = sorted(self._held, key=lambda item: item[0]), []
            self._gap = False
            for effect_id, cmd in held:
                self._pass_on(effect_id, cmd)
            if self.caught_up:
                log.info("cluster: caught up on the effects missed while not listening (%d so far)", self.caught_up)

    def _pass_on(self, effect_id: int, cmd: dict[str, Any]) -> bool:
        if effect_id <= self.last:
            return False
        self.last = effect_id
        try:
            self._deliver(cmd)
        except Exception:  # one bad effect must not stop the ones after it
            log.exception("cluster: an effect from the leader could not be handled")
        return True

"""Adapter: a question for one node and its answer, through PostgreSQL NOTIFY.

Some work can only be done by one particular node: the one whose FastAGI session holds a call
(an AMI Redirect of that call), or the one that dispatches (a callback attempt it is ringing).
A request that reached another node behind the load balancer is passed on:

    asking node ── NOTIFY requests {id, to, kind, body, reply_to} ──▶ every node; `to` answers
    asking node ◀── NOTIFY replies {id, to, phase: "working"} ───── at once (it is alive)
    asking node ◀── NOTIFY replies {id, to, phase: "done", answer} ── when the work is done

Nothing is stored: a question is for a node that is up now, and silence is the answer — the
asker gives up with `Unanswered` when no "working" comes within `ACK_TIMEOUT` (the node is
gone), or no "done" within the asker's own deadline. The two phases keep the first wait short
although the work itself (an AMI action, then the dispatcher's outcome, which may wait for a
take-over) can take many seconds. A reply lost after the work was done reads as `Unanswered`
although it took effect — the asker says so in its error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from acd.cluster.bus import NOTIFY_LIMIT, Bus, channel_names
from acd.cluster.leader import CONNECTION_ERRORS
from acd.runtime import cancel_and_wait

log = logging.getLogger("acd.cluster")

DISPATCHER: Final = "dispatcher"  # the address of whichever node dispatches at the moment
ACK_TIMEOUT: Final = 5.0  # seconds for the addressee to say it is there (generous: loaded machines)
ANSWER_TIMEOUT: Final = 30.0  # seconds for the work itself (the dispatcher's outcome waits up to 15 s)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Unanswered(Exception):
    """Nobody answered: `gone` when no node said it was there, else it went quiet mid-way."""

    def __init__(self, message: str, *, gone: bool) -> None:
        super().__init__(message)
        self.gone = gone


class _RelayBus(Bus):
    """The bus's connections and reconnection, on two channels of the relay's own."""

    def __init__(self, url: str, schema: str | None, node: str) -> None:
        super().__init__(url, schema, node)
        prefix = channel_names(schema)["events"].removesuffix("events")
        self.channels = {kind: f"{prefix}relay_{kind}" for kind in ("requests", "replies")}
        self._kinds = {name: kind for kind, name in self.channels.items()}


class Relay:
    """Asks other nodes (`ask`) and answers them (`handlers`, by request kind).

    This node answers requests addressed to its own `node` name, to any of `names` (e.g. the
    name its calls carry), and to `DISPATCHER` while `leading()` says it dispatches."""

    def __init__(self, url: str, schema: str | None, node: str, leading: Callable[[], bool]) -> None:
        self.node = node
        self.names: set[str] = {node}
        self.handlers: dict[str, Handler] = {}
        self._leading = leading
        self._bus = _RelayBus(url, schema, node)
        self._bus.handlers = {"requests": self._on_request, "replies": self._on_reply}
        self._waiting: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await self._bus.open()

    async def close(self) -> None:
        for task in list(self._tasks):
            await cancel_and_wait(task)
        await self._bus.close()

    def answers_to(self, to: str) -> bool:
        return to in self.names or (to == DISPATCHER and self._leading())

    async def ask(
        self, to: str, kind: str, body: dict[str, Any], *, answer_timeout: float = ANSWER_TIMEOUT
    ) -> dict[str, Any]:
        """The answer of node `to` (a name, or `DISPATCHER`) to a `kind` request; asked of this
        node itself, it is answered here without a round trip. `Unanswered` when nobody did."""
        if self.answers_to(to):
            return await self._answer(kind, body)
        request_id = uuid.uuid4().hex
        text = json.dumps(
            {"id": request_id, "to": to, "kind": kind, "body": body, "reply_to": self.node}, ensure_ascii=False
        )
        if len(text.encode()) > NOTIFY_LIMIT:
            raise ValueError(f"a {kind} request of {len(text)} bytes is too long to relay")
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._waiting[request_id] = replies
        try:
            try:
                await self._bus.notify("requests", text)
            except CONNECTION_ERRORS as err:
                raise Unanswered(f"cannot reach the database to ask {to}: {err}", gone=False) from err
            try:
                async with asyncio.timeout(ACK_TIMEOUT):
                    reply = await replies.get()
            except TimeoutError:
                raise Unanswered(f"node {to} did not answer (it is not running)", gone=True) from None
            try:
                async with asyncio.timeout(answer_timeout):
                    while reply.get("phase") != "done":
                        reply = await replies.get()
            except TimeoutError:
                raise Unanswered(f"node {to} took the request but gave no answer in time", gone=False) from None
            answer = reply.get("answer")
            return answer if isinstance(answer, dict) else {}
        finally:
            self._waiting.pop(request_id, None)

    async def _answer(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(kind)
        if handler is None:
            return {"error": [501, "not_supported", f"this node cannot handle {kind!r} requests"]}
        return await handler(body)

    def _on_request(self, payload: str) -> None:
        request = json.loads(payload)
        if not self.answers_to(str(request.get("to", ""))):
            return
        task = asyncio.create_task(self._serve(request), name=f"acd-relay-{request.get('kind')}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: dict[str, Any]) -> None:
        reply = {"id": request.get("id"), "to": request.get("reply_to")}
        try:
            await self._bus.notify("replies", {**reply, "phase": "working"})
            try:
                answer = await self._answer(str(request.get("kind")), dict(request.get("body") or {}))
            except Exception as err:
                log.exception("relay: a %s request failed here", request.get("kind"))
                answer = {"error": [500, "internal", f"the node holding it failed: {type(err).__name__}"]}
            await self._bus.notify("replies", {**reply, "phase": "done", "answer": answer})
        except CONNECTION_ERRORS as err:
            log.warning("relay: cannot answer a %s request (%s)", request.get("kind"), err)

    def _on_reply(self, payload: str) -> None:
        reply = json.loads(payload)
        if reply.get("to") != self.node:
            return
        replies = self._waiting.get(str(reply.get("id")))
        if replies is not None:
            replies.put_nowait(reply)


__all__ = ["ACK_TIMEOUT", "ANSWER_TIMEOUT", "DISPATCHER", "Relay", "Unanswered"]

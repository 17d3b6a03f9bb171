"""Adapter: live updates for the panels over one WebSocket, `/api/ws`.

The dispatcher tells the hub about every side effect after its commit (offers, withdrawn
offers, notices such as the auto-pause); the hub forwards each to the manager it concerns.
Everything else that changes (a contact arriving, a manager's state) reaches the panels as
a coalesced `changed` message at most once a `TICK`, when the dispatcher has handled any
event since the last one, with the manager's own state for manager panels.

Messages (server → browser), all JSON objects with a `type`:
    hello     {identity, now}                          once, on connect
    offer     {contact, expires_at, offered_at, now, summary}  a contact is offered to me (and
                                                       again after hello, without summary)
    withdrawn {contact_id, reason}                     my offer was taken back
    notice    {kind, text}                             auto_pause, reassigned_to, reassigned_away
    me        {manager, now}                           my state changed
    changed   {now}                                    something changed: supervisors refresh

A browser session's feed is closed (code 4001) when the session's lifetime ends, as its next
request would be refused; the panel's reconnection then meets the 401 of any other request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from yarl import URL

from acd.api.app import IDENTITY, Services, api
from acd.api.routing import ApiError
from acd.api.security import Identity
from acd.api.views import contact_json, manager_json
from acd.core import events as ev
from acd.web.auth import WebIdentity

log = logging.getLogger("acd.web.live")
TICK = 1.0
QUEUE_LIMIT = 200  # a browser this far behind is disconnected; it reconnects and catches up
SESSION_OVER = 4001  # the close code when the browser session's lifetime ends


@dataclass(eq=False)
class Client:
    identity: Identity
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    last_me: dict[str, Any] | None = None

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("a panel of %s fell behind; disconnecting it", self.identity.actor)
            with contextlib.suppress(asyncio.QueueFull):
                self.outbox.get_nowait()
                self.outbox.put_nowait(None)


class Hub:
    def __init__(self, services: Services) -> None:
        self.svc = services
        self.clients: set[Client] = set()
        self._seen = -1

    def on_command(self, cmd: ev.Command) -> None:
        """The dispatcher's listener: must not block or raise."""
        now = self.svc.clock()
        match cmd:
            case ev.OfferContact(contact, manager, expires_at, decision):
                self._to_manager(
                    manager.id,
                    {
                        "type": "offer",
                        "contact": contact_json(contact, now),
                        "expires_at": expires_at,
                        "offered_at": now,
                        "now": now,
                        "summary": decision.summary,
                    },
                )
            case ev.WithdrawOffer(contact_id, manager_id, reason):
                self._to_manager(manager_id, {"type": "withdrawn", "contact_id": contact_id, "reason": reason})
            case ev.NotifyManager(manager_id, kind, text):
                self._to_manager(manager_id, {"type": "notice", "kind": kind, "text": text})

    def _to_manager(self, manager_id: str, message: dict[str, Any]) -> None:
        for c in self.clients:
            if c.identity.manager_id == manager_id:
                c.send(message)

    def tick(self) -> None:
        """Tell every panel what changed since the last tick (nothing if nothing did)."""
        processed = self.svc.dispatcher.processed
        if processed == self._seen:
            return
        self._seen = processed
        now = self.svc.clock()
        board = self.svc.dispatcher.board
        for c in self.clients:
            mid = c.identity.manager_id
            if mid and mid in board.managers:
                me = manager_json(board.managers[mid])
                if me != c.last_me:
                    c.last_me = me
                    c.send({"type": "me", "manager": me, "now": now})
            if c.identity.at_least("supervisor"):
                c.send({"type": "changed", "now": now})

    def hello(self, client: Client) -> None:
        now = self.svc.clock()
        ident = client.identity
        client.send({"type": "hello", "role": ident.role, "manager_id": ident.manager_id, "now": now})
        board = self.svc.dispatcher.board
        m = board.managers.get(ident.manager_id or "")
        if m is None:
            return
        client.last_me = manager_json(m)
        client.send({"type": "me", "manager": client.last_me, "now": now})
        c = board.contacts.get(m.offer_contact_id or "")
        if c is not None and c.offered_to == m.id and c.offer_expires_at is not None:
            # when the offer was made: the panel's countdown bar shows the time left out of the
            # offer's whole time, not out of what is left at the resend
            offered_at = m.last_offered_at
            if offered_at is None or offered_at >= c.offer_expires_at:
                offered_at = c.offer_expires_at - board.policy.rules(c.channel).offer_timeout
            offered_at = min(now, offered_at)
            client.send(
                {
                    "type": "offer",
                    "contact": contact_json(c, now),
                    "expires_at": c.offer_expires_at,
                    "offered_at": offered_at,
                    "now": now,
                }
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK)  # a steady beat, not waiting for progress: it coalesces changes
            try:
                self.tick()
            except Exception:
                log.exception("live tick failed")

    async def close(self) -> None:
        for c in list(self.clients):
            await c.ws.close(code=1001, message=b"server shutting down")


HUB = web.AppKey("live_hub", Hub)


@api.add("GET", "/api/ws", "Live updates for the panels (WebSocket; see acd.web.live)", role="manager", tag="web")
async def live(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is not None and not _own_origin(origin, request):
        # worth a line: behind a TLS proxy not in server.trusted_proxies (or one that does not
        # pass Host), every panel's feed is refused like this
        log.warning("live feed refused to a page of %r: this server is %s", origin[:100], _origin_of(request.url))
        raise ApiError(403, "forbidden", "the live feed is for this site's own pages")
    identity = request[IDENTITY]
    hub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=25.0)
    await ws.prepare(request)
    client = Client(identity, ws)
    hub.clients.add(client)
    hub.hello(client)
    pump = asyncio.create_task(_pump(client))
    # a bearer token has no end of its own: revoked, it is refused at the next connect
    ends_in = identity.ends_at - time.time() if isinstance(identity, WebIdentity) else None
    try:
        async with asyncio.timeout(ends_in):
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str('{"type":"pong"}')
    except TimeoutError:
        await ws.close(code=SESSION_OVER, message=b"session over: sign in again")
    finally:
        hub.clients.discard(client)
        pump.cancel()
    return ws


def _own_origin(origin: str, request: web.Request) -> bool:
    """Whether a page of `origin` is one of this server's own: scheme, host and port all
    alike. Not the host alone, nor `web.allowed_origins` (the sites that post forms):
    SameSite counts neither the port nor the scheme, nor a sibling subdomain, so the
    session cookie goes along from another service on the host, or from the company's
    website, whose pages must not read a manager's feed. The server's own origin is the
    Host the client asked for, with the scheme a trusted proxy reports (acd.api.proxies)."""
    try:
        theirs = URL(origin)
    except ValueError:
        return False
    return theirs.absolute and _origin_of(theirs) == _origin_of(request.url)


def _origin_of(url: URL) -> str:
    # yarl gives the scheme's default port when none is written, so :443 and none compare alike
    return f"{url.scheme}://{url.host}:{url.port}" if url.absolute else ""


async def _pump(client: Client) -> None:
    while (message := await client.outbox.get()) is not None:
        try:
            await client.ws.send_str(json.dumps(message, ensure_ascii=False))
        except (ConnectionError, RuntimeError):
            break
    await client.ws.close()


def install(app: web.Application, services: Services) -> None:
    hub = Hub(services)
    app[HUB] = hub
    services.dispatcher.subscribe(hub.on_command)

    async def ticking(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run(), name="acd-live-tick")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def shutdown(_app: web.Application) -> None:
        await hub.close()

    app.cleanup_ctx.append(ticking)
    app.on_shutdown.append(shutdown)

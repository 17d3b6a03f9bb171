"""Adapter: the HTTP side of e-mail and notifications — fairness counts for the supervisor,
the quarantine for the administrator, and what was sent to whom.

Importing this module registers its routes on `acd.api.app.api`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from acd.api.app import SERVICES, _limit, _query_float, api
from acd.api.cluster import RELAY
from acd.api.routing import ApiError
from acd.api.twilio import TWILIO, TwilioVoice, answer_callback_webhooks
from acd.core.model import Channel
from acd.messaging.service import Messaging
from acd.messaging.twilio_voice import TwilioCalls
from acd.storage.messaging import MessagingStore
from acd.telephony.api import CALLBACKS, TELEPHONY

MESSAGING = web.AppKey("messaging", Messaging)


def _messaging(request: web.Request) -> Messaging:
    m = request.app.get(MESSAGING)
    if m is None:
        raise ApiError(409, "unsupported", "e-mail and notifications are not configured on this server")
    return m


@api.add(
    "GET",
    "/api/email/fairness",
    "First-time e-mail enquiries per seller since a time (default: local midnight), with shares",
    role="supervisor",
    query=("since",),
    tag="email",
)
async def email_fairness(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    since = _query_float(request, "since")
    if since is None:
        local = datetime.fromtimestamp(svc.clock(), ZoneInfo(svc.deployment.tz))
        since = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    store = MessagingStore(svc.store)
    counts = await store.fairness(since)
    board = svc.dispatcher.board
    # every seller who can take e-mail shows up, a zero included: a zero is the news
    eligible = {m.id for m in board.managers.values() if m.active and m.capacity.get(Channel.EMAIL, 0) > 0}
    total = sum(counts.values())
    rows: list[dict[str, Any]] = []
    for mid in sorted(eligible | set(counts)):
        m = board.managers.get(mid)
        n = counts.get(mid, 0)
        rows.append(
            {
                "manager_id": mid,
                "name": m.name if m else "",
                "presence": m.presence.value if m else None,
                "count": n,
                "share": round(n / total, 4) if total else 0.0,
            }
        )
    active = [r["count"] for r in rows if r["manager_id"] in eligible]
    return web.json_response(
        {
            "since": since,
            "total": total,
            "waiting": await store.waiting_first_time(since),
            "max_over_min": round(max(active) / min(active), 4) if active and min(active) > 0 else None,
            "managers": rows,
        }
    )


@api.add(
    "GET",
    "/api/email/quarantine",
    "Mail refused as malformed, and bounces in no thread, newest first",
    role="admin",
    query=("limit",),
    tag="email",
)
async def email_quarantine(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    rows = await MessagingStore(svc.store).list_quarantine(_limit(request))
    return web.json_response({"quarantine": rows})


@api.add(
    "GET",
    "/api/contacts/{contact_id}/emails",
    "The e-mail thread of a contact (message ids, direction, subject)",
    role="supervisor",
    tag="email",
)
async def contact_emails(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    rows = await MessagingStore(svc.store).messages(request.match_info["contact_id"])
    return web.json_response({"messages": rows})


@api.add(
    "GET",
    "/api/notifications",
    "Notifications sent or queued, newest first, with their attempts",
    role="supervisor",
    query=("contact_id", "limit"),
    tag="email",
)
async def list_notifications(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    store = MessagingStore(svc.store)
    rows = await store.list_notifications(request.query.get("contact_id") or None, _limit(request))
    out = []
    for n in rows:
        out.append(
            {
                "id": n.id,
                "event_key": n.event_key,
                "template": n.template,
                "channel": n.channel,
                "recipient": n.recipient,
                "language": n.language,
                "subject": n.subject,
                "status": n.status,
                "attempts": n.attempts,
                "last_error": n.last_error,
                "next_at": n.next_at,
                "sent_at": n.sent_at,
                "contact_id": n.contact_id,
                "manager_id": n.manager_id,
            }
        )
    return web.json_response({"notifications": out})


async def start_messaging(app: web.Application) -> Messaging | None:
    """Build and start e-mail, notifications and Twilio voice when the deployment asks for them, and stop
    them when the application shuts down (before the dispatcher stops)."""
    svc = app[SERVICES]
    d = svc.deployment
    voice = d.twilio is not None and d.twilio.enabled
    if not (d.email.enabled or d.notifications.enabled or voice):
        return None
    messaging = Messaging(svc.store, svc.dispatcher, lambda: svc.deployment, svc.clock, lambda: svc.enrich)
    await messaging.start()
    app[MESSAGING] = messaging
    telephony = app.get(TELEPHONY)
    twilio: TwilioVoice | None = None
    if voice and d.twilio is not None:
        twilio = TwilioVoice(svc, TwilioCalls(d.twilio))
        messaging.hooks.append(twilio.on_command)
        app[TWILIO] = twilio
        if telephony is None and d.twilio.callbacks:  # no Asterisk: callbacks ring through Twilio
            app[CALLBACKS] = await twilio.start_callbacks()
            relay = app.get(RELAY)
            if relay is not None:  # cluster mode: their webhooks come to the node ringing them
                answer_callback_webhooks(relay, svc, app[CALLBACKS])
    callbacks = app.get(CALLBACKS) or (telephony.callbacks if telephony is not None else None)
    if callbacks is not None and d.notifications.enabled:
        messaging.notifier.follow_callbacks(callbacks, svc.store.get_contact)

    async def stop(_: web.Application) -> None:
        await messaging.stop()
        if twilio is not None:
            await twilio.close()

    app.on_cleanup.append(stop)
    return messaging

"""Notifications: recorded, retried with back-off, never twice for one event, quiet hours
for customers; e-mail to a real aiosmtpd sink, SMS through the twilio library to a local
stand-in of Twilio's REST API (the real Twilio cloud is unreachable from here, so the
stand-in is an aiohttp server on 127.0.0.1 that answers like api.twilio.com)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.test_utils import TestServer
from api_fixtures import example_deployment
from mail_fixtures import Sink

from acd.config.messaging import NotificationSettings, OutboundSettings, TwilioSettings
from acd.core.model import Channel, Contact
from acd.messaging.notify import Notifier, SmtpSender, TwilioSmsSender, backoff, quiet_until
from acd.storage import Store
from acd.storage.messaging import MessagingStore, Notification

SID = "AC" + "0" * 32
TOKEN = "stand-in-token"
MSK = ZoneInfo("Europe/Moscow")


def at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, 2, hour, minute, tzinfo=MSK).timestamp()


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class TwilioStandIn:
    """Answers POST /2010-04-01/Accounts/{sid}/Messages.json as Twilio does, and records it."""

    messages: list[dict[str, str]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create_message)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def create_message(self, request: web.Request) -> web.Response:
        self.auth.append(base64.b64decode(request.headers["Authorization"].split()[1]).decode())
        form = dict(await request.post())
        self.messages.append({k: str(v) for k, v in form.items()})
        sid = f"SM{len(self.messages):032x}"
        body = {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"], "body": form["Body"]}
        return web.json_response({**body, "account_sid": request.match_info["sid"]}, status=201)


def notifier(store: Store, sink: Sink, clock: Clock, **settings: object) -> Notifier:
    notes = replace(NotificationSettings(), **{"enabled": True, "backoff": 60.0, "attempts": 3, **settings})
    d = replace(example_deployment(), notifications=notes)
    out = OutboundSettings("Ромашка <sales@romashka.test>", "127.0.0.1", sink.port, timeout=5)
    return Notifier(store, lambda: d, clock, {"email": SmtpSender(out)})


def customer(**kw: object) -> Contact:
    base: dict[str, object] = {
        "channel": Channel.WEB,
        "customer_name": "Иван",
        "email": "ivan@client.test",
        "language": "ru",
    }
    return Contact(id="c-1", arrived_at=0.0, **{**base, **kw})  # type: ignore[arg-type]


def test_quiet_hours_across_midnight_end_at_the_next_morning() -> None:
    quiet = (time(21), time(9))
    assert quiet_until(at(23, 30), "Europe/Moscow", quiet) == at(9) + 86400
    assert quiet_until(at(6), "Europe/Moscow", quiet) == at(9)
    assert quiet_until(at(12), "Europe/Moscow", quiet) is None
    assert quiet_until(at(12), "Europe/Moscow", None) is None


def test_back_off_doubles_up_to_a_ceiling() -> None:
    assert [backoff(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


async def test_a_failed_send_is_recorded_and_retried_with_back_off_until_it_goes_through(
    store: Store, sink: Sink
) -> None:
    clock = Clock(at(12))
    n = notifier(store, sink, clock)
    sink.fail_next = 2
    assert await n.tell_customer("received", customer(), {"subject": "Покупка"}, "c-1")

    assert await n.send_due() == 0  # 451 from the relay
    assert await n.send_due() == 0  # not due yet: waits 60 s
    clock.now += 60
    assert await n.send_due() == 0  # 451 again; now waits 120 s
    clock.now += 119
    assert await n.send_due() == 0
    clock.now += 1
    assert await n.send_due() == 1

    mail = await sink.next()
    assert mail["To"] == "ivan@client.test" and "Иван" in mail.get_content()
    note = await MessagingStore(store).get_notification("received:c-1")
    assert note is not None and note.status == "sent" and note.attempts == 3
    attempts = await MessagingStore(store).attempts(note.id)
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert "451" in (attempts[0]["error"] or "")


async def test_the_same_event_is_never_notified_twice(store: Store, sink: Sink) -> None:
    n = notifier(store, sink, Clock(at(12)))
    assert await n.tell_customer("assigned", customer(), {"manager": "Анна"}, "c-1:anna") is True
    assert await n.tell_customer("assigned", customer(), {"manager": "Анна"}, "c-1:anna") is False
    assert await n.send_due() == 1
    assert await n.send_due() == 0
    await sink.next()
    assert sink.received.empty()


async def test_customers_are_not_written_to_in_quiet_hours_but_managers_are(store: Store, sink: Sink) -> None:
    clock = Clock(at(23))
    n = notifier(store, sink, clock, quiet_hours=(time(21), time(9)))
    await n.tell_customer("received", customer(), {"subject": "Ночью"}, "c-1")
    await n.request("offered:c-1:anna", "offered", "email", "anna@romashka.test", "ru", {}, quiet=False)

    assert await n.send_due() == 1
    assert (await sink.next())["To"] == "anna@romashka.test"
    held = await MessagingStore(store).get_notification("received:c-1")
    assert held is not None and held.status == "pending" and held.next_at == at(9) + 86400

    clock.now = at(9) + 86400
    assert await n.send_due() == 1
    assert (await sink.next())["To"] == "ivan@client.test"


async def test_a_send_that_keeps_failing_is_given_up_and_says_why(store: Store, sink: Sink) -> None:
    clock = Clock(at(12))
    n = notifier(store, sink, clock, attempts=2)
    sink.fail_next = 5
    await n.tell_customer("received", customer(), {}, "c-1")
    await n.send_due()
    clock.now += 60
    await n.send_due()
    note = await MessagingStore(store).get_notification("received:c-1")
    assert note is not None and note.status == "failed" and "451" in (note.last_error or "")


async def test_a_send_cut_short_by_a_stop_is_not_repeated_after_a_restart(store: Store, sink: Sink) -> None:
    clock = Clock(at(12))
    n = notifier(store, sink, clock)
    await n.tell_customer("received", customer(), {}, "c-1")
    note = await MessagingStore(store).get_notification("received:c-1")
    assert note is not None
    note.status, note.attempts = "sending", 1  # as left by a server killed mid-send
    await MessagingStore(store).update_notification(note, None)

    await n.start()
    await n.stop()

    again = await MessagingStore(store).get_notification("received:c-1")
    assert again is not None and again.status == "failed" and "not resent" in (again.last_error or "")
    assert sink.received.empty()


async def test_an_sms_goes_through_twilios_rest_api_to_the_stand_in(store: Store) -> None:
    stand_in = TwilioStandIn()
    base = await stand_in.start()
    try:
        twilio = TwilioSettings(SID, "https://acd.example", auth_token=TOKEN, api_base=base, sms_from="+74950000000")
        notes = replace(NotificationSettings(), enabled=True, quiet_hours=None)
        d = replace(example_deployment(), notifications=notes, twilio=twilio)
        sms = TwilioSmsSender(twilio)
        n = Notifier(store, lambda: d, Clock(at(12)), {"sms": sms})
        contact = customer(email="", phone="+79161234567", channel=Channel.CALLBACK)

        assert await n.callback_failed(contact, attempt=1)
        assert await n.send_due() == 1
        await sms.close()
    finally:
        assert stand_in.server is not None
        await stand_in.server.close()

    [sent] = stand_in.messages
    assert sent["To"] == "+79161234567" and sent["From"] == "+74950000000"
    assert "не дозвонились" in sent["Body"]
    assert stand_in.auth == [f"{SID}:{TOKEN}"]
    note = await MessagingStore(store).get_notification("callback_failed:c-1:1")
    assert note is not None and note.status == "sent" and note.external_id == f"SM{1:032x}"
    assert isinstance(note, Notification)

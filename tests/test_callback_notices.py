"""What a callback's customer is told, whichever back end rings: "we will call you back" when
the request is stored, "we tried to call you back" after each attempt that did not reach them —
by SMS, or by e-mail when that is how they can be reached; once per event; never in quiet hours.

The senders are recording fakes (the SMS and SMTP peers themselves are covered in
test_notify_delivery and test_twilio_callbacks)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, time
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from api_fixtures import example_deployment

from acd.config.messaging import NotificationSettings
from acd.core.model import Channel, Contact
from acd.messaging.notify import Notifier
from acd.storage import Store
from acd.storage.messaging import MessagingStore, Notification

MSK = ZoneInfo("Europe/Moscow")


def at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, 2, hour, minute, tzinfo=MSK).timestamp()


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorder:
    """A sender that keeps what it was given."""

    sent: list[Notification] = field(default_factory=list)

    async def send(self, n: Notification) -> str:
        self.sent.append(n)
        return f"id-{len(self.sent)}"


def office(store: Store, clock: Clock, channels: tuple[str, ...] = ("sms", "email"), **notes: Any):  # type: ignore[no-untyped-def]
    settings = replace(NotificationSettings(), **{"enabled": True, "quiet_hours": None, **notes})
    d = example_deployment()
    d = replace(d, notifications=settings, tz="Europe/Moscow")
    senders = {name: Recorder() for name in channels}
    notifier = Notifier(store, lambda: d, clock, senders)
    contacts: dict[str, Contact] = {}

    async def contact(contact_id: str) -> Contact | None:
        return contacts.get(contact_id)

    hooks = SimpleNamespace(requested=None, customer_missed=None, customer_given_up=None)
    notifier.follow_callbacks(hooks, contact)
    return notifier, hooks, senders, contacts


def callback(**kw: Any) -> Contact:
    base: dict[str, Any] = {
        "channel": Channel.CALLBACK,
        "customer_name": "Иван",
        "phone": "+7 916 555-00-00",
        "language": "ru",
    }
    return Contact(id="cb-contact", arrived_at=0.0, **{**base, **kw})


async def test_a_callback_request_is_acknowledged_once_by_sms(store: Store) -> None:
    notifier, hooks, senders, _ = office(store, Clock(at(12)))
    await hooks.requested(callback(), "cb-1")
    await hooks.requested(callback(), "cb-1")  # the same request again: no second message
    assert await notifier.send_due() == 1
    [sms] = senders["sms"].sent
    assert sms.recipient == "+7 916 555-00-00" and sms.template == "callback_requested"
    assert "+7 916 555-00-00" in sms.body and "перезвонить" in sms.body
    assert senders["email"].sent == []


async def test_each_failed_attempt_is_told_once_and_an_answered_one_is_not(store: Store) -> None:
    notifier, hooks, senders, contacts = office(store, Clock(at(12)))
    contacts["cb-contact"] = callback()
    await hooks.customer_missed("cb-contact", 1)
    await hooks.customer_missed("cb-contact", 1)  # one attempt reported twice (a replayed event)
    await hooks.customer_missed("cb-contact", 2)
    assert await notifier.send_due() == 2
    keys = [n.event_key for n in senders["sms"].sent]
    assert keys == ["callback_failed:cb-contact:1", "callback_failed:cb-contact:2"]
    assert all("не дозвонились" in n.body for n in senders["sms"].sent)


async def test_the_last_failed_attempt_says_the_request_is_given_up_instead(store: Store) -> None:
    notifier, hooks, senders, contacts = office(store, Clock(at(12)))
    contacts["cb-contact"] = callback(language="en")
    await hooks.customer_missed("cb-contact", 1)
    await hooks.customer_given_up("cb-contact", 2)
    await hooks.customer_given_up("cb-contact", 2)
    assert await notifier.send_due() == 2
    [tried, gave_up] = senders["sms"].sent
    assert "We will try again" in tried.body
    assert gave_up.event_key == "callback_given_up:cb-contact:2" and "several times" in gave_up.body


async def test_a_customer_who_left_an_e_mail_is_written_to_when_no_sms_can_be_sent(store: Store) -> None:
    notifier, hooks, senders, contacts = office(store, Clock(at(12)), channels=("email",))
    contacts["cb-contact"] = callback(email="ivan@client.test", language="en")
    await hooks.requested(contacts["cb-contact"], "cb-2")
    await hooks.customer_missed("cb-contact", 1)
    assert await notifier.send_due() == 2
    [ack, tried] = senders["email"].sent
    assert ack.recipient == tried.recipient == "ivan@client.test"
    assert ack.subject == "We will call you back" and tried.subject == "We tried to call you back"


async def test_a_callback_with_no_way_to_reach_the_customer_is_told_nothing(store: Store) -> None:
    notifier, hooks, _, _ = office(store, Clock(at(12)), channels=("email",))
    await hooks.requested(callback(), "cb-3")  # a phone number, but only e-mail can be sent
    assert await notifier.send_due() == 0
    assert await MessagingStore(store).list_notifications() == []


async def test_callback_notices_wait_out_the_quiet_hours(store: Store) -> None:
    clock = Clock(at(23, 30))
    notifier, hooks, senders, contacts = office(store, clock, quiet_hours=(time(21), time(9)))
    contacts["cb-contact"] = callback()
    await hooks.requested(callback(), "cb-4")
    await hooks.customer_missed("cb-contact", 1)
    assert await notifier.send_due() == 0
    held = await MessagingStore(store).get_notification("callback_requested:cb-4")
    assert held is not None and held.status == "pending" and held.next_at == at(9) + 86400
    assert senders["sms"].sent == []

    clock.now = at(9) + 86400
    assert await notifier.send_due() == 2
    assert {n.template for n in senders["sms"].sent} == {"callback_requested", "callback_failed"}


async def test_notices_are_off_when_notifications_are(store: Store) -> None:
    notifier, hooks, senders, _ = office(store, Clock(at(12)), enabled=False)
    await hooks.requested(callback(), "cb-5")
    assert await notifier.send_due() == 0 and senders["sms"].sent == []

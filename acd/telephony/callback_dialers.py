"""Adapter seam: the one step of a callback that differs between back ends — ringing.

`acd.telephony.callbacks.Callbacks` keeps a request's schedule, attempts, retries and give-up;
a *dialer* only rings the manager and, once they answer, the customer, and reports what
happened through the `Outcomes` it is given (the `Callbacks` object itself):

    dialer.ring(flight)           → outcomes.dialling(flight)          just before the request goes out
                                  → outcomes.not_sent(flight, why)     it certainly did not go out
                                  → outcomes.outcome_unknown(flight)   it may have (never re-sent)
    the manager answers           → outcomes.manager_answered(...)     False: too late, drop their leg
    the manager does not          → outcomes.manager_not_reached(...)  no answer = the core's missed offer
    the customer leg ends         → outcomes.on_result(contact, attempt, "ANSWER" | "BUSY" | ...)
    a machine answered it         → on_result(..., machine=the detector's verdict): a failed attempt

Two dialers: `AmiDialer` (Asterisk: AMI Originate of the manager's device into
`[acd-callback]`, below) and `acd.messaging.twilio_callbacks.TwilioDialer` (Twilio REST
`calls.create`, with signed webhooks in `acd.api.twilio`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from acd.asterisk.ami import AmiClient, AmiError, AmiLinkLost, AmiNotConnected, OriginateReason
from acd.core.model import Contact, Manager
from acd.crm.identity import dial_digits
from acd.storage.telephony import Attempt

log = logging.getLogger("acd.telephony.callbacks")


@dataclass(slots=True)
class Flight:
    """One attempt in progress: the manager's leg is ringing or connected to the customer's."""

    attempt: Attempt
    contact: Contact
    manager: Manager
    expires_at: float  # when the core's offer runs out
    leg: str  # the manager leg's id at the peer: AMI ChannelId / Uniqueid, Twilio CallSid
    connected: bool = False
    #: The customer leg's outcome when it came before we knew the manager answered (Asterisk runs
    #: [acd-callback] before it sends OriginateResponse): applied once they have.
    early_result: str | None = None
    #: The answering-machine detector's verdict when a machine took the customer's leg
    #: ("machine_start", "fax", "LONGGREETING-2000-1500"...): the attempt failed.
    machine: str = ""
    #: The request's own limit on attempts (its stored row's: the setting may have changed since
    #: it was made); 0 = not known, never taken for the last.
    max_attempts: int = 0

    @property
    def last_attempt(self) -> bool:
        """Whether a failure of this attempt gives the request up (no retry follows)."""
        return 0 < self.max_attempts <= self.attempt.attempt

    @property
    def contact_id(self) -> str:
        return self.contact.id

    @property
    def attempt_id(self) -> str:
        return self.attempt.action_id


class Outcomes(Protocol):
    """What a dialer reports (implemented by `Callbacks`)."""

    async def dialling(self, flight: Flight) -> None: ...

    async def not_sent(self, flight: Flight, why: str) -> None: ...

    async def outcome_unknown(self, flight: Flight, why: str) -> None: ...

    async def manager_answered(self, contact_id: str, attempt_id: str, leg: str, leg_status: str | None) -> bool: ...

    async def manager_not_reached(
        self, contact_id: str, attempt_id: str, leg_status: str | None, *, no_answer: bool
    ) -> None: ...


class CallbackDialer(Protocol):
    """Rings a manager, then the customer. `ring` returns once the request is out (or refused)."""

    def reaches(self, manager: Manager) -> bool:
        """Whether this back end knows how to ring `manager` at all (else the offer fails at once)."""
        ...

    async def ring(self, flight: Flight, outcomes: Outcomes) -> None: ...

    def withdraw(self, flight: Flight, reason: str) -> bool:
        """The core took the offer back while the manager's leg was not connected: stop ringing.
        True when the attempt is over at once; False when the ringing ends by itself and is
        reported as usual."""
        ...


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    max_attempts: int = 3  # customer dialling attempts before giving up
    backoff: float = 120.0  # seconds before the 2nd attempt; doubles after each failure
    manager_ring: float = 20.0
    ring_margin: float = 0.5
    customer_ring: float = 30.0
    outbound_dial: str = "Local/{number}@acd-outbound"  # how the dialplan reaches a customer
    caller_id: str = '"Callback" <{number}>'  # shown on the manager's phone
    #: Listen to who answers the customer's leg before the manager is connected: voicemail, an
    #: operator's announcement or a fax is a failed attempt (retried), not a talk.
    machine_detection: bool = False
    #: The site's languages, the first the default: the manager's notice after a machine is
    #: played in the customer's language when it is one of them (only these are generated).
    languages: tuple[str, ...] = ("ru", "en")


class AmiDialer:
    """Asterisk: AMI Originate rings the manager's device (`Timeout` a little shorter than the
    offer, `Context: acd-callback`, sent once and never re-sent); the originated channel runs
    `[acd-callback]`, which dials the customer and reports `UserEvent(CallbackResult, DialStatus)`
    (`Callbacks.on_result`, from `acd.telephony.service`). With `machine_detection`, `ACD_AMD=1`
    makes the dialplan run AMD() on the customer's leg before the bridge; the event then carries
    AMDStatus / AMDCause too (`asterisk_machine`), and `ACD_LANGUAGE` / `ACD_MACHINE_NOTICE` name
    the prompt the waiting manager then hears (`machine_notice`) before their line drops.

    OriginateResponse Reason 4 = answered; 3 = no answer (the core's offer timer declares the
    miss); busy / congestion / no such device = the offer fails with no penalty."""

    def __init__(
        self, ami: Callable[[], AmiClient | None], settings: Callable[[], CallbackSettings], clock: Callable[[], float]
    ) -> None:
        self.ami = ami
        self.settings = settings
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def reaches(self, manager: Manager) -> bool:
        return bool(manager.device)

    async def ring(self, flight: Flight, outcomes: Outcomes) -> None:
        s = self.settings()
        client = self.ami()
        ring = min(s.manager_ring, flight.expires_at - self.clock() - s.ring_margin)
        if client is not None and not client.connected and ring > 1.5:
            try:
                await client.wait_connected(ring - 1.0)
            except (AmiError, TimeoutError):
                pass
            ring = min(s.manager_ring, flight.expires_at - self.clock() - s.ring_margin)
        if client is None or not client.connected or ring < 0.5:
            await outcomes.not_sent(flight, "AMI not connected" if ring >= 0.5 else "offer expired")
            return
        number = dial_digits(flight.contact.phone)  # the dialplan adds any prefix
        action = [
            ("ActionID", flight.attempt_id),
            ("Channel", flight.manager.device),
            ("Context", "acd-callback"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Timeout", str(int(ring * 1000))),
            ("CallerID", s.caller_id.format(number=number)),
            ("ChannelId", flight.leg),
            ("Variable", f"ACD_CONTACT={flight.contact_id}"),
            ("Variable", f"ACD_ATTEMPT={flight.attempt_id}"),
            ("Variable", f"ACD_CUSTOMER_DIAL={s.outbound_dial.format(number=number)}"),
            ("Variable", f"ACD_CUSTOMER_RING={int(s.customer_ring)}"),
        ]
        if s.machine_detection:
            stem, lang = machine_notice(flight, s.languages)
            action += [
                ("Variable", "ACD_AMD=1"),
                ("Variable", f"ACD_LANGUAGE={lang}"),
                ("Variable", f"ACD_MACHINE_NOTICE={stem}"),
            ]
        await outcomes.dialling(flight)
        try:
            result = await client.originate(action)
        except AmiNotConnected:
            await outcomes.not_sent(flight, "AMI not connected")
            return
        except (AmiLinkLost, AmiError, TimeoutError) as err:
            # Sent once and never again: the phone may be ringing, so let the offer run out.
            await outcomes.outcome_unknown(flight, f"Originate outcome unknown ({err})")
            return
        reason = result.reason or ("error" if not result.response.ok else None)
        if result.answered:
            if not await outcomes.manager_answered(flight.contact_id, flight.attempt_id, flight.leg, reason):
                self._spawn(hangup(client, result.channel or flight.leg))
            return
        no_answer = result.reason == OriginateReason.NO_ANSWER
        await outcomes.manager_not_reached(flight.contact_id, flight.attempt_id, reason, no_answer=no_answer)

    def withdraw(self, flight: Flight, reason: str) -> bool:
        # A missed offer: Originate's Timeout is shorter than the offer, so it ends by itself.
        client = self.ami()
        if reason != "missed offer" and client is not None and client.connected:
            self._spawn(hangup(client, flight.leg))  # Asterisk finds a channel by uniqueid too
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def machine_notice(flight: Flight, languages: tuple[str, ...]) -> tuple[str, str]:
    """What [acd-callback] plays to the manager when AMD heard a machine: the prompt's stem in
    `acd.telephony.prompts.COMMON` (whether a retry follows) and its language — the customer's,
    as on Twilio, else the site's default (prompts exist only in the site's languages)."""
    lang = flight.contact.language if flight.contact.language in languages else (languages or ("ru",))[0]
    return ("callback-machine-last" if flight.last_attempt else "callback-machine"), lang


def asterisk_machine(amd_status: str | None, amd_cause: str | None) -> str:
    """The verdict of AMD() as `CallbackResult` reports it: its AMDCAUSE ("LONGGREETING-2000-1500",
    "INITIALSILENCE-2500-2500"...) when it heard a machine, else "". NOTSURE counts as a human:
    hanging up on a customer who did answer is worse than a manager hearing a voicemail greeting."""
    if (amd_status or "").strip().upper() != "MACHINE":
        return ""
    return (amd_cause or "").strip() or "MACHINE"


async def hangup(client: AmiClient, channel: str) -> None:
    try:
        await client.send({"Action": "Hangup", "Channel": channel, "Cause": "16"})
    except AmiError as err:
        log.info("Hangup %s: %s", channel, err)


__all__ = [
    "AmiDialer",
    "CallbackDialer",
    "CallbackSettings",
    "Flight",
    "Outcomes",
    "asterisk_machine",
    "hangup",
    "machine_notice",
]

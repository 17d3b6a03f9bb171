"""Adapter: a phone call's whole life ⇄ core — IVR, waiting with music, ringing, talking, hanging up.

Design (it works the same on a real Asterisk 20 and on `acd.pbxsim`; see asterisk_conf/README.md):
the FastAGI session that ran the IVR **keeps the call**. After the IVR it puts the caller on
music on hold (`SET MUSIC ON`), announces the position now and then, and waits for the core.
When the core offers the call to a manager, the session hands the call back to the dialplan with
the manager's dial string (`ACD_ACTION=dial`, `ACD_DIAL`, `ACD_RING`), and the dialplan runs
`Dial(${ACD_DIAL},${ACD_RING},mU(acd-answered^…))`:

* the manager answers → the `U()` gosub runs AGI `answered` on the manager's channel *before*
  the two are bridged; it tells the core (OfferAccepted). If the offer was taken back meanwhile
  the gosub answers `CONTINUE` and the manager's leg is dropped, so a call is never connected to
  someone the core no longer expects;
* nobody answers within the ring time (a little shorter than the core's offer timeout) → Dial
  returns, AGI `wait` parks the caller again, and the core's own offer timeout pauses the
  manager ("missed offer") and offers the call to the next one at once;
* the device is busy or unreachable (DIALSTATUS BUSY / CHANUNAVAIL / CONGESTION) → AGI `wait`
  reports OfferFailed: skip, no penalty;
* the caller hangs up anywhere → ContactAbandoned (the core finishes an assigned contact
  instead); seen by the AGI session (HANGUP), the `h` extension's AGI `hangup`, or AMI Hangup —
  whichever comes first, once.

So inbound calls need no AMI at all (AMI only adds device states, reconciliation and callbacks),
and every step goes back to the dialplan with `ACD_STATUS=OK` only when the ACD is in charge:
anything else falls back to a plain app_queue queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from acd.asterisk.fastagi import AgiReply, AgiSession
from acd.config import Deployment
from acd.config.flows import IvrFlow
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import qualify
from acd.core.model import Channel, Contact, ContactStatus, Presence
from acd.dispatcher import Dispatcher
from acd.ids import new_id
from acd.storage import Store
from acd.storage.telephony import TelephonyStore
from acd.telephony.ivr import Ask, Done, IvrRun, Say
from acd.telephony.prompts import common_sound
from acd.telephony.queue_log import QueueLog

if TYPE_CHECKING:
    from acd.telephony.callbacks import Callbacks

log = logging.getLogger(__name__)

DIAL_FAILED = {"BUSY", "CHANUNAVAIL", "CONGESTION", "INVALIDARGS"}


@dataclass(frozen=True, slots=True)
class CallSettings:
    """How calls wait and ring. Times are seconds; `poll` is how often a waiting call checks
    for an offer (it is also the longest a new offer waits before the phone rings)."""

    handler_deadline: float = 2.0  # our own work (database, dispatcher) per step, before falling back
    ring_time: float = 20.0  # the most a manager's phone rings; never past the core's offer timeout
    ring_margin: float = 0.5  # ring stops this long before the offer expires, so Dial ends first
    max_wait: float = 600.0  # then the call overflows to the fallback queue
    announce_every: float = 30.0  # position announcements (0: never)
    poll: float = 0.5
    callback_key: str = "*"  # pressed while waiting: be called back, keeping the place ("" = off)
    music_class: str = "default"
    prompt_seconds: float = 10.0  # the longest prompt, for the IVR's deadline
    overflow: str = "fallback"  # after max_wait: fallback | voicemail | callback (offered by key 1)
    announce_wait: bool = True  # the expected wait, on entering the queue and with each announcement
    average_handle: float = 180.0  # seconds a call takes, until calls have been measured
    voicemail_max: float = 120.0  # the longest message


def expected_wait(position: int, staffed: int, handle: float) -> float | None:
    """Pure: seconds until the caller at `position` (1 = next) is answered, or None when no
    manager is staffed (there is no honest figure then).

    The rule of app_queue's announce-holdtime, on our own numbers: the callers up to and
    including this one, shared among the staffed managers, each taking the recent average
    handle time. Rough on purpose: it is said in whole minutes.

    >>> expected_wait(3, 2, 120.0)   # three calls of two minutes between two managers
    180.0
    """
    if position <= 0 or staffed <= 0:
        return None
    return position * handle / staffed


def wait_minutes(seconds: float) -> int:
    """Whole minutes as app_queue says them: rounded to the nearest (0 = "less than a minute")."""
    return int((seconds + 30) // 60)


# SAY NUMBER's gender argument for the noun after the number, per channel language: Russian
# counts minutes in the feminine ("одна минута", "две минуты": digits/1f, digits/2f); English
# has no genders, and a language not listed gets none (Asterisk's default, the masculine).
MINUTES_GENDER: Mapping[str, str] = {"ru": "f"}


def dialled_digits(raw: str) -> str:
    """The dialled number as the IVR looks it up: its ASCII digits ("+74951234567" →
    "74951234567"; "s", a trunk that sends no DID, → "")."""
    return "".join(ch for ch in raw if "0" <= ch <= "9")


def say_number(number: int, escape: str = "", gender: str | None = None) -> str:
    """The AGI command: ``SAY NUMBER <number> <escape digits> [gender]``, spoken in the
    channel's language (set it first: `CallDesk._set_language`)."""
    return f'SAY NUMBER {number} "{escape}"' + (f" {gender}" if gender else "")


def minutes_word(n: int, lang: str) -> str:
    """The stem of the word after the number: `minutes-1` (минута / minute), `minutes-2`
    (минуты), `minutes-5` (минут / minutes) — Russian has three forms."""
    if lang == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return "minutes-1"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "minutes-2"
        return "minutes-5"
    return "minutes-1" if n == 1 else "minutes-5"


@dataclass(slots=True)
class Offer:
    manager_id: str
    device: str
    expires_at: float


@dataclass(eq=False)
class Call:
    contact_id: str
    uniqueid: str
    channel: str
    caller: str
    queue: str
    language: str
    queued_at: float
    state: str = "waiting"  # waiting | ringing | talking | ended
    offer: Offer | None = None
    ringing: Offer | None = None
    ring_started: float = 0.0
    manager_id: str | None = None
    agent_channel: str | None = None
    agent_hung_up: bool = False
    answered_at: float | None = None
    server: str = ""  # the Asterisk server the call is on (asterisk.servers)
    position: int = 0
    announced_wait: float | None = None  # the last expected wait told to the caller (seconds)
    withdrawn: bool = False  # the ringing offer was taken back: stop that phone as soon as it is known
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class CallerGone(Exception):
    """The caller hung up (HANGUP line, 511 on a dead channel)."""


class CallDesk:
    """The FastAGI routes of a call (`ivr`, `wait`, `answered`, `hangup`) and the core's commands
    for calls (OfferContact → ring, WithdrawOffer → stop ringing)."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        store: Store,
        tstore: TelephonyStore,
        deployment: Callable[[], Deployment],
        settings: CallSettings,
        queue_log: QueueLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.tstore = tstore
        self.deployment = deployment
        self.settings = settings
        self.queue_log = queue_log
        self.clock = clock
        self.calls: dict[str, Call] = {}
        self.by_uniqueid: dict[str, Call] = {}
        self.callbacks: Callbacks | None = None
        self.hangup_channel: Callable[[str, str | None], None] | None = None  # (channel, server); set with AMI
        self.server_of: Callable[[AgiSession], str] = lambda session: ""
        self.ended: asyncio.Queue[Call] = asyncio.Queue()  # every ended call (tests, metrics)
        self.voicemails: asyncio.Queue[Contact] = asyncio.Queue()  # every message kept (tests, metrics)
        self.enrich: Callable[[Contact], Awaitable[Contact]] | None = None
        # What a repeat caller already told us, by caller ID in any format: the CRM's recognition
        # when it is wired (app.py), else the latest contacts from the same caller ID string.
        self.known: Callable[[str], Awaitable[Mapping[str, str]]] | None = None
        self.handle_time = settings.average_handle  # recent average talk time (app_queue's 3:1 blend)
        #: Cluster mode: this node's name, written into the payload of the calls it holds. Offers
        #: of another node's call are that node's to ring; None (one node): every call is ours.
        self.node: str | None = None

    # ---- routes ----------------------------------------------------------------------

    def routes(self) -> dict[str, tuple[Callable[[AgiSession], object], float]]:
        s = self.settings
        flows = list(self.deployment().flows.values())
        longest = max((IvrRun(f).max_duration(s.prompt_seconds) for f in flows), default=0.0)
        holding = s.max_wait + s.voicemail_max + 4 * s.prompt_seconds + 60.0
        return {
            "ivr": (self.ivr, longest + holding),
            "wait": (self.wait, holding),
            "answered": (self.answered, s.handler_deadline * 2),
            "transfer": (self.transfer, holding),
            "hangup": (self.hangup, s.handler_deadline * 2),
        }

    async def ivr(self, session: AgiSession) -> None:
        """AGI(agi://acd/ivr[?flow=main],${EXTEN}): the IVR, then the queue."""
        try:
            await self._ivr(session)
        except CallerGone:
            return

    async def _ivr(self, session: AgiSession) -> None:
        s = self.settings
        dep = self.deployment()
        await self._cmd(session, "ANSWER")
        caller = session.caller_id
        # [acd-in] passes the digits of ${EXTEN} (none for `s`); an older dialplan passes
        # ${EXTEN} as it is, or nothing: the DNID then
        dialled = dialled_digits(session.args[0] if session.args else "") or dialled_digits(session.dnid)
        async with asyncio.timeout(s.handler_deadline):
            known = dict(await (self.known or self.tstore.known_criteria)(caller)) if caller else {}
        flow = _flow(dep, session.query.get("flow"))
        policy = self.dispatcher.board.policy
        if not policy.calendar.is_open(policy.default_team, self.clock()):
            await self._closed(session, dep, flow, dialled, caller, known)
            return
        if flow is not None:
            done = await run_ivr(session, IvrRun(flow, dialled, known), self._cmd)
        else:
            done = Done(dep.default_language, {})
        await self._set_language(session, done.language)
        answers = {c.name: c.default for c in dep.criteria if c.default is not None}
        answers.update(known)
        answers.update(done.answers)
        now = self.clock()
        contact = Contact(
            id=new_id(),
            channel=Channel.CALL,
            arrived_at=now,
            criteria=answers,
            phone=caller,
            customer_name=session.caller_name if caller else "",
            language=done.language,
            payload={
                "uniqueid": session.uniqueid,
                "channel": session.channel,
                "dnid": dialled,
                "ivr": dict(done.how),
                "server": self.server_of(session),
                **({"node": self.node} if self.node is not None else {}),
            },
        )
        async with asyncio.timeout(s.handler_deadline):
            if self.enrich is not None:
                contact = await self.enrich(contact)  # the CRM: customer, deal owner, team
            contact = qualify(contact, policy)
            stored, created = await self.store.create_contact(contact, f"call:{session.uniqueid}")
        call = Call(
            stored.id,
            session.uniqueid,
            session.channel,
            caller,
            stored.team or "acd",
            done.language,
            now,
            server=str(stored.payload.get("server", "")),
        )
        self._register(call)
        if created:
            self.dispatcher.post(ev.ContactArrived(replace(stored)))
        self.queue_log.write("ENTERQUEUE", call.uniqueid, call.queue, "NONE", "", caller, self._position(call))
        if s.announce_wait and not self._someone_free():
            await self._announce_wait(session, call)
        await self._hold(session, call)

    async def wait(self, session: AgiSession) -> None:
        """AGI(agi://acd/wait,${ACD_CONTACT}) after a Dial that did not connect: back to waiting."""
        cid = session.args[0] if session.args else ""
        call = self.calls.get(cid)
        if call is None or call.state == "ended":
            await session.set_variable("ACD_ACTION", "fallback")
            return
        try:
            status = (await session.get_variable("DIALSTATUS") or "").upper()
            ringing, call.ringing = call.ringing, None
            call.state = "waiting"
            if ringing is not None:
                ring_ms = int((self.clock() - call.ring_started) * 1000)
                if status in DIAL_FAILED:
                    self.dispatcher.post(ev.OfferFailed(cid, ringing.manager_id, f"device {status.lower()}"))
                    self.queue_log.write("RINGCANCELED", call.uniqueid, call.queue, ringing.manager_id, ring_ms)
                elif status == "NOANSWER":
                    self.queue_log.write("RINGNOANSWER", call.uniqueid, call.queue, ringing.manager_id, ring_ms)
            await self._hold(session, call)
        except CallerGone:
            return

    async def transfer(self, session: AgiSession) -> None:
        """[acd-transfer]: AGI(agi://acd/transfer,${ACD_CONTACT}) — the manager passed the call on
        (AMI Redirect of the caller's channel here): hold the caller again until the core offers it."""
        call = self.calls.get(session.args[0] if session.args else "")
        if call is None or call.state == "ended":
            await session.set_variable("ACD_ACTION", "fallback")
            return
        call.state = "waiting"
        try:
            await self._hold(session, call)
        except CallerGone:
            return

    def transferring(self, call: Call, to: str) -> None:
        """The caller's channel is being moved out of the manager's bridge: the call waits again."""
        now = self.clock()
        if call.answered_at is not None:
            hold, talk = int(call.answered_at - call.queued_at), int(now - call.answered_at)
            self.queue_log.write(
                "BLINDTRANSFER", call.uniqueid, call.queue, call.manager_id or "NONE", to, "acd-transfer", hold, talk, 1
            )
        call.state, call.manager_id, call.answered_at = "waiting", None, None
        call.agent_channel, call.agent_hung_up, call.ringing, call.offer = None, False, None, None
        call.changed.set()

    async def answered(self, session: AgiSession) -> None:
        """Dial option U(acd-answered^contact^manager) on the manager's channel, before the bridge."""
        cid, mid = [*session.args, "", ""][:2]
        call = self.calls.get(cid)
        try:
            async with asyncio.timeout(self.settings.handler_deadline):
                await self.dispatcher.submit(ev.OfferAccepted(cid, mid))
        except CoreError as err:
            log.info("call %s answered by %s after the offer ended (%s): dropping that leg", cid, mid, err.code)
            await session.set_variable("ACD_ANSWER", "CONTINUE")
            return
        if call is not None:
            call.state, call.manager_id, call.answered_at = "talking", mid, self.clock()
            call.agent_channel = call.agent_channel or session.channel
            hold = int(call.answered_at - call.queued_at)
            ring = int(call.answered_at - call.ring_started)
            self.queue_log.write("CONNECT", call.uniqueid, call.queue, mid, hold, session.uniqueid, ring)

    async def hangup(self, session: AgiSession) -> None:
        """The `h` extension: AGI(agi://acd/hangup,${ACD_CONTACT})."""
        call = self.calls.get(session.args[0] if session.args else "")
        if call is not None:
            self.end(call, "caller hung up")

    # ---- waiting -----------------------------------------------------------------------

    async def _hold(self, session: AgiSession, call: Call) -> None:
        """Music on hold until the core offers the call, the caller asks for a callback or
        hangs up, or the wait runs past `max_wait` (then: the fallback queue)."""
        s = self.settings
        await self._cmd(session, f"SET MUSIC ON {s.music_class}")
        next_announce = self.clock() + s.announce_every if s.announce_every > 0 else float("inf")
        while True:
            if call.state == "ended":
                await session.set_variable("ACD_ACTION", "hangup")
                return
            offer, call.offer = call.offer, None
            if offer is not None:
                call.changed.clear()
                if await self._ring(session, call, offer):
                    return
                continue
            now = self.clock()
            if now - call.queued_at > s.max_wait:
                await self._overflow(session, call)
                return
            if now >= next_announce:
                next_announce = now + s.announce_every
                key = await self._announce(session, call)
                if key and key == s.callback_key and await self._book_callback(session, call):
                    return
                await self._cmd(session, f"SET MUSIC ON {s.music_class}")
            reply = await self._cmd(session, f"WAIT FOR DIGIT {int(s.poll * 1000)}")
            key = reply.digit
            if key and key == s.callback_key and await self._book_callback(session, call):
                return

    async def _ring(self, session: AgiSession, call: Call, offer: Offer) -> bool:
        """Hand the call to the dialplan to ring `offer`'s device. False when the offer is stale."""
        s = self.settings
        now = self.clock()
        ring = min(s.ring_time, offer.expires_at - now - s.ring_margin)
        if ring < 1.0:
            return False  # expired meanwhile: the core's timeout re-routes it
        await self._cmd(session, "SET MUSIC OFF")
        for name, value in (
            ("ACD_DIAL", offer.device),
            ("ACD_RING", str(int(ring))),
            ("ACD_CONTACT", call.contact_id),
            ("ACD_MANAGER", offer.manager_id),
            ("ACD_ACTION", "dial"),
        ):
            await session.set_variable(name, value)
        call.state, call.ringing, call.ring_started = "ringing", offer, self.clock()
        call.agent_channel, call.withdrawn = None, False
        return True

    async def _announce(self, session: AgiSession, call: Call) -> str | None:
        await self._cmd(session, "SET MUSIC OFF")
        lang = call.language
        pos = self._position(call)
        escape = self.settings.callback_key if self.callbacks is not None else ""
        reply = await self._cmd(session, f'STREAM FILE {common_sound("position", lang)} "{escape}"')
        if reply.digit:
            return reply.digit
        if pos > 0:
            reply = await self._cmd(session, say_number(pos, escape))  # номер (masculine): no gender
            if reply.digit:
                return reply.digit
        if self.settings.announce_wait:
            key = await self._announce_wait(session, call, escape)
            if key:
                return key
        if escape:
            reply = await self._cmd(session, f'STREAM FILE {common_sound("callback-offer", lang)} "{escape}"')
            return reply.digit
        return None

    def _someone_free(self) -> bool:
        return any(m.presence is Presence.AVAILABLE and m.device for m in self.dispatcher.board.managers.values())

    def estimate(self, call: Call) -> float | None:
        """The caller's expected wait in seconds (see `expected_wait`)."""
        board = self.dispatcher.board
        staffed = sum(1 for m in board.managers.values() if m.presence.is_staffed and m.device)
        position = self._position(call)
        if position == 0 and call.state == "waiting":  # just arrived: the dispatcher has not queued it yet
            position = sum(1 for c in board.queue(self.clock()) if c.channel.is_voice) + 1
        return expected_wait(position, staffed, self.handle_time)

    async def _announce_wait(self, session: AgiSession, call: Call, escape: str = "") -> str | None:
        """ "Your expected wait is about N minutes" / "less than a minute"; nothing when nobody
        is staffed. Returns a key pressed meanwhile."""
        seconds = self.estimate(call)
        if seconds is None:
            return None
        lang = call.language
        await self._cmd(session, "SET MUSIC OFF")
        call.announced_wait = seconds
        reply = await self._cmd(session, f'STREAM FILE {common_sound("expected-wait", lang)} "{escape}"')
        if reply.digit:
            return reply.digit
        minutes = wait_minutes(seconds)
        if minutes == 0:
            reply = await self._cmd(session, f'STREAM FILE {common_sound("less-than-minute", lang)} "{escape}"')
            return reply.digit
        reply = await self._cmd(session, say_number(minutes, escape, MINUTES_GENDER.get(lang)))
        if reply.digit:
            return reply.digit
        reply = await self._cmd(session, f'STREAM FILE {common_sound(minutes_word(minutes, lang), lang)} "{escape}"')
        await self._cmd(session, f"SET MUSIC ON {self.settings.music_class}")
        return reply.digit

    async def _book_callback(self, session: AgiSession, call: Call) -> bool:
        """The caller asked to be called back: the callback keeps the call's place in the queue."""
        if self.callbacks is None or not call.caller:
            return False
        contact = self.dispatcher.board.contacts.get(call.contact_id)
        if contact is None or contact.status is not ContactStatus.WAITING:
            return False
        async with asyncio.timeout(self.settings.handler_deadline):
            await self.callbacks.request(
                phone=call.caller,
                name=contact.customer_name,
                criteria=dict(contact.criteria),
                language=call.language,
                requested_at=contact.arrived_at,
                source="queue",
            )
        self.end(call, "callback requested", abandoned_as="callback requested")
        await self._cmd(session, "SET MUSIC OFF")
        await self._cmd(session, f'STREAM FILE {common_sound("callback-booked", call.language)} ""')
        await session.set_variable("ACD_ACTION", "hangup")
        return True

    async def _overflow(self, session: AgiSession, call: Call) -> None:
        """Waited past `max_wait`: per `overflow`, a callback offered by key 1 (keeping the
        place), a voicemail that becomes a callback contact, or — and whenever those cannot
        be had (no caller ID, no callbacks, key not pressed) — the dialplan's fallback queue."""
        s = self.settings
        waited = int(self.clock() - call.queued_at)
        pos = self._position(call)
        self.queue_log.write("EXITWITHTIMEOUT", call.uniqueid, call.queue, "NONE", pos, pos, waited)
        await self._cmd(session, "SET MUSIC OFF")
        if s.overflow == "callback" and call.caller and self.callbacks is not None:
            digits, _ = await session.get_data(common_sound("overflow-callback", call.language), 5000, 1)
            if session.hung_up:
                self.end(call, "caller hung up", log_abandon=False)
                raise CallerGone
            if digits[:1] == "1" and await self._book_callback(session, call):
                return
        elif s.overflow == "voicemail" and call.caller:
            contact = self.dispatcher.board.contacts.get(call.contact_id)
            criteria = dict(contact.criteria) if contact is not None else {}
            self.end(call, "waited too long: left for voicemail", log_abandon=False)
            await self._voicemail(session, call.language, call.caller, criteria, call.queued_at, call.contact_id)
            return
        self.end(call, "waited too long: sent to the fallback queue", log_abandon=False)
        await self._cmd(session, f'STREAM FILE {common_sound("overflow", call.language)} ""')
        await session.set_variable("ACD_ACTION", "fallback")

    async def _voicemail(
        self,
        session: AgiSession,
        lang: str,
        caller: str,
        criteria: Mapping[str, str],
        arrived_at: float,
        from_contact: str | None = None,
    ) -> Contact | None:
        """Record a message in this session (AGI RECORD FILE, `#` or silence ends it) and keep it
        as a callback contact carrying the recording's name: routed like any contact, with
        the caller's original place; the manager it is offered to is rung, then the caller."""
        s = self.settings
        await self._cmd(session, f'STREAM FILE {common_sound("voicemail", lang)} ""')
        name = f"acd/voicemail/{session.uniqueid}"
        reply = await session.command(f"RECORD FILE {name} wav # {int(s.voicemail_max * 1000)} BEEP s=5")
        try:
            seconds = int(reply.extra.get("endpos", "0")) / 8000
        except ValueError:
            seconds = 0.0
        if not reply.ok or seconds < 1.0:
            if not session.hung_up:
                await session.set_variable("ACD_ACTION", "hangup")
            return None  # nothing said: nothing to call back about
        payload: dict[str, object] = {
            "voicemail": {"recording": f"{name}.wav", "seconds": round(seconds, 1)},
            "uniqueid": session.uniqueid,
            "dnid": session.dnid,
        }
        if from_contact:
            payload["from_contact"] = from_contact
        contact = Contact(
            id=new_id(),
            channel=Channel.CALLBACK,
            arrived_at=arrived_at,
            criteria=dict(criteria),
            phone=caller,
            customer_name=session.caller_name,
            language=lang,
            payload=payload,
        )
        async with asyncio.timeout(s.handler_deadline):
            if self.enrich is not None:
                contact = await self.enrich(contact)
            contact = qualify(contact, self.dispatcher.board.policy)
            stored, created = await self.store.create_contact(contact, f"voicemail:{session.uniqueid}")
        if created:
            self.dispatcher.post(ev.ContactArrived(replace(stored)))
        self.voicemails.put_nowait(stored)
        if not session.hung_up:
            await self._cmd(session, f'STREAM FILE {common_sound("voicemail-saved", lang)} ""')
            await session.set_variable("ACD_ACTION", "hangup")
        return stored

    async def _closed(
        self,
        session: AgiSession,
        dep: Deployment,
        flow: IvrFlow | None,
        dialled: str,
        caller: str,
        known: dict[str, str],
    ) -> None:
        """Out of hours: say so, offer a callback when we open (key 1), else voicemail."""
        lang = (flow.language.for_number(dialled) if flow else None) or dep.default_language
        await self._set_language(session, lang)  # the PBX's own VoiceMail() prompts, too
        digits, _ = await session.get_data(common_sound("closed", lang), 5000, 1)
        if session.hung_up:
            raise CallerGone
        criteria = {c.name: c.default for c in dep.criteria if c.default is not None}
        criteria.update(known)
        if digits[:1] == "1" and caller and self.callbacks is not None:
            async with asyncio.timeout(self.settings.handler_deadline):
                await self.callbacks.request(phone=caller, criteria=criteria, language=lang, source="closed")
            await self._cmd(session, f'STREAM FILE {common_sound("callback-booked", lang)} ""')
            await session.set_variable("ACD_ACTION", "hangup")
            return
        if caller:
            await self._voicemail(session, lang, caller, criteria, self.clock())
            return
        await session.set_variable("ACD_ACTION", "voicemail")  # no number to call back: the PBX's mailbox

    # ---- the core's commands -------------------------------------------------------------

    def on_command(self, cmd: ev.Command) -> None:
        match cmd:
            case ev.OfferContact(contact, manager, expires_at) if contact.channel is Channel.CALL:
                call = self.calls.get(contact.id)
                if call is None and not self.holds(contact):
                    return  # another node's FastAGI session holds it: that node rings
                if call is None or call.state == "ended":
                    self.dispatcher.post(ev.ContactAbandoned(contact.id, "call no longer on the line"))
                elif not manager.device:
                    self.dispatcher.post(ev.OfferFailed(contact.id, manager.id, "no device"))
                else:
                    call.offer = Offer(manager.id, manager.device, expires_at)
                    call.changed.set()
            case ev.WithdrawOffer(cid, mid, reason):
                call = self.calls.get(cid)
                if call is None:
                    return
                if call.offer is not None and call.offer.manager_id == mid:
                    call.offer = None
                elif call.ringing is not None and call.ringing.manager_id == mid:
                    if reason == "missed offer":
                        return  # Dial's own ring time ends it
                    call.withdrawn = True
                    if call.agent_channel and self.hangup_channel is not None:
                        self.hangup_channel(call.agent_channel, call.server)  # stop ringing: Dial goes on to `wait`
            case _:
                pass

    # ---- AMI (when there is one) ---------------------------------------------------------

    def on_dial_begin(self, uniqueid: str, dest_channel: str, server: str | None = None) -> None:
        call = self.by_uniqueid.get(uniqueid)
        if call is not None and call.state == "ringing" and _same_server(call, server):
            call.agent_channel = dest_channel
            if call.withdrawn and self.hangup_channel is not None:
                self.hangup_channel(dest_channel, call.server)  # withdrawn before Asterisk said what rings

    def on_hangup(self, uniqueid: str, channel: str, server: str | None = None) -> None:
        """AMI Hangup from `server`: uniqueids are unique per PBX only (two servers started in
        the same second count from the same number), so a call is matched on its own server."""
        call = self.by_uniqueid.get(uniqueid)
        if call is not None and _same_server(call, server):
            self.end(call, "caller hung up")
            return
        for call in self.calls.values():
            if call.state == "talking" and call.agent_channel == channel and _same_server(call, server):
                call.agent_hung_up = True

    def reconcile(self, alive: set[str], server: str | None = None) -> int:
        """End calls whose channel Asterisk no longer has (a Hangup lost with the AMI link).
        Only calls outside an AGI session (talking) are checked: a session sees its own hangup;
        with several servers, only the calls on `server` (whose channels `alive` lists)."""
        gone = [
            c
            for c in self.calls.values()
            if c.state == "talking" and c.uniqueid not in alive and (server is None or c.server == server)
        ]
        for call in gone:
            self.end(call, "channel gone (reconciled)")
        return len(gone)

    # ---- endings -------------------------------------------------------------------------

    def end(self, call: Call, reason: str, *, abandoned_as: str | None = None, log_abandon: bool = True) -> None:
        """The call is over for the ACD: tell the core once, write queue_log."""
        if call.state == "ended":
            return
        was, call.state = call.state, "ended"
        self.calls.pop(call.contact_id, None)
        self.by_uniqueid.pop(call.uniqueid, None)
        self.dispatcher.post(ev.ContactAbandoned(call.contact_id, abandoned_as or reason))
        now = self.clock()
        if was == "talking" and call.answered_at is not None:
            hold = int(call.answered_at - call.queued_at)
            talk = int(now - call.answered_at)
            self.handle_time = (3 * self.handle_time + (now - call.answered_at)) / 4
            event = "COMPLETEAGENT" if call.agent_hung_up else "COMPLETECALLER"
            self.queue_log.write(event, call.uniqueid, call.queue, call.manager_id or "NONE", hold, talk, 1)
        elif log_abandon:
            pos = self._position(call) or 1
            self.queue_log.write("ABANDON", call.uniqueid, call.queue, "NONE", pos, pos, int(now - call.queued_at))
        call.changed.set()
        self.ended.put_nowait(call)

    def ended_elsewhere(self, node: str, contacts: list[Contact]) -> None:
        """Cluster mode, on the dispatching node: `node`, which held these calls, is gone and
        they are being ended (acd.cluster.liveness). The unanswered ones get their ABANDON line
        here, since the node that wrote their ENTERQUEUE never will; a talked one has no line
        (when it was answered and whether it is still going on the PBX is not known here)."""
        now = self.clock()
        for c in contacts:
            if c.status is ContactStatus.ASSIGNED:
                continue
            uniqueid = str(c.payload.get("uniqueid", "")) or "NONE"
            self.queue_log.write("ABANDON", uniqueid, c.team or "acd", "NONE", 1, 1, int(now - c.arrived_at))
        log.warning("calls of node %s ended: it is gone (%d call(s))", node, len(contacts))

    def recover(self) -> None:
        """After a restart: calls that were waiting went to the dialplan's fallback when our
        sessions closed, so their contacts are abandoned; calls being talked are tracked again
        by their channel so a Hangup or reconciliation can finish them. In cluster mode, only
        the calls this node held (the same host and FastAGI port: see `holds`)."""
        for c in list(self.dispatcher.board.contacts.values()):
            if c.channel is not Channel.CALL or not self.holds(c):
                continue
            uniqueid = str(c.payload.get("uniqueid", ""))
            if c.status is ContactStatus.ASSIGNED and uniqueid:
                channel = str(c.payload.get("channel", ""))
                call = Call(c.id, uniqueid, channel, c.phone, c.team or "acd", c.language or "", c.arrived_at)
                call.state, call.manager_id, call.answered_at = "talking", c.assigned_to, c.arrived_at
                call.server = str(c.payload.get("server", ""))
                self._register(call)
            else:
                self.dispatcher.post(ev.ContactAbandoned(c.id, "server restarted: the call went to the fallback queue"))

    # ---- helpers -------------------------------------------------------------------------

    def holds(self, contact: Contact) -> bool:
        """Whether this node's FastAGI server holds (or held) the call: always on one node; in
        cluster mode, when the call's payload names this node."""
        return self.node is None or contact.payload.get("node") == self.node

    def _register(self, call: Call) -> None:
        self.calls[call.contact_id] = call
        self.by_uniqueid[call.uniqueid] = call

    def _position(self, call: Call) -> int:
        board = self.dispatcher.board
        n = 0
        for c in board.queue(self.clock()):
            if c.channel.is_voice:
                n += 1
            if c.id == call.contact_id:
                call.position = n
                return n
        return 0

    async def _set_language(self, session: AgiSession, lang: str) -> None:
        """The caller's language becomes the channel's (``CHANNEL(language)``), so that what
        Asterisk says itself — SAY NUMBER, VoiceMail(), app_queue's announcements after a
        fallback — is said in it. res_agi's SET VARIABLE writes a dialplan function like a
        variable (pbx_builtin_setvar_helper) and always answers ``200 result=1``. The channel
        keeps it for the rest of the call, later AGI sessions included (``agi_language``)."""
        if lang and session.env.get("agi_language") != lang:
            await self._cmd(session, f"SET VARIABLE CHANNEL(language) {lang}")
            session.env["agi_language"] = lang

    async def _cmd(self, session: AgiSession, text: str) -> AgiReply:
        reply = await session.command(text)
        if reply.dead_channel or session.hung_up:
            raise CallerGone
        return reply


# Every key a caller can press: any of them cuts a question's prompt short, as in GET DATA.
DTMF_KEYS = "0123456789*#"


async def run_ivr(
    session: AgiSession,
    run: IvrRun,
    cmd: Callable[[AgiSession, str], object] | None = None,
) -> Done:
    """The FastAGI renderer of the IVR interpreter: Say → STREAM FILE, Ask → GET DATA (one key).

    GET DATA plays exactly one file: unlike Playback() and Read(), AGI's GET DATA does not split
    `a&b` (ast_app_getdata_full opens the name as one file, which does not exist, and answers
    `200 result=-1` at once: the caller would hear nothing). So an Ask of several sounds (the
    language menu, "invalid" + the question) plays all but the last with STREAM FILE, any key
    cutting it short and answering, and asks with GET DATA on the last."""

    async def send(text: str) -> AgiReply:
        reply = await session.command(text)
        if reply.dead_channel or session.hung_up:
            raise CallerGone
        return reply

    action = run.step()
    while not isinstance(action, Done):
        if isinstance(action, Say):
            for sound in action.sounds:
                await send(f'STREAM FILE {sound} ""')
            action = run.step()
        elif isinstance(action, Ask):
            key = await _ask(send, action)
            action = run.step(key)
    return action


async def _ask(send: Callable[[str], Awaitable[AgiReply]], ask: Ask) -> str | None:
    """One key for `ask`, or None (silence, `#`, a prompt that could not be played)."""
    *before, last = ask.sounds or ("",)
    for sound in before:
        reply = await send(f'STREAM FILE {sound} "{DTMF_KEYS}"')
        if reply.digit:  # pressed during this part of the prompt: that is the answer
            return None if reply.digit == "#" else reply.digit
    reply = await send(f"GET DATA {last} {int(ask.timeout * 1000)} 1")
    value = reply.result_int
    key = reply.result[:1] if reply.result and (value is None or value >= 0) else None
    return key or None


def _same_server(call: Call, server: str | None) -> bool:
    return server is None or not call.server or call.server == server


def _flow(dep: Deployment, name: str | None) -> IvrFlow | None:
    if name and name in dep.flows:
        return dep.flows[name]
    return dep.flows.get("main") or next(iter(dep.flows.values()), None)


__all__ = ["Call", "CallDesk", "CallSettings", "CallerGone", "run_ivr"]

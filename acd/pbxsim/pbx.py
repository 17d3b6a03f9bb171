"""Test peer: a simulated Asterisk 20 — AMI server, FastAGI client, channels, phones, queues.

Faithful to ``shared/asterisk-transcripts`` where they show something (header order, list framing,
Originate outcomes, AGI replies); simplified where they do not (no media, no real bridging, one
dialplan shape). Start it on port 0, point our AMI client at ``sim.ami_port`` and tell it where our
FastAGI server listens (``agi_target``); then script callers and phones::

    sim = PbxSim(agi_target=("127.0.0.1", agi.port), time_scale=0.02)
    await sim.start()
    sim.add_phone(Phone("PJSIP/mgr1", answer_after=1.0, hint=("mgr1", "acd-hints")))
    call = sim.call(Caller(number="5551234", script="ivr?lang=ru", steps=[Press("1")]))
    result = await call.agi_done            # AGISTATUS, variables the script set, fallback taken?
    sim.cut_ami("close") / sim.cut_ami("half-open")
    await sim.close()

The recorded dialplan behind an inbound call: ``Answer``, ``AGI(agi://<target>/<script>,<args>)``,
then ``UserEvent(IvrResult,AgiStatus: …,Choice: ${IVR_CHOICE})``; if the AGI did not hand back
``ACD_STATUS=OK`` the call takes the fallback (``UserEvent(IvrFallback)``, then a plain queue);
otherwise it waits for the routing server (Redirect / Hangup by AMI). A hangup runs ``h``:
``UserEvent(IvrHangup,AgiStatus: …,Choice: …)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .agi import AgiRun, Said
from .ami_server import AmiServer, AmiSession
from .scenario import Caller, Phone, Step
from .wire import CAUSE_TXT, Channel, Headers, get, get_all, new_uniqueid

log = logging.getLogger(__name__)

DEVICE_STATE_EXT = {
    "NOT_INUSE": ("0", "Idle"),
    "INUSE": ("1", "InUse"),
    "BUSY": ("2", "Busy"),
    "UNAVAILABLE": ("4", "Unavailable"),
    "RINGING": ("8", "Ringing"),
    "ONHOLD": ("16", "Hold"),
}

# Event-loop turns the originated channel's dialplan runs before OriginateResponse (see _originate).
DIALPLAN_HEAD_START = 8

# Telephone seconds AMD() listens to a callback's customer before its verdict (assumed: amd.conf's
# greeting + after_greeting_silence; AMD is not in the transcripts).
AMD_SECONDS = 2.5

# The recorded [acd-legs] extensions (extensions.conf beside the transcripts).
LEGS = {
    "answer": Phone("Local/answer@acd-legs", answer_after=0.0, talk_for=3.0),
    "answer-slow": Phone("Local/answer-slow@acd-legs", answer_after=2.0, talk_for=3.0),
    "busy": Phone("Local/busy@acd-legs", busy=True),
    "congestion": Phone("Local/congestion@acd-legs", congestion=True),
    "noanswer": Phone("Local/noanswer@acd-legs", answer_after=None),
    "park": Phone("Local/park@acd-legs", answer_after=0.0),
}


@dataclass
class CallResult:
    """What the dialplan knew after AGI() returned."""

    agi_status: str
    variables: dict[str, str]
    fallback: bool
    hung_up: bool
    agi_commands: list[str]


@dataclass(eq=False)
class Leg:
    """Simulator-side state of a channel beyond what events print."""

    channel: Channel
    hungup: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    dtmf: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    partner: Leg | None = None  # the other half of a Local channel
    bridged: Leg | None = None
    phone: Phone | None = None
    cause: int = 16
    hangup_requested: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    redirected: asyncio.Event = field(default_factory=asyncio.Event)  # AMI Redirect moved it
    redirect_to: tuple[str, str] | None = None


@dataclass
class CallHandle:
    caller: Caller
    leg: Leg
    agi_done: asyncio.Future[CallResult]
    task: asyncio.Task[object] | None = None
    fallback_taken: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def channel(self) -> str:
        return self.leg.channel.name

    @property
    def ended(self) -> asyncio.Event:
        return self.leg.ended


@dataclass
class QueueMember:
    interface: str
    name: str
    state_interface: str
    penalty: int = 0
    paused: bool = False
    reason: str = ""
    login_time: int = field(default_factory=lambda: int(time.time()))
    last_pause: int = 0


class PbxSim:
    def __init__(
        self,
        *,
        ami_username: str = "acd",
        ami_secret: str = "acdsecret",
        agi_target: tuple[str, int] | None = None,
        time_scale: float = 1.0,
        auth_failure_delay: float = 1.0,
        hangup_line_delay: float = 0.04,
        queues: tuple[str, ...] = ("sales",),
    ) -> None:
        self.ami = AmiServer(
            self._handle_action, username=ami_username, secret=ami_secret, auth_failure_delay=auth_failure_delay
        )
        self.agi_target = agi_target
        self.time_scale = time_scale
        self.hangup_line_delay = hangup_line_delay
        #: Prompt lengths in telephone seconds; other names play ``default_prompt`` s, ``no-such*`` are missing.
        self.prompts: dict[str, float] = {"hello-world": 1.4, "beep": 0.5, "demo-congrats": 6.0}
        self.missing_prompts: set[str] = set()
        self.default_prompt = 1.0
        self.refuse_agi = False
        self.phones: dict[str, Phone] = {}
        self.legs: dict[str, Leg] = {}
        self.globals: dict[str, str] = {}
        self.device_states: dict[str, str] = {}
        self.hints: dict[tuple[str, str], str] = {}
        self.queues: dict[str, dict[str, QueueMember]] = {q: {} for q in queues}
        self.user_events: asyncio.Queue[Headers] = asyncio.Queue()
        #: Every event broadcast, in order (tests may look; the AMI sockets are the real interface).
        self.events: list[Headers] = []
        self.dialplan: dict[tuple[str, str], Callable[[PbxSim, Leg], Awaitable[None]]] = {}
        self._local_seq = itertools.count(0)
        self._chan_seq = itertools.count(1)
        self._tasks: set[asyncio.Task[object]] = set()
        self.agi_sessions = 0
        #: Files written by AGI RECORD FILE: ``name.format`` → telephone seconds recorded.
        self.recordings: dict[str, float] = {}
        #: Every AGI SAY NUMBER, with the channel's language at that moment and the gender argument.
        self.said: list[Said] = []
        self._emitted = asyncio.Event()
        # The built-in [acd-callback] / [acd-clicktocall]: the customer leg of an originated call.
        self.dialplan[("acd-callback", "s")] = PbxSim._outbound_leg
        self.dialplan[("acd-clicktocall", "s")] = PbxSim._outbound_leg

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ami.start()

    @property
    def ami_port(self) -> int:
        return self.ami.port

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self.ami.close()

    async def __aenter__(self) -> PbxSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Awaitable[object], name: str) -> asyncio.Task[object]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- link faults -------------------------------------------------------------------------

    def cut_ami(self, mode: str = "close") -> None:
        """``close``: every AMI socket is closed. ``half-open``: they stay open but go silent."""
        if mode == "close":
            self.ami.drop_all()
        elif mode in ("half-open", "half_open"):
            self.ami.freeze_all()
        else:
            raise ValueError(mode)

    # -- helpers used by the AGI runner ------------------------------------------------------

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def prompt_seconds(self, name: str) -> float | None:
        """One sound file's length, or None when Asterisk would not find it. STREAM FILE, GET DATA
        and GET OPTION open the name as *one* file (ast_streamfile), so ``a&b`` is a file that
        does not exist; only applications (Playback, Read) split a list on ``&``: see
        ``prompt_list_seconds``."""
        if name in self.missing_prompts or name.startswith("no-such") or "&" in name:
            return None
        return self.prompts.get(name, self.default_prompt)

    def prompt_list_seconds(self, names: str) -> float | None:
        """Playback / Read: ``a&b`` plays a then b (missing files are skipped); None when none exists."""
        found = [d for d in (self.prompt_seconds(n) for n in names.split("&") if n) if d is not None]
        return sum(found) if found else None

    def emit(self, headers: Headers) -> None:
        self.events.append(headers)
        self.ami.broadcast(headers)
        self._emitted.set()

    async def wait_event(self, where: Callable[[dict[str, str]], bool], start: int = 0) -> dict[str, str]:
        """The first event at or after index ``start`` of ``events`` that ``where`` accepts (tests)."""
        while True:
            self._emitted.clear()
            for headers in self.events[start:]:
                if where(dict(headers)):
                    return dict(headers)
            start = len(self.events)
            await self._emitted.wait()

    def lookup(self, ch: Channel, name: str) -> str | None:
        if name == "CHANNEL(state)":
            return ch.state_desc
        if name == "CHANNEL(language)":
            return ch.language
        if name == "CHANNEL":
            return ch.name
        if name in ch.variables:
            return ch.variables[name]
        return self.globals.get(name)

    def substitute(self, ch: Channel, expr: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: self.lookup(ch, m.group(1)) or "", expr)

    def set_var(self, ch: Channel, name: str, value: str) -> None:
        if name.endswith(")"):
            # A dialplan function (pbx_builtin_setvar_helper → ast_func_write): no VarSet event,
            # as with AMI Setvar of DEVICE_STATE(...) in ami_basic. CHANNEL(language) is what
            # SAY NUMBER, the next AGI's agi_language and every channel event's Language use.
            if name == "CHANNEL(language)" and value:
                ch.language = value
            return
        ch.variables[name] = value
        self.emit(
            [("Event", "VarSet"), ("Privilege", "dialplan,all"), *ch.block(), ("Variable", name), ("Value", value)]
        )

    def set_state(self, ch: Channel, state: int) -> None:
        ch.state = state
        self.emit([("Event", "Newstate"), ("Privilege", "call,all"), *ch.block()])

    def user_event(self, ch: Channel | None, name: str, fields: list[str]) -> None:
        headers: Headers = [("Event", "UserEvent"), ("Privilege", "user,all")]
        if ch is not None:
            headers += ch.block()
        headers.append(("UserEvent", name))
        for item in fields:
            key, _, value = item.partition(":")
            headers.append((key.strip(), value.strip()))
        self.emit(headers)
        self.user_events.put_nowait(headers)

    def dtmf_event(self, ch: Channel, key: str) -> None:
        for name in ("DTMFBegin", "DTMFEnd"):
            extra: Headers = [("Digit", key)]
            if name == "DTMFEnd":
                extra.append(("DurationMs", "120"))
            self.emit([("Event", name), ("Privilege", "dtmf,all"), *ch.block(), *extra, ("Direction", "Received")])

    def newexten(self, ch: Channel, app: str, data: str, *, exten: str | None = None) -> None:
        ch.application, ch.app_data = app, data
        self.emit(
            [
                ("Event", "Newexten"),
                ("Privilege", "dialplan,all"),
                *ch.block(),
                ("Extension", exten or ch.exten),
                ("Application", app),
                ("AppData", data),
            ]
        )

    # -- devices -----------------------------------------------------------------------------

    def add_phone(self, phone: Phone) -> Phone:
        self.phones[phone.device] = phone
        if phone.hint is not None:
            self.hints[phone.hint] = phone.device
        self.device_states[phone.device] = "NOT_INUSE" if phone.registered else "UNAVAILABLE"
        return phone

    def set_registered(self, device: str, registered: bool) -> None:
        self.phones[device].registered = registered
        self.set_device_state(device, "NOT_INUSE" if registered else "UNAVAILABLE")

    def set_device_state(self, device: str, state: str) -> None:
        old = self.device_states.get(device)
        self.device_states[device] = state
        for (exten, context), hinted in self.hints.items():
            # ExtensionStatus comes before DeviceStateChange, and only when the status changes (ami_basic).
            if hinted == device and old is not None and DEVICE_STATE_EXT.get(old) != DEVICE_STATE_EXT.get(state):
                status, text = DEVICE_STATE_EXT.get(state, ("-1", "Unknown"))
                self.emit(
                    [
                        ("Event", "ExtensionStatus"),
                        ("Privilege", "call,all"),
                        ("Exten", exten),
                        ("Context", context),
                        ("Hint", device),
                        ("Status", status),
                        ("StatusText", text),
                    ]
                )
        self.emit([("Event", "DeviceStateChange"), ("Privilege", "call,all"), ("Device", device), ("State", state)])

    # -- channels ----------------------------------------------------------------------------

    def _new_leg(self, channel: Channel, phone: Phone | None = None) -> Leg:
        leg = Leg(channel, phone=phone)
        self.legs[channel.name] = leg
        self.emit([("Event", "Newchannel"), ("Privilege", "call,all"), *channel.block()])
        return leg

    def hangup_channel(self, ch: Channel, *, cause: int = 16, by_agi: bool = False) -> None:
        """Request a hangup (caller, AMI or AGI). The Hangup event follows when the leg's owner ends it."""
        leg = self.legs.get(ch.name)
        if leg is None or leg.hungup.is_set():
            return
        leg.cause = cause
        self.emit([("Event", "SoftHangupRequest"), ("Privilege", "call,all"), *ch.block(), ("Cause", str(cause))])
        leg.hungup.set()

    def _finish(self, leg: Leg, cause: int | None = None) -> None:
        """Emit Hangup and forget the channel."""
        if leg.ended.is_set():
            return
        leg.hungup.set()
        ch = leg.channel
        ch.hungup = True
        c = leg.cause if cause is None else cause
        if leg.bridged is not None and ch.bridge_id:
            self.emit(
                [("Event", "BridgeLeave"), ("Privilege", "call,all"), ("BridgeUniqueid", ch.bridge_id), *ch.block()]
            )
        self.emit(
            [
                ("Event", "Hangup"),
                ("Privilege", "call,all"),
                *ch.block(),
                ("Cause", str(c)),
                ("Cause-txt", CAUSE_TXT.get(c, "Unknown")),
            ]
        )
        self.legs.pop(ch.name, None)
        leg.ended.set()
        still_used = any(other.channel.device == ch.device for other in self.legs.values())
        if ch.device and self.device_states.get(ch.device) not in (None, "UNAVAILABLE") and not still_used:
            self.set_device_state(ch.device, "NOT_INUSE")
        other = leg.bridged
        if other is not None and not other.hungup.is_set():
            self.hangup_channel(other.channel, cause=16)

    # -- inbound calls -----------------------------------------------------------------------

    def call(self, caller: Caller) -> CallHandle:
        """A customer calls in now. Returns at once; ``agi_done`` resolves when AGI() returns."""
        seq = next(self._chan_seq)
        uid = new_uniqueid()
        ch = Channel(
            name=f"PJSIP/{caller.trunk}-{seq:08x}",
            uniqueid=uid,
            linkedid=uid,
            state=4,
            cid_num=caller.number or "<unknown>",  # AMI spells a missing caller ID "<unknown>"
            cid_name=caller.name or "<unknown>",
            context=caller.context,
            exten=caller.dialled,
            tech="PJSIP",
            variables=dict(caller.variables),
        )
        leg = self._new_leg(ch)
        handle = CallHandle(caller, leg, asyncio.get_running_loop().create_future())
        handle.task = self._spawn(self._inbound(handle), f"pbxsim-call-{seq}")
        return handle

    async def _inbound(self, handle: CallHandle) -> None:
        """The [acd-in] dialplan of asterisk_conf/extensions.conf, step by step:

        Answer, AGI(ivr); then while the ACD answers ``ACD_STATUS=OK``: ``ACD_ACTION=dial`` →
        ``Dial(${ACD_DIAL},${ACD_RING},mU(acd-answered^contact^manager))`` then AGI(wait);
        ``hangup`` → Hangup; ``voicemail`` → VoiceMail; no action → parked (Wait) until
        Redirect/Hangup. Anything else (ACD down, TIMEOUT, ERROR, NOROUTE) → the fallback queue.
        An AMI Redirect of the caller to ``acd-transfer`` while bridged ends the Dial (the manager's
        leg is hung up) and goes on with [acd-transfer]: AGI(transfer), then the same steps.
        A hangup runs ``h``: UserEvent(IvrHangup) and AGI(hangup,${ACD_CONTACT}).
        """
        caller, leg = handle.caller, handle.leg
        ch = leg.channel
        steps = list(caller.steps)
        try:
            self.newexten(ch, "Answer", "")
            self.set_state(ch, 6)
            leg.answered.set()
            if caller.hangup_after is not None:
                self._spawn(self._hangup_at(leg, caller.hangup_after), "pbxsim-caller-hangup")
            # Set(CHANNEL(language)=${ACD_LANGUAGE}): the site's language until the ACD sets the caller's
            if self.globals.get("ACD_LANGUAGE"):
                self.set_var(ch, "CHANNEL(language)", self.globals["ACD_LANGUAGE"])
            ch.priority = 3
            target = self.agi_target
            url = f"agi://{target[0]}:{target[1]}/{caller.script}" if target else f"agi://127.0.0.1:0/{caller.script}"
            # [acd-in] passes ${ACD_DIALLED}, the digits of the number dialled (none for `s`)
            args = caller.args if caller.args else ("".join(c for c in caller.dialled if "0" <= c <= "9"),)
            self.newexten(ch, "AGI", ",".join([url, *args]))
            status, commands = await self._run_agi(leg, caller, url, steps=steps, args=args)
            ch.variables["AGISTATUS"] = status
            hung = leg.hungup.is_set()
            fallback = not hung and ch.variables.get("ACD_STATUS") != "OK"
            result = CallResult(status, dict(ch.variables), fallback, hung, commands)
            if not handle.agi_done.done():
                handle.agi_done.set_result(result)
            choice = ch.variables.get("IVR_CHOICE", "")
            if hung:
                await self._h(leg, caller, status, choice)
                return
            ch.priority = 4
            self.user_event(ch, "IvrResult", [f"AgiStatus: {status}", f"Choice: {choice}"])
            while True:
                action = ch.variables.get("ACD_ACTION", "")
                ok = ch.variables.get("ACD_STATUS") == "OK"
                if not ok or action not in ("", "dial", "hangup", "voicemail"):
                    self.user_event(
                        ch, "IvrFallback", [f"AgiStatus: {status}", f"AcdStatus: {ch.variables.get('ACD_STATUS', '')}"]
                    )
                    self.newexten(ch, "Queue", "acd-fallback,,,,300")
                    handle.fallback_taken.set()
                    await leg.hungup.wait()
                    break
                if action == "":
                    self.newexten(ch, "Wait", "3600")  # parked until the routing server moves the call
                    await leg.hungup.wait()
                    break
                if action == "hangup":
                    self.newexten(ch, "Hangup", "")
                    self.hangup_channel(ch, cause=16)
                    break
                if action == "voicemail":
                    self.newexten(ch, "VoiceMail", "acd@default,u")
                    self.user_event(ch, "Voicemail", [f"Caller: {ch.cid_num}"])
                    self.hangup_channel(ch, cause=16)
                    break
                # dial
                ch.variables["ACD_STATUS"] = ""
                ch.variables["ACD_ACTION"] = ""
                contact, manager = ch.variables.get("ACD_CONTACT", ""), ch.variables.get("ACD_MANAGER", "")
                dial, ring = ch.variables.get("ACD_DIAL", ""), float(ch.variables.get("ACD_RING", "20") or 20)
                self.newexten(ch, "Dial", f"{dial},{int(ring)},mU(acd-answered^{contact}^{manager})")
                dial_status = await self.dial(leg, dial, ring, gosub=("answered", [contact, manager]))
                self.set_var(ch, "DIALSTATUS", dial_status)
                if leg.hungup.is_set():
                    break
                script = "wait"
                if leg.redirect_to == ("acd-transfer", "s"):
                    # [acd-transfer]: reset the ACD's variables, AGI(transfer), then the same steps as [acd-in]
                    leg.redirect_to = None
                    leg.redirected.clear()
                    ch.variables["ACD_STATUS"] = ""
                    ch.variables["ACD_ACTION"] = ""
                    script = "transfer"
                self.newexten(ch, "AGI", f"{url.rsplit('/', 1)[0]}/{script},{contact}")
                status, _ = await self._run_agi(leg, caller, url, steps=steps, script=script, args=(contact,))
                ch.variables["AGISTATUS"] = status
                if leg.hungup.is_set():
                    break
            await self._h(leg, caller, status, choice)
        except asyncio.CancelledError:
            if not handle.agi_done.done():
                handle.agi_done.cancel()
            raise

    async def _h(self, leg: Leg, caller: Caller, status: str, choice: str) -> None:
        ch = leg.channel
        await leg.hungup.wait()
        self.user_event(ch, "IvrHangup", [f"AgiStatus: {status}", f"Choice: {choice}"])
        contact = ch.variables.get("ACD_CONTACT", "")
        if contact and self.agi_target is not None and not self.refuse_agi:
            ch.exten = "h"
            url = f"agi://{self.agi_target[0]}:{self.agi_target[1]}/hangup"
            await self._run_agi(leg, caller, url, steps=[], script="hangup", args=(contact,))
        self._finish(leg)

    async def dial(
        self,
        leg: Leg,
        dial: str,
        ring: float,
        *,
        gosub: tuple[str, list[str]] | None = None,
        caller_id: str = "",
        amd: bool = False,
    ) -> str:
        """``Dial(dial, ring)`` from ``leg`` (no ``g``): returns DIALSTATUS. Answered: the two are
        bridged until one hangs up (the phone's ``talk_for``); the caller's leg then hangs up too.
        ``gosub`` = (AGI script, args) runs on the callee before the bridge, like ``U()``.
        ``amd``: [acd-callback-amd] runs AMD() on the callee first (see ``_amd``)."""
        ch = leg.channel
        phone = self.phones.get(dial)
        tech, _, resource = dial.partition("/")
        if phone is None or not phone.registered:
            return "CHANUNAVAIL"
        seq = next(self._chan_seq)
        uid = new_uniqueid()
        callee = Channel(
            f"{dial.split('@')[0]}-{seq:08x}",
            uid,
            ch.linkedid,
            0,
            context="acd-phones",
            exten=resource,
            tech=tech,
            device=dial,
            cid_num=ch.cid_num,
            cid_name=ch.cid_name,
        )
        far = self._new_leg(callee, phone)
        self.emit(
            [
                ("Event", "DialBegin"),
                ("Privilege", "call,all"),
                *ch.block(),
                *callee.block("Dest"),
                ("DialString", resource),
            ]
        )

        def dial_end(status: str) -> None:
            self.emit(
                [
                    ("Event", "DialEnd"),
                    ("Privilege", "call,all"),
                    *ch.block(),
                    *callee.block("Dest"),
                    ("DialStatus", status),
                ]
            )

        if phone.busy or phone.congestion:
            status, cause = ("BUSY", 17) if phone.busy else ("CONGESTION", 34)
            self.set_device_state(dial, "BUSY")
            dial_end(status)
            self._finish(far, cause)
            return status
        self.set_state(callee, 5)
        self.set_device_state(dial, "RINGING")
        outcome = "NOANSWER"
        waits = {
            "caller": asyncio.ensure_future(leg.hungup.wait()),
            "callee": asyncio.ensure_future(far.hungup.wait()),
        }
        limit = self.scaled(ring)
        if phone.answer_after is not None and phone.answer_after <= ring:
            limit = self.scaled(phone.answer_after)
            outcome = "ANSWER"
        done, _ = await asyncio.wait(waits.values(), timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        for w in waits.values():
            w.cancel()
        if waits["caller"] in done:
            dial_end("CANCEL")
            self._finish(far, 16)
            return "CANCEL"
        if waits["callee"] in done:
            dial_end("NOANSWER")
            self._finish(far, 16)
            return "NOANSWER"
        if outcome == "NOANSWER":
            dial_end("NOANSWER")
            self._finish(far, 19)
            return "NOANSWER"
        self.set_state(callee, 6)
        self.set_device_state(dial, "INUSE")
        if amd and await self._amd(ch, callee, phone):  # a machine: GOSUB_RESULT=CONTINUE
            dial_end("ANSWER")
            self.hangup_channel(callee, cause=16)
            self._finish(far, 16)
            return "ANSWER"
        if amd and leg.hungup.is_set():  # the caller left while AMD listened
            dial_end("CANCEL")
            self.hangup_channel(callee, cause=16)
            self._finish(far, 16)
            return "CANCEL"
        if gosub is not None and self.agi_target is not None and not self.refuse_agi:
            script, args = gosub
            url = f"agi://{self.agi_target[0]}:{self.agi_target[1]}/{script}"
            number = "" if ch.cid_num == "<unknown>" else ch.cid_num
            sub_caller = Caller(number=number, script=script, args=tuple(args), context="acd-answered")
            callee.variables["ACD_ANSWER"] = ""
            await self._run_agi(far, sub_caller, url, steps=[])
            if callee.variables.get("ACD_ANSWER") == "CONTINUE":  # GOSUB_RESULT=CONTINUE: drop the callee
                dial_end("ANSWER")
                self.hangup_channel(callee, cause=16)
                self._finish(far, 16)
                return "ANSWER"
        dial_end("ANSWER")
        self.bridge(ch.name, callee.name)
        waits2: list[asyncio.Future[object]] = [
            asyncio.ensure_future(leg.hungup.wait()),
            asyncio.ensure_future(far.hungup.wait()),
            asyncio.ensure_future(leg.redirected.wait()),
        ]
        if phone.talk_for is not None:
            waits2.append(asyncio.ensure_future(asyncio.sleep(self.scaled(phone.talk_for))))
        await asyncio.wait(waits2, return_when=asyncio.FIRST_COMPLETED)
        for pending in waits2:
            pending.cancel()
        if leg.redirected.is_set() and not leg.hungup.is_set():
            # The caller was redirected out of the bridge: Dial ends, the callee is hung up, and
            # the caller goes on at the Redirect's target.
            self.unbridge(leg)
            self.hangup_channel(callee, cause=16)
            self._finish(far, 16)
            return "ANSWER"
        if not leg.hungup.is_set() and not far.hungup.is_set():
            self.hangup_channel(callee, cause=16)  # the manager puts the phone down
        self._finish(far)  # bridged: the caller is hung up too (no `g`)
        return "ANSWER"

    async def _amd(self, caller: Channel, callee: Channel, phone: Phone) -> bool:
        """[acd-callback-amd] on the answered callee: AMD() listens (``AMD_SECONDS``), its verdict
        goes to the caller's SHARED(ACD_AMDSTATUS / ACD_AMDCAUSE). Not in the recorded
        transcripts, so assumed from the dialplan: a Newexten for AMD() and the VarSets of its
        AMDSTATUS / AMDCAUSE on the callee (SHARED() is a function: no VarSet on the caller).
        True: a machine, hung up on."""
        self.newexten(callee, "AMD", "", exten="s")
        await asyncio.sleep(self.scaled(AMD_SECONDS))
        status, cause = ("MACHINE", phone.machine) if phone.machine else ("HUMAN", "HUMAN-400-300")
        self.set_var(callee, "AMDSTATUS", status)
        self.set_var(callee, "AMDCAUSE", cause)
        caller.variables["SHARED(ACD_AMDSTATUS)"], caller.variables["SHARED(ACD_AMDCAUSE)"] = status, cause
        return status == "MACHINE"

    async def _outbound_leg(self, leg1: Leg) -> None:
        """[acd-callback] / [acd-clicktocall] s: the manager's originated channel dials the customer
        (``Dial(${ACD_CUSTOMER_DIAL},${ACD_CUSTOMER_RING},gU(acd-callback-amd^${CHANNEL}^${ACD_AMD}))``)
        and reports ``CallbackResult``, with AMD()'s verdict when ``ACD_AMD=1``; after a machine,
        the manager first hears ``ACD_MACHINE_NOTICE`` (``_machine_notice``)."""
        ch = leg1.channel
        dial = ch.variables.get("ACD_CUSTOMER_DIAL", "")
        ring = float(ch.variables.get("ACD_CUSTOMER_RING", "30") or 30)
        amd = ch.variables.get("ACD_AMD", "")
        gosub = f"U(acd-callback-amd^{ch.name}^{amd})" if ch.context == "acd-callback" else ""
        self.newexten(ch, "Dial", f"{dial},{int(ring)},g{gosub}")
        status = await self.dial(leg1, dial, ring, amd=amd == "1")
        ch.variables["DIALSTATUS"] = status
        if ch.context == "acd-callback" and not leg1.hungup.is_set():
            await self._machine_notice(leg1)
        fields = [
            f"Contact: {ch.variables.get('ACD_CONTACT', '')}",
            f"Attempt: {ch.variables.get('ACD_ATTEMPT', '')}",
            f"DialStatus: {status}",
            f"AMDStatus: {ch.variables.get('SHARED(ACD_AMDSTATUS)', '')}",
            f"AMDCause: {ch.variables.get('SHARED(ACD_AMDCAUSE)', '')}",
        ]
        self.user_event(ch, "CallbackResult", fields)
        self.hangup_channel(ch, cause=16)

    async def _machine_notice(self, leg: Leg) -> None:
        """[acd-callback] after Dial: ``GotoIf($["${SHARED(ACD_AMDSTATUS)}" != "MACHINE" |
        "${ACD_MACHINE_NOTICE}" = ""]?report)``, else
        ``Playback(acd/common/${ACD_MACHINE_NOTICE}-${ACD_LANGUAGE})`` on the manager's channel.
        As a dialplan Playback: a Newexten with the expanded AppData, the file's length (cut short
        when the manager hangs up), then the VarSet of PLAYBACKSTATUS, as EXEC Playback in
        ``fastagi_ivr_ami`` (FAILED for a missing file, played not at all)."""
        ch = leg.channel
        notice = ch.variables.get("ACD_MACHINE_NOTICE", "")
        if ch.variables.get("SHARED(ACD_AMDSTATUS)") != "MACHINE" or not notice:
            return
        sound = f"acd/common/{notice}-{self.lookup(ch, 'ACD_LANGUAGE') or ''}"
        self.newexten(ch, "Playback", sound)
        seconds = self.prompt_list_seconds(sound)
        if seconds is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.hungup.wait(), self.scaled(seconds))
        played = seconds is not None and not leg.hungup.is_set()
        self.set_var(ch, "PLAYBACKSTATUS", "SUCCESS" if played else "FAILED")

    async def _hangup_at(self, leg: Leg, after: float) -> None:
        await asyncio.sleep(self.scaled(after))
        self.hangup_channel(leg.channel, cause=16)

    def _agi_env(
        self, ch: Channel, caller: Caller, url: str, script: str | None = None, args: tuple[str, ...] | None = None
    ) -> list[tuple[str, str]]:
        env = [
            ("agi_network", "yes"),
            ("agi_network_script", script or caller.script),
            ("agi_request", url),
            ("agi_channel", ch.name),
            ("agi_language", ch.language),
            ("agi_type", ch.tech),
            ("agi_uniqueid", ch.uniqueid),
            ("agi_version", "20.20.1"),
            # res_agi: a missing caller ID number or name, DNID or RDNIS is written "unknown"
            ("agi_callerid", caller.number or "unknown"),
            ("agi_calleridname", caller.name or "unknown"),
            ("agi_callingpres", "0"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", caller.dialled or "unknown"),
            ("agi_rdnis", "unknown"),
            ("agi_context", ch.context),
            ("agi_extension", ch.exten),
            ("agi_priority", str(ch.priority)),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", ch.accountcode),
            ("agi_threadid", str(139958091003584 + next(self._chan_seq))),
        ]
        env += [(f"agi_arg_{i}", arg) for i, arg in enumerate(caller.args if args is None else args, 1)]
        return env

    async def _run_agi(
        self,
        leg: Leg,
        caller: Caller,
        url: str,
        *,
        steps: list[Step] | None = None,
        script: str | None = None,
        args: tuple[str, ...] | None = None,
    ) -> tuple[str, list[str]]:
        if self.agi_target is None or self.refuse_agi:
            return "FAILURE", []  # "Failed to connect to FastAGI server": AGISTATUS=FAILURE
        try:
            async with asyncio.timeout(5):  # not wait_for: on Python 3.11 it can lose a cancellation
                reader, writer = await asyncio.open_connection(*self.agi_target)
        except (OSError, TimeoutError):
            return "FAILURE", []
        run = AgiRun(
            self,
            leg.channel,
            reader,
            writer,
            list(caller.steps) if steps is None else steps,
            leg.hungup,
            leg.dtmf,
            caller.agisighup,
        )
        self.agi_sessions += 1
        status = await run.run(self._agi_env(leg.channel, caller, url, script, args))
        return status, run.commands

    # -- AMI actions -------------------------------------------------------------------------

    async def _handle_action(self, session: AmiSession, action: Headers) -> list[Headers]:
        name = get(action, "Action") or ""
        aid = get(action, "ActionID")
        head: Headers = [("ActionID", aid)] if aid is not None else []
        handler = getattr(self, f"_act_{name.lower()}", None)
        if handler is None:
            return [
                [
                    ("Response", "Error"),
                    *head,
                    (
                        "Message",
                        f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands.",
                    ),
                ]
            ]
        result: list[Headers] = await handler(action, head)
        return result

    @staticmethod
    def _ok(head: Headers, *rest: tuple[str, str]) -> list[Headers]:
        return [[("Response", "Success"), *head, *rest]]

    @staticmethod
    def _err(head: Headers, message: str) -> list[Headers]:
        return [[("Response", "Error"), *head, ("Message", message)]]

    @staticmethod
    def _list(
        head: Headers, message: str, items: list[Headers], complete: str, *extra: tuple[str, str]
    ) -> list[Headers]:
        out: list[Headers] = [[("Response", "Success"), *head, ("EventList", "start"), ("Message", message)]]
        out += items
        out.append([("Event", complete), *head, ("EventList", "Complete"), ("ListItems", str(len(items))), *extra])
        return out

    async def _act_ping(self, action: Headers, head: Headers) -> list[Headers]:
        return self._ok(head, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))

    async def _act_command(self, action: Headers, head: Headers) -> list[Headers]:
        command = (get(action, "Command") or "").strip()
        if command == "core show version":
            lines = ["Asterisk 20.20.1 (pbxsim)"]
        elif command == "core show channels":
            lines = [f"{leg.channel.name} {leg.channel.state_desc}" for leg in self.legs.values()]
            lines.append(f"{len(self.legs)} active channels")
        else:
            return [
                [
                    ("Response", "Error"),
                    *head,
                    ("Message", "Command output follows"),
                    (
                        "Output",
                        f"No such command '{command}' (type 'core show help {command}' for other possible commands)",
                    ),
                ]
            ]
        return self._ok(head, ("Message", "Command output follows"), *[("Output", line) for line in lines])

    async def _act_corestatus(self, action: Headers, head: Headers) -> list[Headers]:
        return self._ok(head, ("CoreCurrentCalls", str(len(self.legs))))

    async def _act_setvar(self, action: Headers, head: Headers) -> list[Headers]:
        var = get(action, "Variable") or ""
        value = get(action, "Value") or ""
        chan = get(action, "Channel")
        m = re.fullmatch(r"DEVICE_STATE\((.+)\)", var)
        if m:
            self._spawn(self._later(lambda: self.set_device_state(m.group(1), value)), "pbxsim-devstate")
        elif chan:
            leg = self.legs.get(chan)
            if leg is None:
                return self._err(head, "No such channel")
            self._spawn(self._later(lambda: self.set_var(leg.channel, var, value)), "pbxsim-varset")
        else:
            self.globals[var] = value
            self._spawn(
                self._later(
                    lambda: self.emit(
                        [
                            ("Event", "VarSet"),
                            ("Privilege", "dialplan,all"),
                            ("Channel", "none"),
                            ("Uniqueid", "none"),
                            ("Variable", var),
                            ("Value", value),
                        ]
                    )
                ),
                "pbxsim-varset",
            )
        return self._ok(head, ("Message", "Variable Set"))

    async def _later(self, fn: Callable[[], None]) -> None:
        fn()  # scheduled: events caused by an action follow its Response (ami_basic)

    async def _act_getvar(self, action: Headers, head: Headers) -> list[Headers]:
        var = get(action, "Variable") or ""
        chan = get(action, "Channel")
        if chan:
            leg = self.legs.get(chan)
            if leg is None:
                return self._err(head, "No such channel")
            value = self.lookup(leg.channel, var) or ""
        else:
            m = re.fullmatch(r"DEVICE_STATE\((.+)\)", var)
            value = self.device_states.get(m.group(1), "UNKNOWN") if m else self.globals.get(var, "")
        return self._ok(head, ("Variable", var), ("Value", value))

    async def _act_devicestatelist(self, action: Headers, head: Headers) -> list[Headers]:
        items = [
            [("Event", "DeviceStateChange"), *head, ("Device", d), ("State", s)] for d, s in self.device_states.items()
        ]
        return self._list(head, "Device State Changes will follow", items, "DeviceStateListComplete")

    def _ext_item(self, head: Headers, exten: str, context: str, device: str) -> Headers:
        status, text = DEVICE_STATE_EXT.get(self.device_states.get(device, "NOT_INUSE"), ("-1", "Unknown"))
        return [
            ("Event", "ExtensionStatus"),
            *head,
            ("Exten", exten),
            ("Context", context),
            ("Hint", device),
            ("Status", status),
            ("StatusText", text),
        ]

    async def _act_extensionstatelist(self, action: Headers, head: Headers) -> list[Headers]:
        items = [self._ext_item(head, e, c, d) for (e, c), d in self.hints.items()]
        return self._list(head, "Extension Statuses will follow", items, "ExtensionStateListComplete")

    async def _act_extensionstate(self, action: Headers, head: Headers) -> list[Headers]:
        key = (get(action, "Exten") or "", get(action, "Context") or "")
        device = self.hints.get(key)
        if device is None:
            return self._err(head, "Extension not found")
        item = self._ext_item([], *key, device)
        return [[("Response", "Success"), *head, ("Message", "Extension Status"), *item[1:]]]

    async def _act_coreshowchannels(self, action: Headers, head: Headers) -> list[Headers]:
        items = []
        for leg in reversed(list(self.legs.values())):
            ch = leg.channel
            items.append(
                [
                    ("Event", "CoreShowChannel"),
                    *head,
                    *ch.block(),
                    ("Application", ch.application),
                    ("ApplicationData", ch.app_data),
                    ("Duration", _duration(ch)),
                    ("BridgeId", ch.bridge_id),
                ]
            )
        return self._list(head, "Channels will follow", items, "CoreShowChannelsComplete")

    async def _act_status(self, action: Headers, head: Headers) -> list[Headers]:
        chan = get(action, "Channel")
        legs = list(reversed(list(self.legs.values())))
        if chan:
            legs = [leg for leg in legs if leg.channel.name == chan]
            if not legs:
                return self._err(head, "No such channel")
        wanted = [v for v in (get(action, "Variables") or "").split(",") if v]
        items = []
        for leg in legs:
            ch = leg.channel
            item: Headers = [
                ("Event", "Status"),
                ("Privilege", "Call"),
                *ch.block(),
                ("Type", ch.tech),
                ("DNID", ""),
                ("EffectiveConnectedLineNum", ch.conn_num),
                ("EffectiveConnectedLineName", ch.conn_name),
                ("TimeToHangup", "0"),
                ("BridgeID", ch.bridge_id),
                ("Application", ch.application),
                ("Data", ch.app_data),
                ("Nativeformats", "(ulaw)"),
                ("Readformat", "ulaw"),
                ("Readtrans", ""),
                ("Writeformat", "ulaw"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(int(time.monotonic() - ch.created))),
            ]
            item += [("Variable", f"{v}={self.lookup(ch, v) or ''}") for v in wanted]
            item += head  # Status items carry ActionID last (ami_basic)
            items.append(item)
        n = str(len(items))
        return self._list(head, "Channel status will follow", items, "StatusComplete", ("Items", n))

    async def _act_userevent(self, action: Headers, head: Headers) -> list[Headers]:
        name = get(action, "UserEvent") or ""
        extra = [(k, v) for k, v in action if k.lower() not in ("action", "actionid", "userevent")]

        def fire() -> None:
            headers = [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name), *head, *extra]
            self.emit(headers)
            self.user_events.put_nowait(headers)

        self._spawn(self._later(fire), "pbxsim-userevent")
        return self._ok(head, ("Message", "Event Sent"))

    async def _act_hangup(self, action: Headers, head: Headers) -> list[Headers]:
        chan = get(action, "Channel") or ""
        # Asterisk finds a channel by name or by uniqueid (ast_channel_get_by_name).
        leg = self.legs.get(chan) or next((x for x in self.legs.values() if x.channel.uniqueid == chan), None)
        if leg is None or leg.hungup.is_set():
            return self._err(head, "No such channel")
        cause = int(get(action, "Cause") or "16")
        self._spawn(self._later(lambda: self.hangup_channel(leg.channel, cause=cause)), "pbxsim-hangup")
        return self._ok(head, ("Message", "Channel Hungup"))

    async def _act_redirect(self, action: Headers, head: Headers) -> list[Headers]:
        leg = self.legs.get(get(action, "Channel") or "")
        if leg is None:
            return self._err(head, "Channel specified does not exist")
        ch = leg.channel

        def move() -> None:
            ch.context = get(action, "Context") or ch.context
            ch.exten = get(action, "Exten") or ch.exten
            ch.priority = int(get(action, "Priority") or "1")
            leg.redirect_to = (ch.context, ch.exten)
            leg.redirected.set()
            self.newexten(ch, "NoOp", f"Redirect target reached by {ch.name}")
            hook = self.dialplan.get((ch.context, ch.exten))
            if hook is not None:
                self._spawn(hook(self, leg), "pbxsim-dialplan")

        self._spawn(self._later(move), "pbxsim-redirect")
        return self._ok(head, ("Message", "Redirect successful"))

    async def _act_playdtmf(self, action: Headers, head: Headers) -> list[Headers]:
        leg = self.legs.get(get(action, "Channel") or "")
        if leg is None:
            return self._err(head, "No such channel")
        digit = (get(action, "Digit") or "")[:1]
        # Blocks for the digit's duration; the Response comes after (fastagi_ivr_ami).
        await asyncio.sleep(self.scaled(int(get(action, "Duration") or "100") / 1000))
        target = leg.partner or leg
        self.dtmf_event(target.channel, digit)
        target.dtmf.put_nowait(digit)
        return self._ok(head, ("Message", "DTMF successfully queued"))

    # -- queues ------------------------------------------------------------------------------

    def _member_headers(self, queue: str, m: QueueMember) -> Headers:
        return [
            ("Queue", queue),
            ("MemberName", m.name),
            ("Interface", m.interface),
            ("StateInterface", m.state_interface),
            ("Membership", "dynamic"),
            ("Penalty", str(m.penalty)),
            ("CallsTaken", "0"),
            ("LastCall", "0"),
            ("LastPause", str(m.last_pause)),
            ("LoginTime", str(m.login_time)),
            ("InCall", "0"),
            ("Status", "1"),
            ("Paused", "1" if m.paused else "0"),
            ("PausedReason", m.reason),
            ("Ringinuse", "0"),
            ("Wrapuptime", "0"),
        ]

    def _queue_event(self, name: str, queue: str, m: QueueMember) -> None:
        self.emit([("Event", name), ("Privilege", "agent,all"), *self._member_headers(queue, m)])

    async def _act_queueadd(self, action: Headers, head: Headers) -> list[Headers]:
        queue = get(action, "Queue") or ""
        iface = get(action, "Interface") or ""
        if queue not in self.queues:
            return self._err(head, "Unable to add interface to queue: No such queue")
        if iface in self.queues[queue]:
            return self._err(head, "Unable to add interface: Already there")
        paused = (get(action, "Paused") or "false").lower() in ("true", "1", "yes")
        m = QueueMember(
            iface,
            get(action, "MemberName") or iface,
            get(action, "StateInterface") or iface,
            int(get(action, "Penalty") or "0"),
            paused,
        )
        self.queues[queue][iface] = m

        def fire() -> None:
            self.emit(
                [
                    ("Event", "DeviceStateChange"),
                    ("Privilege", "call,all"),
                    ("Device", f"Queue:{queue}_pause_{iface}"),
                    ("State", "INUSE" if paused else "NOT_INUSE"),
                ]
            )
            self._queue_event("QueueMemberAdded", queue, m)

        self._spawn(self._later(fire), "pbxsim-queue")
        return self._ok(head, ("Message", "Added interface to queue"))

    async def _act_queueremove(self, action: Headers, head: Headers) -> list[Headers]:
        queue = get(action, "Queue") or ""
        iface = get(action, "Interface") or ""
        m = self.queues.get(queue, {}).pop(iface, None)
        if m is None:
            return self._err(head, "Unable to remove interface: Not there")
        self._spawn(self._later(lambda: self._queue_event("QueueMemberRemoved", queue, m)), "pbxsim-queue")
        return self._ok(head, ("Message", "Removed interface from queue"))

    async def _act_queuepause(self, action: Headers, head: Headers) -> list[Headers]:
        iface = get(action, "Interface") or ""
        paused = (get(action, "Paused") or "false").lower() in ("true", "1", "yes")
        queues = [get(action, "Queue")] if get(action, "Queue") else list(self.queues)
        touched = [(q, self.queues[q][iface]) for q in queues if q in self.queues and iface in self.queues[q]]
        if not touched:
            return self._err(head, "Interface not found")
        for q, m in touched:
            m.paused, m.reason = paused, (get(action, "Reason") or "") if paused else ""
            m.last_pause = int(time.time())

            def fire(q: str = q, m: QueueMember = m) -> None:
                self.emit(
                    [
                        ("Event", "DeviceStateChange"),
                        ("Privilege", "call,all"),
                        ("Device", f"Queue:{q}_pause_{iface}"),
                        ("State", "INUSE" if m.paused else "NOT_INUSE"),
                    ]
                )
                self._queue_event("QueueMemberPause", q, m)

            self._spawn(self._later(fire), "pbxsim-queue")
        text = "Interface paused successfully" if paused else "Interface unpaused successfully"
        return self._ok(head, ("Message", text))

    async def _act_queuestatus(self, action: Headers, head: Headers) -> list[Headers]:
        wanted = get(action, "Queue")
        items: list[Headers] = []
        for q, members in self.queues.items():
            if wanted and q != wanted:
                continue
            items.append(
                [
                    ("Event", "QueueParams"),
                    ("Queue", q),
                    ("Max", "0"),
                    ("Strategy", "linear"),
                    ("Calls", "0"),
                    ("Holdtime", "0"),
                    ("TalkTime", "0"),
                    ("Completed", "0"),
                    ("Abandoned", "0"),
                    ("ServiceLevel", "20"),
                    ("ServicelevelPerf", "0.0"),
                    ("ServicelevelPerf2", "0.0"),
                    ("Weight", "0"),
                    *head,
                ]
            )
            for m in members.values():
                mh = dict(self._member_headers(q, m))
                items.append(
                    [
                        ("Event", "QueueMember"),
                        ("Queue", q),
                        ("Name", m.name),
                        ("Location", m.interface),
                        ("StateInterface", m.state_interface),
                        ("Membership", "dynamic"),
                        ("Penalty", str(m.penalty)),
                        ("CallsTaken", "0"),
                        ("LastCall", "0"),
                        ("LastPause", mh["LastPause"]),
                        ("LoginTime", mh["LoginTime"]),
                        ("InCall", "0"),
                        ("Status", "1"),
                        ("Paused", mh["Paused"]),
                        ("PausedReason", m.reason),
                        ("Wrapuptime", "0"),
                        *head,
                    ]
                )
        return self._list(head, "Queue status will follow", items, "QueueStatusComplete")

    async def _act_queuesummary(self, action: Headers, head: Headers) -> list[Headers]:
        wanted = get(action, "Queue")
        items: list[Headers] = []
        for q, members in self.queues.items():
            if wanted and q != wanted:
                continue
            avail = sum(1 for m in members.values() if not m.paused)
            items.append(
                [
                    ("Event", "QueueSummary"),
                    ("Queue", q),
                    ("LoggedIn", str(len(members))),
                    ("Available", str(avail)),
                    ("Callers", "0"),
                    ("HoldTime", "0"),
                    ("TalkTime", "0"),
                    ("LongestHoldTime", "0"),
                    *head,
                ]
            )
        return self._list(head, "Queue summary will follow", items, "QueueSummaryComplete")

    # -- Originate ---------------------------------------------------------------------------

    async def _act_originate(self, action: Headers, head: Headers) -> list[Headers]:
        is_async = (get(action, "Async") or "false").lower() in ("true", "1", "yes")
        if is_async:
            self._spawn(self._originate(action, head, report=True), "pbxsim-originate")
            return self._ok(head, ("Message", "Originate successfully queued"))
        ok = await self._originate(action, head, report=False)
        if ok:
            return self._ok(head, ("Message", "Originate successfully queued"))
        return self._err(head, "Originate failed")

    async def _originate(self, action: Headers, head: Headers, *, report: bool) -> bool:
        dial = get(action, "Channel") or ""
        timeout = int(get(action, "Timeout") or "30000") / 1000
        cid_name, cid_num = _parse_callerid(get(action, "CallerID"))
        variables = dict(v.partition("=")[::2] for v in get_all(action, "Variable"))
        target: Headers = []
        if get(action, "Application"):
            target = [("Application", get(action, "Application") or ""), ("Data", get(action, "Data") or "")]
        else:
            target = [("Context", get(action, "Context") or ""), ("Exten", get(action, "Exten") or "")]

        def respond(success: bool, reason: int, ch: Channel | None) -> None:
            if not report:
                return
            headers: Headers = [
                ("Event", "OriginateResponse"),
                ("Privilege", "call,all"),
                *head,
                ("Response", "Success" if success else "Failure"),
                ("Channel", ch.name if success and ch else dial),
                *target,
                ("Reason", str(reason)),
                ("Uniqueid", ch.uniqueid if success and ch else "<unknown>"),
                ("CallerIDNum", cid_num if cid_num else "<unknown>"),
                ("CallerIDName", cid_name if cid_name else "<unknown>"),
            ]
            if success and ch is not None:
                headers += ch.chanvariable_originate()
            self.emit(headers)

        tech, _, resource = dial.partition("/")
        phone: Phone | None = None
        device = ""
        if tech == "Local":
            spec = resource.removesuffix("/n")
            exten, _, context = spec.partition("@")
            device = f"Local/{spec}"
            phone = self.phones.get(device) or (LEGS.get(exten) if context == "acd-legs" else None)
        elif tech in ("PJSIP", "SIP"):
            device = dial
            phone = self.phones.get(dial)
            if phone is None or not phone.registered:
                respond(False, 0, None)  # no contact: the channel is never created
                return False
        else:
            respond(False, 0, None)  # unknown technology: no channel at all (originate_callback F)
            return False

        uid1 = get(action, "ChannelId") or new_uniqueid()
        if tech == "Local":
            seq = next(self._local_seq)
            base = f"Local/{resource.removesuffix('/n')}-{seq:08x}"
            exten, _, context = resource.removesuffix("/n").partition("@")
            one = Channel(
                f"{base};1", uid1, uid1, 0, context=context, exten=exten, variables=dict(variables), device=device
            )
            uid2 = get(action, "OtherChannelId") or new_uniqueid()
            two = Channel(
                f"{base};2", uid2, uid1, 4, context=context, exten=exten, variables=dict(variables), device=device
            )
            for c in (one, two):
                if cid_num:
                    c.cid_num, c.cid_name, c.conn_num, c.conn_name = cid_num, cid_name, cid_num, cid_name
            leg1 = self._new_leg(one, phone)
            leg2 = self._new_leg(two, phone)
            leg1.partner, leg2.partner = leg2, leg1
            far = leg2
        else:
            seq = next(self._chan_seq)
            one = Channel(
                f"{dial}-{seq:08x}",
                uid1,
                uid1,
                0,
                context="acd-phones",
                exten=resource,
                variables=dict(variables),
                tech=tech,
                device=device,
            )
            if cid_num:
                one.cid_num, one.cid_name, one.conn_num, one.conn_name = cid_num, cid_name, cid_num, cid_name
            leg1 = self._new_leg(one, phone)
            far = leg1

        if phone is None:
            # No such extension (originate_callback E).
            if far is not leg1:
                self._finish(far, 0)
            self.set_device_state(device, "INVALID")
            respond(False, 0, None)
            self._finish(leg1, 0)
            return False

        self.emit([("Event", "DialBegin"), ("Privilege", "call,all"), *one.block("Dest"), ("DialString", resource)])
        if phone.busy or phone.congestion:
            status, reason, cause = ("BUSY", 5, 17) if phone.busy else ("CONGESTION", 8, 34)
            far.channel.state = 7
            self.emit([("Event", "Newstate"), ("Privilege", "call,all"), *far.channel.block()])
            self.set_device_state(device, "INUSE" if tech == "Local" else "BUSY")
            self.emit([("Event", "DialEnd"), ("Privilege", "call,all"), *one.block("Dest"), ("DialStatus", status)])
            respond(False, reason, None)
            self._finish(leg1, 0)
            if far is not leg1:
                self._finish(far, cause)
            return False

        one.state = 5
        self.emit([("Event", "Newstate"), ("Privilege", "call,all"), *one.block()])
        self.emit([("Event", "DialState"), ("Privilege", "call,all"), *one.block("Dest"), ("DialStatus", "RINGING")])
        self.set_device_state(device, "INUSE" if tech == "Local" else "RINGING")

        answered = False
        if phone.answer_after is not None:
            wait = self.scaled(phone.answer_after)
            if wait <= self.scaled(timeout):
                try:
                    async with asyncio.timeout(wait):
                        await leg1.hungup.wait()
                except TimeoutError:
                    answered = True
        if not answered:
            if phone.answer_after is None or self.scaled(phone.answer_after) > self.scaled(timeout):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.scaled(timeout)):
                        await leg1.hungup.wait()
            respond(False, 3, None)
            self._finish(leg1, 19)
            if far is not leg1:
                self._finish(far, 19)
            return False

        if far is not leg1:
            self.set_state(far.channel, 6)
        self.set_state(one, 6)
        self.set_device_state(device, "INUSE")
        self.emit([("Event", "DialEnd"), ("Privilege", "call,all"), *one.block("Dest"), ("DialStatus", "ANSWER")])
        leg1.answered.set()
        self._spawn(self._run_answered(action, leg1, far, phone), "pbxsim-answered")
        # The answered channel starts its dialplan before Asterisk reports the Originate: in
        # originate_callback (A, G, H) the dialplan's first UserEvent and the customer leg's
        # Newchannel/DialBegin come before OriginateResponse. Let the dialplan run its first
        # steps (a customer leg that fails at once reports CallbackResult) before answering.
        for _ in range(DIALPLAN_HEAD_START):
            await asyncio.sleep(0)
        respond(True, 4, one)
        return True

    async def _run_answered(self, action: Headers, leg1: Leg, far: Leg, phone: Phone) -> None:
        """The originated channel runs its Context/Exten (or Application) until someone hangs up."""
        ch = leg1.channel
        context, exten = get(action, "Context"), get(action, "Exten")
        if context and exten:
            ch.context, ch.exten, ch.priority = context, exten, int(get(action, "Priority") or "1")
            hook = self.dialplan.get((context, exten))
            if hook is not None:
                self._spawn(hook(self, leg1), "pbxsim-dialplan")
        else:
            self.newexten(ch, get(action, "Application") or "Wait", get(action, "Data") or "")
        waits: list[asyncio.Future[object]] = [
            asyncio.ensure_future(leg1.hungup.wait()),
            asyncio.ensure_future(far.hungup.wait()),
        ]
        if phone.talk_for is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(self.scaled(phone.talk_for))))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not leg1.hungup.is_set() and not far.hungup.is_set():
            self.hangup_channel(far.channel, cause=16)  # the manager puts the phone down
        self._finish(far)
        if leg1 is not far:
            self._finish(leg1)

    # -- a bridge between an inbound call and an answered phone ------------------------------

    def bridge(self, a: str, b: str) -> None:
        """Join two up channels (what Dial/Queue/Bridge would do); a hangup of one ends the other."""
        la, lb = self.legs[a], self.legs[b]
        bridge_id = new_uniqueid()
        self.emit(
            [
                ("Event", "BridgeCreate"),
                ("Privilege", "call,all"),
                ("BridgeUniqueid", bridge_id),
                ("BridgeType", "basic"),
            ]
        )
        for leg in (la, lb):
            leg.channel.bridge_id = bridge_id
            self.emit(
                [
                    ("Event", "BridgeEnter"),
                    ("Privilege", "call,all"),
                    ("BridgeUniqueid", bridge_id),
                    *leg.channel.block(),
                ]
            )
        la.bridged, lb.bridged = lb, la

    def unbridge(self, leg: Leg) -> None:
        """``leg`` leaves its bridge (a Redirect): both sides get BridgeLeave and stop being joined."""
        other = leg.bridged
        for one in (leg, other):
            if one is None:
                continue
            ch = one.channel
            if ch.bridge_id:
                self.emit(
                    [("Event", "BridgeLeave"), ("Privilege", "call,all"), ("BridgeUniqueid", ch.bridge_id), *ch.block()]
                )
            ch.bridge_id = ""
            one.bridged = None


def _duration(ch: Channel) -> str:
    seconds = int(time.monotonic() - ch.created)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _parse_callerid(value: str | None) -> tuple[str, str]:
    """``"ACD Callback" <7000>`` → (name, number)."""
    if not value:
        return "", ""
    m = re.fullmatch(r'\s*"?([^"<]*)"?\s*<([^>]*)>\s*', value)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return "", value.strip()

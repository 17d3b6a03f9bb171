"""Test peer: scripted actors of the simulated PBX — callers and managers' phones.

Times are *telephone seconds*; the simulator multiplies them by its ``time_scale`` (tests run at
1/50 speed or so), like prompt lengths and AGI timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Press:
    """At the next command that takes input, press ``keys`` ``after`` s into it, ``gap`` s apart.

    ``on`` limits it to commands starting with that text (``"GET DATA"``, ``"RECORD FILE"``: speak
    for ``after`` s, then press ``#``), so a caller on hold can keep a key for a later question."""

    keys: str
    after: float = 0.2
    gap: float = 0.15
    on: str | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """Press nothing at the next command that takes input (its timeout runs out)."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """Hang up ``after`` s into the next prompt or input command (STREAM FILE, GET DATA...)."""

    after: float = 0.2


Step = Press | Silence | HangUp


@dataclass(slots=True)
class Caller:
    """A customer calling in. The dialplan runs ``AGI(agi://<target>/<script>,<args>)``.

    ``steps`` answer the IVR in order; ``hangup_after`` hangs up at a fixed moment after the
    call is answered, wherever the call is (idle AGI, waiting in queue, talking).
    """

    number: str = "5551234"
    name: str = "Customer"
    dialled: str = "100"
    script: str = "ivr"
    args: tuple[str, ...] = ()
    steps: list[Step] = field(default_factory=list)
    hangup_after: float | None = None
    variables: dict[str, str] = field(default_factory=dict)
    agisighup: bool = True
    trunk: str = "trunk"
    context: str = "acd-in"


@dataclass(slots=True)
class Phone:
    """A manager's device. ``device`` is what Originate dials: ``PJSIP/mgr1`` or ``Local/mgr1@acd-agents``.

    Behaviour on a call: answer after ``answer_after`` s (None: ring until the caller gives up),
    or be ``busy`` / ``congestion``; unregistered PJSIP devices fail at once (Reason 0).
    ``talk_for``: once answered, hang up after that many seconds (None: stay until hung up).
    ``hint``: ``(exten, context)`` of a dialplan hint on this device, for ExtensionStatus events.
    ``machine``: a customer's line answered by a machine (voicemail, an operator's announcement):
    the AMDCAUSE that AMD() reports for it, e.g. ``LONGGREETING-2000-1500`` (None: a human).
    """

    device: str
    answer_after: float | None = 0.5
    busy: bool = False
    congestion: bool = False
    registered: bool = True
    talk_for: float | None = None
    hint: tuple[str, str] | None = None
    name: str = ""
    machine: str | None = None

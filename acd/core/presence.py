"""Pure: the presence state machine of a manager, as one transition table.

`ACTIVE` in the table is not a state: it settles into `AVAILABLE` or `BUSY` by the
manager's load (see `Switchboard._settle`). A cause not allowed from the current state
is refused with `PresenceError`, naming the state and the cause.
"""

from __future__ import annotations

from enum import StrEnum

from acd.core.errors import CoreError
from acd.core.model import Presence

P = Presence


class Cause(StrEnum):
    SET_AVAILABLE = "set_available"  # the manager joins or rejoins (an explicit action)
    PAUSE = "pause"
    LOGOUT = "logout"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    OFFER_FAILED = "offer_failed"  # device busy or unreachable: skip, no penalty
    MISS = "miss"  # the offer timed out: counts towards the auto-pause
    AUTO_PAUSE = "auto_pause"  # missed offers or inactivity
    LOAD_CHANGED = "load_changed"  # work finished or assigned, device state changed
    WRAP_UP = "wrap_up"
    WRAP_UP_ENDED = "wrap_up_ended"
    WITHDRAW = "withdraw"  # the offer was taken back (caller hung up, reassigned)


ACTIVE = "active"
_WORKING = frozenset({P.AVAILABLE, P.BUSY})
_PRESENT = frozenset({P.AVAILABLE, P.BUSY, P.OFFERED, P.WRAP_UP})

# cause -> (states it may come from, where it leads)
TRANSITIONS: dict[Cause, tuple[frozenset[Presence], Presence | str]] = {
    Cause.SET_AVAILABLE: (frozenset(Presence), ACTIVE),
    Cause.PAUSE: (frozenset(Presence) - {P.OFFLINE}, P.PAUSED),
    Cause.LOGOUT: (frozenset(Presence), P.OFFLINE),
    Cause.OFFER: (frozenset({P.AVAILABLE}), P.OFFERED),
    Cause.ACCEPT: (frozenset({P.OFFERED}), ACTIVE),
    Cause.DECLINE: (frozenset({P.OFFERED}), ACTIVE),
    Cause.OFFER_FAILED: (frozenset({P.OFFERED}), ACTIVE),
    Cause.MISS: (frozenset({P.OFFERED}), ACTIVE),
    Cause.AUTO_PAUSE: (_PRESENT, P.PAUSED),
    Cause.LOAD_CHANGED: (_WORKING, ACTIVE),
    Cause.WRAP_UP: (_WORKING, P.WRAP_UP),
    Cause.WRAP_UP_ENDED: (frozenset({P.WRAP_UP}), ACTIVE),
    Cause.WITHDRAW: (frozenset({P.OFFERED}), ACTIVE),
}


class PresenceError(CoreError):
    """A presence change the state machine does not allow (the caller's mistake)."""

    def __init__(self, current: Presence, cause: Cause) -> None:
        super().__init__("bad_transition", f"cannot {cause.value.replace('_', ' ')} while {current.value}")
        self.current = current
        self.cause = cause


def next_presence(current: Presence, cause: Cause) -> Presence | str:
    allowed, target = TRANSITIONS[cause]
    if current not in allowed:
        raise PresenceError(current, cause)
    return target

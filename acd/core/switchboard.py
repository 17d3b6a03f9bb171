"""Pure: the routing core's state machine. Events in, commands out; no I/O, no clock.

`Switchboard.handle(event, now)` applies one event to the state it owns and returns the
commands that follow (offers to make, timers to start, rows to save). The dispatcher is
its only caller; tests drive it directly with a hand-held clock.

Invariant after every `handle`: no waiting contact has an eligible manager who is
available in its current escalation pool, so routing only re-examines what an event
changed (one new contact, one freed manager) and a decision costs O(candidates).
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import empty_by_construction, entry_step_index
from acd.core.model import Channel, Contact, ContactStatus, Manager, Outcome, Presence
from acd.core.policy import Pool, RoutingPolicy, SkipWhen
from acd.core.presence import ACTIVE, Cause, PresenceError, next_presence
from acd.core.ratings import ProficiencyRatings, RatingProvider
from acd.core.router import SHOWN_ONLY, RouterMemory, contact_value, rank

FILTER_SAMPLE = 20  # manager ids kept per filter reason in a decision's explanation


@dataclass(slots=True)
class _Pass:
    """Per-`handle` scratch: dirty objects and memoised facts valid for one `now`."""

    now: float
    day: str
    commands: list[ev.Command] = field(default_factory=list)
    contacts: dict[str, Contact] = field(default_factory=dict)
    managers: dict[str, Manager] = field(default_factory=dict)
    hopeless: set[tuple[object, ...]] = field(default_factory=set)
    # what this event changed, so routing re-examines only that (see the module invariant)
    touched_contacts: dict[str, Contact] = field(default_factory=dict)
    touched_managers: dict[str, Manager] = field(default_factory=dict)
    everything: bool = False


class Switchboard:
    """Owns contacts in the queue, managers and outstanding offers.

    Queue order: higher (decayed) priority first, then earlier arrival across all channels,
    then intake order. Web leads may lose priority as they cool (`priority_decay_per_hour`);
    within one channel that order never changes, so each channel keeps a sorted list and
    the lists are merged at the current time.
    """

    def __init__(self, policy: RoutingPolicy, ratings: RatingProvider | None = None) -> None:
        self.policy = policy
        self.ratings: RatingProvider = ratings or ProficiencyRatings()
        self.contacts: dict[str, Contact] = {}
        self.managers: dict[str, Manager] = {}
        self._queues: dict[Channel, list[tuple[float, float, int, str]]] = {ch: [] for ch in Channel}
        self._available: dict[str, Manager] = {}
        self._memory = RouterMemory()
        self._rng = random.Random(policy.seed)
        # the shadow policy keeps its own memory and random stream, so it never disturbs the live one
        self._shadow_memory = RouterMemory()
        self._shadow_rng = random.Random(policy.seed + 1)
        self._decisions = 0
        self._pass: _Pass | None = None

    # ---- public ------------------------------------------------------------------

    def handle(self, event: ev.Event, now: float) -> list[ev.Command]:
        """Apply one event; return the commands that follow, persistence first."""
        with self._one_pass(now):
            self._apply(event)
            return self._flush()

    def handle_arrivals(self, contacts: Sequence[Contact], now: float) -> list[ev.Command]:
        """`handle` of ContactArrived for each of `contacts`, in one pass: all of them join
        the queue, then routing runs once, taking them in queue order (a more urgent one of
        the same burst is offered first) and learning once per kind of contact that nobody
        can take it now. An arrival is never refused, so one pass answers for all."""
        with self._one_pass(now):
            for contact in contacts:
                self._arrive(contact)
            self._dispatch()
            return self._flush()

    def restore(self, contacts: Iterable[Contact], managers: Iterable[Manager], now: float) -> list[ev.Command]:
        """Rebuild after a restart from what the store holds.

        Offers outstanding at the crash are taken back without penalty (the manager may
        never have seen them); loads are recounted from the contacts actually assigned;
        wrap-ups that ran out while we were down end; waiting contacts keep their order,
        escalation step and pins; then routing runs once over everything. A time stored ahead
        of `now` (the wall clock was stepped back between two runs, `acd.clock`) counts from
        `now`, so no wrap-up, escalation step or inactivity limit runs longer by the step.
        """
        return self._rebuild(contacts, managers, now, beats=None)

    def resync(self, contacts: Iterable[Contact], managers: Iterable[Manager], now: float) -> list[ev.Command]:
        """Forget the state and take the store's again, while running: the store refused a
        batch whose changes were already made here (the dispatcher's dropped batch), so an
        offer, a presence or a queue place may exist here and not there.

        As `restore`, but live: an offer the store holds runs on, its timeout armed again
        (its manager was told of it once it was committed; one the store's manager does not
        hold is taken back as at a restart), and a manager's last heartbeat is the later of
        ours and the stored one (beats are not written). Every timer the stored state needs
        is started again, so the caller drops the ones it has. Routing memory (round-robin,
        random stream, decision numbering) goes on: a decision id is never reused.
        """
        beats = {m.id: m.last_heartbeat for m in self.managers.values()}
        self.contacts, self.managers, self._available = {}, {}, {}
        self._queues = {ch: [] for ch in Channel}
        return self._rebuild(contacts, managers, now, beats)

    def _rebuild(
        self, contacts: Iterable[Contact], managers: Iterable[Manager], now: float, beats: dict[str, float] | None
    ) -> list[ev.Command]:
        """`restore` (`beats` None) or `resync` (`beats`: the heartbeats heard so far)."""
        live = beats is not None
        why = "resync" if live else "restart"
        with self._one_pass(now):
            for m in managers:
                m.load = {}
                m.offer_contact_id = None
                self.managers[m.id] = m
            for c in sorted(contacts, key=lambda c: c.seq):
                if not c.status.is_open:
                    continue
                self.contacts[c.id] = c
                if c.status is ContactStatus.ASSIGNED and c.assigned_to in self.managers:
                    owner = self.managers[c.assigned_to]
                    owner.load[c.channel] = owner.load.get(c.channel, 0) + 1
                elif c.status is ContactStatus.OFFERED:
                    holder = self.managers.get(c.offered_to or "")
                    if (
                        live
                        and holder is not None
                        and holder.presence is Presence.OFFERED
                        and holder.offer_contact_id is None
                        and c.offer_expires_at is not None
                    ):
                        holder.offer_contact_id = c.id
                        self._cmd(ev.StartTimer(("offer", c.id), c.offer_expires_at))
                    else:
                        c.status, c.offered_to, c.offer_expires_at = ContactStatus.WAITING, None, None
                        self._dirty(c)
                if c.status is ContactStatus.WAITING:
                    if c.step_since > now:
                        c.step_since = now
                        self._dirty(c)
                    self._enqueue(c)
                    self._start_step_timer(c)
                if c.pinned_to and c.pin_expires_at is not None:
                    self._cmd(ev.StartTimer(("pin", c.id), c.pin_expires_at))
            for m in self.managers.values():
                if m.presence_since > now:
                    m.presence_since = now
                    self._dirty(m)
                if m.presence is Presence.OFFERED and m.offer_contact_id is None:
                    self._move(m, Cause.WITHDRAW, why)
                elif m.presence is Presence.WRAP_UP:
                    self._cmd(ev.StartTimer(("wrapup", m.id), m.presence_since + self._wrap_up_of(m)))
                elif m.presence in (Presence.AVAILABLE, Presence.BUSY):
                    self._move(m, Cause.LOAD_CHANGED, why)
                # after a restart panels could not beat while we were down; running, they did
                m.last_heartbeat = now if beats is None else max(m.last_heartbeat, beats.get(m.id, 0.0))
                if m.presence.is_staffed:
                    self._start_inactivity_timer(m)
                self._index(m)
            self._p.everything = True
            self._dispatch()
            return self._flush()

    @contextmanager
    def _one_pass(self, now: float) -> Iterator[None]:
        """The state of one call of `handle` (or `restore`): the time, and what it changed."""
        self._pass = _Pass(now=now, day=self.policy.calendar.day_key(now))
        try:
            yield
        finally:
            self._pass = None

    def queue(self, now: float) -> list[Contact]:
        """Waiting contacts in the order they will be served."""
        return [self.contacts[cid] for cid in self._queue_ids(now)]

    def waiting_count(self) -> int:
        return sum(len(q) for q in self._queues.values())

    # ---- event handling ----------------------------------------------------------

    def _apply(self, event: ev.Event) -> None:
        match event:
            case ev.ContactArrived(contact):
                self._arrive(contact)
            case ev.ContactAbandoned(cid, reason):
                self._abandon(cid, reason)
            case ev.ManagerSaved(manager):
                self._save_manager(manager)
            case ev.ManagerRemoved(mid):
                m = self._manager(mid)
                m.active = False
                self._presence_request(m, Presence.OFFLINE, "removed", "admin")
            case ev.PresenceSet(mid, presence, reason, by):
                self._presence_request(self._manager(mid), presence, reason, by)
            case ev.HeartbeatReceived(mid):
                self._manager(mid).last_heartbeat = self._now
            case ev.OfferAccepted(cid, mid):
                self._accept(cid, mid)
            case ev.OfferDeclined(cid, mid, reason):
                self._release_offer(cid, mid, Cause.DECLINE, reason)
            case ev.OfferFailed(cid, mid, reason):
                self._release_offer(cid, mid, Cause.OFFER_FAILED, reason)
            case ev.WorkFinished(cid, mid, outcome):
                self._finish(cid, mid, outcome)
            case ev.ContactReassigned(cid, mid, by, pin_until):
                self._reassign(cid, mid, by, pin_until)
            case ev.ContactTransferred(cid, by, to_manager, to_team, pin_until):
                self._transfer(cid, by, to_manager, to_team, pin_until)
            case ev.ContactRerouted():
                self._reroute(event)
            case ev.DeviceStateChanged(mid, busy):
                m = self._manager(mid)
                if m.device_busy != busy:
                    m.device_busy = busy
                    self._dirty(m)
                    if m.presence in (Presence.AVAILABLE, Presence.BUSY):
                        self._move(m, Cause.LOAD_CHANGED, "device in use" if busy else "device free")
            case ev.TimerFired(key):
                self._timer(key)
            case ev.PolicyReloaded(policy):
                self._reload(policy)
        self._dispatch()

    def _arrive(self, contact: Contact) -> None:
        if contact.id in self.contacts:
            return  # a redelivered intake event: the contact is already queued
        c = contact
        entry = entry_step_index(c, self.policy)
        # adapters that stored the contact as it enters the queue (acd.core.intake.entry_step)
        # save us a write
        if c.status is not ContactStatus.WAITING or not c.step_since:
            c.status, c.step, c.step_since = ContactStatus.WAITING, entry, self._now
            self._dirty(c)
        elif c.step != entry:
            c.step = entry
            self._dirty(c)
        self.contacts[c.id] = c
        self._enqueue(c)
        self._start_step_timer(c)
        if c.pinned_to and c.pin_expires_at is not None:
            self._cmd(ev.StartTimer(("pin", c.id), c.pin_expires_at))

    def _abandon(self, cid: str, reason: str) -> None:
        """The contact's other end is gone. Logged as an "end" decision whose summary is the
        reason (a hang-up, a lost call session...), with no manager: it offers nobody anything."""
        c = self.contacts.get(cid)
        if c is None:
            return  # already finished: hanging up after the end is not news
        self._log(c, None, "end", [], {}, {}, f"ended: {reason}")
        if c.status is ContactStatus.ASSIGNED:
            self._finish(cid, c.assigned_to, Outcome.DONE)
            return
        self._withdraw(c, reason)
        self._close(c, ContactStatus.ABANDONED, None)

    def _accept(self, cid: str, mid: str) -> None:
        c = self._contact(cid)
        m = self._manager(mid)
        if c.status is not ContactStatus.OFFERED or c.offered_to != mid:
            raise CoreError("not_offered", f"contact {cid} is not offered to {mid}")
        self._cmd(ev.CancelTimer(("offer", cid)))
        c.status, c.assigned_to, c.offered_to, c.offer_expires_at = ContactStatus.ASSIGNED, mid, None, None
        m.offer_contact_id = None
        m.missed_in_row = 0
        m.load[c.channel] = m.load.get(c.channel, 0) + 1
        self._count_today(m)
        m.assigned_today += 1
        self._dirty(c)
        self._move(m, Cause.ACCEPT, None)

    def _release_offer(self, cid: str, mid: str, cause: Cause, reason: str) -> None:
        """A declined, failed or missed offer: back to the queue at once, never again to
        the same manager while someone else could take it."""
        c = self._contact(cid)
        m = self._manager(mid)
        if c.status is not ContactStatus.OFFERED or c.offered_to != mid:
            raise CoreError("not_offered", f"contact {cid} is not offered to {mid}")
        self._cmd(ev.CancelTimer(("offer", cid)))
        c.status, c.offered_to, c.offer_expires_at = ContactStatus.WAITING, None, None
        c.declined_by = c.declined_by | {mid}
        self._enqueue(c)
        self._dirty(c)
        m.offer_contact_id = None
        if cause is Cause.MISS:
            m.missed_in_row += 1
            self._cmd(ev.WithdrawOffer(cid, mid, reason))
        self._move(m, cause, reason)
        if cause is Cause.MISS and m.missed_in_row >= max(1, self.policy.missed_offers_to_pause):
            self._move(m, Cause.AUTO_PAUSE, "missed offer")
            self._cmd(ev.NotifyManager(mid, "auto_pause", "missed offer"))

    def _finish(self, cid: str, mid: str | None, outcome: Outcome) -> None:
        c = self._contact(cid)
        if mid is not None and c.assigned_to not in (None, mid):
            raise CoreError("not_yours", f"contact {cid} is assigned to {c.assigned_to}, not {mid}")
        self._withdraw(c, "finished")
        owner = self.managers.get(c.assigned_to or "")
        self._close(c, ContactStatus.FINISHED, outcome)
        if owner is None:
            return
        owner.load[c.channel] = max(0, owner.load.get(c.channel, 0) - 1)
        self._count_today(owner)
        owner.handled_today += 1
        owner.last_finished_at = self._now
        self._dirty(owner)
        wrap = self.policy.rules(c.channel).wrap_up
        if wrap > 0 and owner.presence in (Presence.AVAILABLE, Presence.BUSY):
            self._move(owner, Cause.WRAP_UP, c.channel.value)
            self._cmd(ev.StartTimer(("wrapup", owner.id), self._now + wrap))
        elif owner.presence in (Presence.AVAILABLE, Presence.BUSY):
            self._move(owner, Cause.LOAD_CHANGED, "work finished")

    def _reassign(self, cid: str, mid: str, by: str, pin_until: float | None) -> None:
        """A supervisor's override. An assigned contact moves to the new owner at once;
        a waiting or offered one is pinned to them (until `pin_until`, if given) and
        offered as soon as they are available. Marked `override` so ratings leave it out."""
        c = self._contact(cid)
        target = self._manager(mid)
        c.override = True
        self._dirty(c)
        if c.status is ContactStatus.ASSIGNED:
            old = self.managers.get(c.assigned_to or "")
            if old is not None and old.id != mid:
                old.load[c.channel] = max(0, old.load.get(c.channel, 0) - 1)
                self._dirty(old)
                if old.presence in (Presence.AVAILABLE, Presence.BUSY):
                    self._move(old, Cause.LOAD_CHANGED, "reassigned away")
                self._cmd(ev.NotifyManager(old.id, "reassigned_away", cid))
                target.load[c.channel] = target.load.get(c.channel, 0) + 1
                c.assigned_to = mid
                self._dirty(target)
                if target.presence in (Presence.AVAILABLE, Presence.BUSY):
                    self._move(target, Cause.LOAD_CHANGED, "reassigned to")
                self._cmd(ev.NotifyManager(mid, "reassigned_to", cid))
            self._log(c, target, "override", [], {}, {}, f"reassigned by {by}")
            return
        self._withdraw(c, f"reassigned by {by}")
        c.pinned_to, c.pin_expires_at = mid, pin_until
        self._p.touched_contacts[c.id] = c  # its pool changed: route it again now
        if pin_until is not None:
            self._cmd(ev.StartTimer(("pin", cid), pin_until))
        self._log(c, target, "override", [], {}, {}, f"pinned to {target.name or mid} by {by}")

    def _transfer(
        self, cid: str, by: str, to_manager: str | None, to_team: str | None, pin_until: float | None
    ) -> None:
        """The owner of an assigned contact passes it on. It waits again at its old place in
        the queue (arrival time unchanged), never back to `by` while someone else could take
        it: pinned to `to_manager`, or at the policy's first team step with `to_team` as its
        team. Marked `override` (routing did not choose the new owner), logged as "transfer".

        Errors (nothing changes): `not_assigned`, `not_yours` (the one transferring is not the
        owner), `bad_transfer` (neither or both targets, or to oneself), `no_such_manager`."""
        c = self._contact(cid)
        if c.status is not ContactStatus.ASSIGNED:
            raise CoreError("not_assigned", f"contact {cid} is {c.status.value}, not assigned: nothing to transfer")
        if c.assigned_to != by:
            raise CoreError("not_yours", f"contact {cid} is assigned to {c.assigned_to}, not {by}")
        if (to_manager is None) == (to_team is None) or to_manager == by:
            raise CoreError("bad_transfer", "transfer to one other manager or to one team")
        target = self._manager(to_manager) if to_manager is not None else None
        old = self.managers.get(by)
        if old is not None:
            old.load[c.channel] = max(0, old.load.get(c.channel, 0) - 1)
            old.handled_today += 1
            old.last_finished_at = self._now
            self._dirty(old)
            if old.presence in (Presence.AVAILABLE, Presence.BUSY):
                self._move(old, Cause.LOAD_CHANGED, "transferred away")
        c.status, c.assigned_to, c.override = ContactStatus.WAITING, None, True
        c.declined_by = c.declined_by | {by}
        if target is not None:
            c.pinned_to, c.pin_expires_at = target.id, pin_until
            if pin_until is not None:
                self._cmd(ev.StartTimer(("pin", cid), pin_until))
            summary = f"transferred by {by} to {target.name or target.id}"
        else:
            steps = self.policy.steps
            c.team, c.preferred, c.pinned_to, c.pin_expires_at = to_team, (), None, None
            c.step = next((i for i, s in enumerate(steps) if s.pool is Pool.TEAM), 0)
            c.first_wait = None
            summary = f"transferred by {by} to team {to_team}"
        c.step_since = self._now
        self._start_step_timer(c)
        self._enqueue(c)
        self._dirty(c)
        self._p.touched_contacts[c.id] = c
        self._log(c, target, "transfer", [], {}, {}, summary)

    def _reroute(self, e: ev.ContactRerouted) -> None:
        """The CRM answers differently for a waiting or offered contact (its deal moved on):
        it takes the new `preferred`, `team` and `first_wait` and starts again from its
        entry step (the first one whose ring can hold anybody, as at arrival), keeping its
        place in the queue: the queue order never looks at whom a contact is for. An offer
        to someone outside the new step's pool is withdrawn without penalty; one to someone
        still in it runs on. Logged as "reroute", with the reason.

        Left as they are: a contact being worked (assigned), or gone; one a person placed,
        pinned to a manager (a supervisor's pin, a transfer to a manager) or passed to a
        team by a transfer (an override for nobody in particular). Only `payload` is
        applied when the routing itself is unchanged: it keeps its step and its offer.

        Example: waiting at step 2 'team' (sales) for deal D in approval, owner boris; D
        moves to delivery (egor, team logistics): preferred=("egor",), team "logistics",
        step 1 'preferred' for the stage's wait, still ahead of everyone who came after it.
        """
        c = self.contacts.get(e.contact_id)
        if c is None or c.status not in (ContactStatus.WAITING, ContactStatus.OFFERED):
            return
        if c.pinned_to or (c.override and not c.preferred):
            return
        if any(c.payload.get(k) != v for k, v in e.payload.items()):
            c.payload = {**c.payload, **e.payload}
            self._dirty(c)
        if e.override is not None and c.override != e.override:
            c.override = e.override
            self._dirty(c)
        if (c.preferred, c.team, c.first_wait) == (e.preferred, e.team, e.first_wait):
            return
        before = f"preferred {', '.join(c.preferred) or 'nobody'}, team {c.team or 'none'}"
        c.preferred, c.team, c.first_wait = e.preferred, e.team, e.first_wait
        c.step = 0
        c.step = entry_step_index(c, self.policy)
        c.step_since = self._now
        self._dirty(c)
        due = self._step_due(c)
        self._cmd(ev.CancelTimer(("escalate", c.id)) if due is None else ev.StartTimer(("escalate", c.id), due))
        steps = self.policy.steps
        pool = steps[min(c.step, len(steps) - 1)].pool
        summary = (
            f"re-routed: {e.reason}; {before} → preferred {', '.join(c.preferred) or 'nobody'}, "
            f"team {c.team or 'none'}; again from step {c.step + 1} '{pool.value}', at its place in the queue"
        )
        if c.status is ContactStatus.OFFERED:
            holder = self.managers.get(c.offered_to or "")
            if holder is None or not self._in_pool(c, holder, pool):
                summary += f"; offer to {c.offered_to} withdrawn"
                self._withdraw(c, f"re-routed: {e.reason}")
        else:
            self._enqueue(c)  # already there, at the same key: only marks it for routing
        self._log(c, None, "reroute", [], {}, {}, summary)

    def _presence_request(self, m: Manager, presence: Presence, reason: str | None, by: str) -> None:
        cause = {Presence.AVAILABLE: Cause.SET_AVAILABLE, Presence.PAUSED: Cause.PAUSE, Presence.OFFLINE: Cause.LOGOUT}
        if presence not in cause:
            raise CoreError("bad_presence", f"a manager can ask for available, paused or offline, not {presence}")
        next_presence(m.presence, cause[presence])  # refuse before changing anything
        if presence is Presence.AVAILABLE:
            if m.presence is Presence.OFFERED:
                return  # already in the queue, with an offer ringing
            m.missed_in_row = 0
            m.last_heartbeat = self._now
            self._move(m, Cause.SET_AVAILABLE, reason or by)
            self._start_inactivity_timer(m)
        elif presence is Presence.PAUSED:
            self._drop_offer(m, "paused")
            self._move(m, Cause.PAUSE, reason or "break")
        else:
            self._drop_offer(m, "offline")
            self._move(m, Cause.LOGOUT, reason or by)

    def _save_manager(self, profile: Manager) -> None:
        """Create a manager, or update their profile keeping their live state."""
        m = self.managers.get(profile.id)
        if m is None:
            self.managers[profile.id] = m = profile
            m.load = dict(m.load)
            if m.presence is not Presence.OFFLINE:
                m.presence_since = self._now
        else:
            for name in ("name", "team", "skills", "languages", "capacity", "device", "email", "order", "daily_cap"):
                setattr(m, name, getattr(profile, name))
            m.active = profile.active
            if not m.active and m.presence is not Presence.OFFLINE:
                self._drop_offer(m, "deactivated")
                self._move(m, Cause.LOGOUT, "deactivated")
            elif m.presence in (Presence.AVAILABLE, Presence.BUSY):
                self._move(m, Cause.LOAD_CHANGED, "profile changed")
        self._dirty(m)
        self._index(m)

    def _timer(self, key: tuple[str, str]) -> None:
        """A timer came due. If, by the time passed in, it is early (the wall clock was set
        back after it was started), it is started again for its due time, never dropped."""
        due = self._due(key)
        if due is None:
            return  # what it was for is over: answered, finished, rejoined...
        if due > self._now + 1e-9:
            self._cmd(ev.StartTimer(key, due))
            return
        kind, ident = key
        if kind == "offer":
            c = self.contacts[ident]
            self._release_offer(ident, c.offered_to or "", Cause.MISS, "missed offer")
        elif kind == "escalate":
            self._advance(self.contacts[ident], "timeout")
        elif kind == "wrapup":
            self._move(self.managers[ident], Cause.WRAP_UP_ENDED, None)
        elif kind == "inactivity":
            m = self.managers[ident]
            if m.on_voice:  # on the phone, not away: look again later
                self._cmd(ev.StartTimer(key, self._now + self.policy.inactivity_pause))
            else:
                self._move(m, Cause.AUTO_PAUSE, "inactive")
                self._cmd(ev.NotifyManager(m.id, "auto_pause", "inactive"))
        elif kind == "pin":
            c = self.contacts[ident]
            c.pinned_to, c.pin_expires_at = None, None
            self._p.touched_contacts[c.id] = c
            self._dirty(c)

    def _due(self, key: tuple[str, str]) -> float | None:
        """When the timer `key` should act, or None if there is nothing left to do."""
        kind, ident = key
        if kind in ("offer", "escalate", "pin"):
            c = self.contacts.get(ident)
            if c is None:
                return None
            if kind == "offer":
                return c.offer_expires_at if c.status is ContactStatus.OFFERED else None
            if kind == "pin":
                return c.pin_expires_at if c.pinned_to else None
            return self._step_due(c) if c.status is ContactStatus.WAITING else None
        m = self.managers.get(ident)
        if m is None:
            return None
        if kind == "wrapup":
            return m.presence_since + self._wrap_up_of(m) if m.presence is Presence.WRAP_UP else None
        limit = self.policy.inactivity_pause
        if kind == "inactivity" and limit > 0 and m.presence in (Presence.AVAILABLE, Presence.BUSY, Presence.WRAP_UP):
            return m.last_heartbeat + limit
        return None

    def _reload(self, policy: RoutingPolicy) -> None:
        """A new policy: waiting contacts stay in the queue (re-sorted if decay changed);
        outstanding offers run on; steps are clamped to the new ladder. The timers the policy
        times (a step's timeout and the hours that hold it, wrap-up, inactivity) are set
        again by the new one: a timeout cut from ten minutes to thirty seconds must not
        still wait ten (a timer that comes early is set again for its new time anyway)."""
        self.policy = policy
        self._p.everything = True
        waiting = [c for c in self.contacts.values() if c.status is ContactStatus.WAITING]
        self._queues = {ch: [] for ch in Channel}
        for c in waiting:
            if c.step >= len(policy.steps):
                c.step = len(policy.steps) - 1
                self._dirty(c)
            self._enqueue(c)
            self._rearm(("escalate", c.id))
        for m in self.managers.values():
            self._rearm(("wrapup", m.id))
            self._rearm(("inactivity", m.id))
            if m.presence in (Presence.AVAILABLE, Presence.BUSY):
                self._move(m, Cause.LOAD_CHANGED, "policy reloaded")

    def _rearm(self, key: tuple[str, str]) -> None:
        due = self._due(key)
        self._cmd(ev.CancelTimer(key) if due is None else ev.StartTimer(key, due))

    # ---- presence ----------------------------------------------------------------

    def _move(self, m: Manager, cause: Cause, reason: str | None) -> None:
        """Apply one presence transition from the table and record it."""
        target = next_presence(m.presence, cause)
        if target == ACTIVE:
            blocked = m.device_busy or (self.policy.voice_is_exclusive and m.on_voice)
            full = not any(m.has_room(ch) for ch in Channel)
            target = Presence.BUSY if blocked or full else Presence.AVAILABLE
        assert isinstance(target, Presence)
        new_reason = reason if target is Presence.PAUSED else None
        if target is not m.presence or new_reason != m.pause_reason:
            self._cmd(ev.LogTransition(ev.Transition(m.id, self._now, m.presence, target, new_reason, cause.value)))
            if target is not m.presence:
                m.presence_since = self._now
            m.presence, m.pause_reason = target, new_reason
        self._dirty(m)
        self._index(m)

    def _drop_offer(self, m: Manager, reason: str) -> None:
        if m.offer_contact_id and m.offer_contact_id in self.contacts:
            self._withdraw(self.contacts[m.offer_contact_id], reason)

    def _withdraw(self, c: Contact, reason: str) -> None:
        """Take back an outstanding offer of `c`, if any, with no penalty to the manager."""
        if c.status is ContactStatus.OFFERED and c.offered_to:
            m = self.managers.get(c.offered_to)
            self._cmd(ev.CancelTimer(("offer", c.id)))
            self._cmd(ev.WithdrawOffer(c.id, c.offered_to, reason))
            c.status, c.offered_to, c.offer_expires_at = ContactStatus.WAITING, None, None
            self._enqueue(c)
            self._dirty(c)
            if m is not None:
                m.offer_contact_id = None
                if m.presence is Presence.OFFERED:
                    self._move(m, Cause.WITHDRAW, reason)

    def _close(self, c: Contact, status: ContactStatus, outcome: Outcome | None) -> None:
        self._dequeue(c)
        for kind in ("escalate", "offer", "pin"):
            self._cmd(ev.CancelTimer((kind, c.id)))
        c.status, c.outcome, c.finished_at = status, outcome, self._now
        self._dirty(c)
        del self.contacts[c.id]

    def _start_inactivity_timer(self, m: Manager) -> None:
        if self.policy.inactivity_pause > 0:
            self._cmd(ev.StartTimer(("inactivity", m.id), m.last_heartbeat + self.policy.inactivity_pause))

    def _wrap_up_of(self, m: Manager) -> float:
        return max((self.policy.rules(ch).wrap_up for ch in Channel), default=0.0)

    def _count_today(self, m: Manager) -> None:
        day = self._p.day
        if m.day != day:
            m.day, m.assigned_today, m.handled_today = day, 0, 0

    def _taken_today(self, m: Manager) -> int:
        return m.assigned_today if m.day == self._p.day else 0

    def _index(self, m: Manager) -> None:
        if m.active and m.presence is Presence.AVAILABLE and m.offer_contact_id is None:
            self._available[m.id] = m
            self._p.touched_managers[m.id] = m
        else:
            self._available.pop(m.id, None)

    # ---- the queue ---------------------------------------------------------------

    def _queue_key(self, c: Contact) -> tuple[float, float, int, str]:
        decay = self.policy.rules(c.channel).priority_decay_per_hour / 3600.0
        return (-(c.priority + decay * c.arrived_at), c.arrived_at, c.seq, c.id)

    def _enqueue(self, c: Contact) -> None:
        self._p.touched_contacts[c.id] = c
        q = self._queues[c.channel]
        key = self._queue_key(c)
        i = bisect.bisect_left(q, key)
        if i == len(q) or q[i] != key:
            q.insert(i, key)

    def _dequeue(self, c: Contact) -> None:
        q = self._queues[c.channel]
        key = self._queue_key(c)
        i = bisect.bisect_left(q, key)
        if i < len(q) and q[i] == key:
            del q[i]

    def _queue_ids(self, now: float) -> Iterator[str]:
        def merged(ch: Channel) -> Iterator[tuple[float, float, int, str]]:
            shift = self.policy.rules(ch).priority_decay_per_hour / 3600.0 * now
            for base, arrived, seq, cid in list(self._queues[ch]):
                yield (base + shift, arrived, seq, cid)

        for _, _, _, cid in heapq.merge(*(merged(ch) for ch in Channel)):
            yield cid

    # ---- routing -----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Offer waiting contacts, in queue order, to the best available eligible manager.

        By the invariant only what this event touched can have a new match: contacts that
        (re-)entered the queue or widened their pool are routed first, then each manager
        who became available walks the queue until they get an offer. Restore and reload
        walk everything.
        """
        p = self._p
        if not self._available:
            return
        if p.everything:
            self._walk_queue(lambda: bool(self._available))
            return
        touched = sorted(
            (c for c in p.touched_contacts.values() if c.status is ContactStatus.WAITING and c.id in self.contacts),
            key=self._queue_key,
        )
        for c in touched:
            if not self._available:
                return
            self._route(c)
        for m in list(p.touched_managers.values()):
            if m.id in self._available:
                self._walk_queue(lambda m=m: m.id in self._available)  # type: ignore[misc]

    def _walk_queue(self, keep_going: Callable[[], bool]) -> None:
        for cid in self._queue_ids(self._now):
            if not keep_going():
                return
            c = self.contacts[cid]
            if c.status is ContactStatus.WAITING:
                self._route(c)

    def _route(self, c: Contact) -> None:
        steps = self.policy.steps
        while True:
            step = steps[min(c.step, len(steps) - 1)]
            pool = Pool.PREFERRED if c.pinned_to else step.pool
            memo = None if c.pinned_to or c.declined_by else self._class_of(c, pool)
            if memo is not None and memo in self._p.hopeless:
                return
            candidates = [m for m in self._available.values() if self._reject(c, m, pool) is None]
            if not candidates and c.declined_by and not self._others_could(c, pool):
                candidates = [
                    m for m in self._available.values() if self._reject(c, m, pool, allow_declined=True) is None
                ]
            if candidates:
                self._offer(c, candidates, pool)
                return
            if (
                c.step < len(steps) - 1
                and not c.pinned_to
                and not self._held(c, pool)
                and self._skippable(c, pool, step.skip_when)
            ):
                self._advance(c, f"nobody {'staffed' if step.skip_when is SkipWhen.NOBODY_STAFFED else 'available'}")
                continue
            if memo is not None:
                self._p.hopeless.add(memo)
            return

    def _class_of(self, c: Contact, pool: Pool) -> tuple[object, ...]:
        """What decides, for a contact neither pinned nor declined, who in `pool` may take
        it (_reject) and whether its step may be skipped (_skippable): contacts of one
        class that nobody could take in this pass need not be looked at again."""
        members: object = None  # who is in the pool, where that depends on the contact
        if pool is Pool.PREFERRED:
            members = c.preferred
        elif pool is Pool.TEAM:
            members = (c.preferred, c.team)
        held_by = c.team if self.policy.hold_outside_hours else None  # whose hours may hold it (_held)
        skills = c.required_skills if pool is not Pool.ANY else None
        return (c.step, pool, c.channel, skills, c.language, members, held_by)

    def _in_pool(self, c: Contact, m: Manager, pool: Pool) -> bool:
        if c.pinned_to:
            return m.id == c.pinned_to
        if pool is Pool.PREFERRED:
            return m.id in c.preferred
        if pool is Pool.TEAM:
            return m.id in c.preferred or (c.team is not None and m.team == c.team)
        return True

    def _reject(self, c: Contact, m: Manager, pool: Pool, allow_declined: bool = False) -> str | None:
        """Why `m` may not take `c` now, or None. Cheap checks first; the first failing
        rule is the one the explanation reports."""
        if not m.active:
            return "inactive"
        if not self._in_pool(c, m, pool):
            return "pinned elsewhere" if c.pinned_to else f"outside step '{pool.value}'"
        if m.presence is not Presence.AVAILABLE or m.offer_contact_id is not None:
            return m.presence.value
        if self.policy.voice_is_exclusive and m.on_voice:
            return "on a call"
        if not m.has_room(c.channel):
            return "at capacity"
        if not c.pinned_to and pool is not Pool.ANY and not c.required_skills <= m.skills.keys():
            return "missing skill"
        if c.language and m.languages and c.language not in m.languages:
            return "language"
        if m.daily_cap is not None and self._taken_today(m) >= m.daily_cap:
            return "daily cap"
        if not allow_declined and m.id in c.declined_by:
            return "declined or missed"
        return None

    def _staffed_fit(self, c: Contact, m: Manager, pool: Pool) -> bool:
        return (
            m.active
            and m.presence.is_staffed
            and self._in_pool(c, m, pool)
            and (pool is Pool.ANY or c.pinned_to is not None or c.required_skills <= m.skills.keys())
            and not (c.language and m.languages and c.language not in m.languages)
        )

    def _others_could(self, c: Contact, pool: Pool) -> bool:
        return any(m.id not in c.declined_by and self._staffed_fit(c, m, pool) for m in self.managers.values())

    def _skippable(self, c: Contact, pool: Pool, rule: SkipWhen) -> bool:
        if rule is SkipWhen.NOBODY_AVAILABLE:
            return True  # we only get here when nobody in the pool could take it
        return not any(self._staffed_fit(c, m, pool) for m in self._pool_members(c, pool))

    def _pool_members(self, c: Contact, pool: Pool) -> Iterable[Manager]:
        if pool is Pool.PREFERRED:
            return [self.managers[i] for i in c.preferred if i in self.managers]
        return self.managers.values()

    def _advance(self, c: Contact, why: str) -> None:
        self._p.touched_contacts[c.id] = c
        c.step += 1
        c.step_since = self._now
        self._dirty(c)
        self._start_step_timer(c)

    def _step_timeout(self, c: Contact) -> float | None:
        """Seconds the contact stays at its current step: the policy's, except that a
        contact may bring its own wait for the first step (a funnel stage's `wait`)."""
        steps = self.policy.steps
        if c.step >= len(steps) - 1:
            return None
        if c.step == 0 and c.first_wait is not None:
            return c.first_wait
        return steps[c.step].timeout

    def _step_due(self, c: Contact) -> float | None:
        """When the contact's step times out: its timeout after the step began or, where
        the policy holds contacts outside working hours, after its team next opened."""
        timeout = self._step_timeout(c)
        if timeout is None:
            return None
        start = c.step_since
        if self.policy.hold_outside_hours:
            opens = self.policy.calendar.schedule(c.team).next_open(start)
            start = start if opens is None else max(start, opens)
        return start + timeout

    def _start_step_timer(self, c: Contact) -> None:
        due = self._step_due(c)
        if due is not None:
            self._cmd(ev.StartTimer(("escalate", c.id), due))

    def _held(self, c: Contact, pool: Pool) -> bool:
        """Whether the contact waits at its step, not skipped for nobody being there: its
        team is closed now, and opens again (policy.hold_outside_hours), and the step's
        ring can hold somebody. A lead that comes at night then waits for the people of
        its first step (a repeat customer's deal owner) instead of going to whoever logs
        in first in the morning."""
        if not self.policy.hold_outside_hours or empty_by_construction(pool, c):
            return False
        schedule = self.policy.calendar.schedule(c.team)
        return not schedule.is_open(self._now) and schedule.next_open(self._now) is not None

    def _offer(self, c: Contact, candidates: list[Manager], pool: Pool) -> None:
        today = {m.id: self._taken_today(m) for m in candidates}
        ranked = rank(c, candidates, self.policy, self.ratings, self._memory, self._rng, today)
        winner = self.managers[ranked[0].manager_id]
        filtered, counts = self._explain_filters(c, pool, {m.id for m in candidates})
        value = contact_value(c, self.policy)
        top = ranked[0]
        parts = ", ".join(f"{k} {v:+.2f}" for k, v in top.components.items() if k not in SHOWN_ONLY)
        summary = (
            f"{winner.name or winner.id} for {c.channel.value} contact {c.id} "
            f"({self.policy.strategy.value} v{self.policy.version}, step {c.step + 1} '{pool.value}', "
            f"contact value {value:.2f}): score {top.score:.3f}"
            + (f" = {parts}" if parts else "")
            + (
                f"; rating {top.components['rating']:.2f} [{top.components['rating_low']:.2f}, "
                f"{top.components['rating_high']:.2f}] from {int(top.components['deals'])} deal(s)"
                if "rating_low" in top.components
                else ""
            )
            + f"; {len(candidates)} candidate(s), {sum(counts.values())} filtered"
        )
        shadow = self._shadow_choice(c, candidates, today)
        if shadow is not None:
            verdict = "agrees" if shadow.manager_id == winner.id else f"would pick {shadow.manager_id}"
            summary += f"; shadow {shadow.strategy} v{shadow.version} {verdict}"
        self._log(c, winner, "offer", ranked[:10], filtered, counts, summary, shadow)
        rules = self.policy.rules(c.channel)
        c.status, c.offered_to, c.offer_expires_at = ContactStatus.OFFERED, winner.id, self._now + rules.offer_timeout
        self._dequeue(c)
        self._dirty(c)
        winner.offer_contact_id = c.id
        winner.last_offered_at = self._now
        self._memory.rr_last_order = winner.order
        self._move(winner, Cause.OFFER, None)
        self._cmd(ev.StartTimer(("offer", c.id), c.offer_expires_at))
        self._cmd(ev.OfferContact(replace(c), replace(winner), c.offer_expires_at, self._last_decision))

    def _shadow_choice(self, c: Contact, candidates: list[Manager], today: dict[str, int]) -> ev.ShadowChoice | None:
        shadow = self.policy.shadow
        if shadow is None:
            return None
        policy = replace(self.policy, version=shadow.version, strategy=shadow.strategy, weights=shadow.weights)
        ranked = rank(c, candidates, policy, self.ratings, self._shadow_memory, self._shadow_rng, today)
        pick = ranked[0].manager_id if ranked else None
        if pick is not None:
            self._shadow_memory.rr_last_order = self.managers[pick].order
        return ev.ShadowChoice(shadow.version, shadow.strategy.value, pick)

    def _explain_filters(self, c: Contact, pool: Pool, chosen: set[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
        filtered: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        for m in self.managers.values():
            if m.id in chosen or not m.active:
                continue
            reason = self._reject(c, m, pool) or "declined or missed"
            counts[reason] = counts.get(reason, 0) + 1
            sample = filtered.setdefault(reason, [])
            if len(sample) < FILTER_SAMPLE:
                sample.append(m.id)
        return filtered, counts

    def _log(
        self,
        c: Contact,
        m: Manager | None,
        kind: str,
        ranked: list[ev.Candidate],
        filtered: dict[str, list[str]],
        counts: dict[str, int],
        summary: str,
        shadow: ev.ShadowChoice | None = None,
    ) -> None:
        self._decisions += 1
        steps = self.policy.steps
        d = ev.Decision(
            id=f"{int(self._now * 1000):013x}-{self._decisions:06x}",
            at=self._now,
            contact_id=c.id,
            manager_id=m.id if m else None,
            kind=kind,
            policy_version=self.policy.version,
            strategy=self.policy.strategy.value,
            step=c.step,
            pool=steps[min(c.step, len(steps) - 1)].pool.value,
            candidates=tuple(ranked),
            filtered=filtered,
            filtered_counts=counts,
            summary=summary,
            shadow=shadow,
        )
        self._last_decision = d
        self._cmd(ev.LogDecision(d))

    # ---- plumbing ----------------------------------------------------------------

    @property
    def _p(self) -> _Pass:
        assert self._pass is not None, "core used outside handle()"
        return self._pass

    @property
    def _now(self) -> float:
        return self._p.now

    def _cmd(self, command: ev.Command) -> None:
        self._p.commands.append(command)

    def _dirty(self, obj: Contact | Manager) -> None:
        if isinstance(obj, Contact):
            self._p.contacts[obj.id] = obj
        else:
            self._p.managers[obj.id] = obj

    def _contact(self, cid: str) -> Contact:
        c = self.contacts.get(cid)
        if c is None:
            raise CoreError("no_such_contact", f"no open contact {cid}")
        return c

    def _manager(self, mid: str) -> Manager:
        m = self.managers.get(mid)
        if m is None:
            raise CoreError("no_such_manager", f"no manager {mid}")
        return m

    def _flush(self) -> list[ev.Command]:
        p = self._p
        saves: list[ev.Command] = [ev.SaveContact(replace(c)) for c in p.contacts.values()]
        saves += [ev.SaveManager(replace(m, load=dict(m.load))) for m in p.managers.values()]
        logs = [cmd for cmd in p.commands if isinstance(cmd, ev.LogDecision | ev.LogTransition)]
        rest = [cmd for cmd in p.commands if not isinstance(cmd, ev.LogDecision | ev.LogTransition)]
        return saves + logs + rest


__all__ = ["CoreError", "PresenceError", "Switchboard"]

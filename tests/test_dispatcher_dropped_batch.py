"""A batch the store refuses leaves the routing state as the store has it, and routing goes on.

The core changes its state as it handles events; the store may then refuse the batch (a
value it will never take). The callers get the error, and the core takes the store's state
again (`Switchboard.resync`): no offer, presence or queue place exists only in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from acd.core import events as ev
from acd.core.model import Channel, Contact, ContactStatus, Manager, Presence
from acd.core.policy import ChannelRules, RoutingPolicy
from acd.core.switchboard import Switchboard
from acd.dispatcher import Dispatcher
from acd.storage import Refused, Store
from tests.core_helpers import contact, harness, manager

if TYPE_CHECKING:
    # Loaded by pytest through pytest_plugins in conftest.py; importing it here first would stop
    # pytest from rewriting its asserts.
    from storage_fixtures import Backend

# The `backend` and `store` fixtures (conftest.py) run the dispatcher tests on SQLite and PostgreSQL.

CALL_OFFER = 2.0  # seconds: short enough to watch the kept offer's timeout run out


class Stored:
    """What a store would hold: copies of what the committed commands saved."""

    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.managers: dict[str, Manager] = {}

    def commit(self, out: Iterable[ev.Command]) -> None:
        for cmd in out:
            if isinstance(cmd, ev.SaveContact):
                self.contacts[cmd.contact.id] = replace(cmd.contact)
            elif isinstance(cmd, ev.SaveManager):
                self.managers[cmd.manager.id] = replace(cmd.manager, load=dict(cmd.manager.load))

    def read(self) -> tuple[list[Contact], list[Manager]]:
        """Fresh copies, as rows read again would be."""
        contacts = [replace(c) for c in self.contacts.values() if c.status.is_open]
        return contacts, [replace(m, load=dict(m.load)) for m in self.managers.values()]


def test_resync_takes_the_stored_state_again_keeps_the_stored_offers_and_routes_on() -> None:
    h = harness(inactivity_pause=600.0)
    store = Stored()
    for m in (manager("anna"), manager("boris")):
        store.commit(h.send(ev.ManagerSaved(m)))
        store.commit(h.send(ev.PresenceSet(m.id, Presence.AVAILABLE)))
    store.commit(h.arrive(contact("c1", Channel.CALL)))
    holder = h.offered_to("c1")
    assert holder is not None
    other = "boris" if holder == "anna" else "anna"
    expires = h.board.contacts["c1"].offer_expires_at
    h.now += 5
    h.send(ev.HeartbeatReceived(other))  # beats are not saved: the store has an older one
    c2 = contact("c2", arrived_at=h.now, seq=10)
    store.contacts["c2"] = replace(c2)  # intake stores a contact before it posts its arrival

    # the batch the store refuses: in memory c2 goes to `other`, `holder`'s offer is withdrawn
    h.send(ev.ContactArrived(c2))
    h.send(ev.PresenceSet(holder, Presence.PAUSED, "lunch"))
    assert h.presence(holder) is Presence.PAUSED and h.offered_to("c2") == other

    h.now += 1
    out = h.board.resync(*store.read(), h.now)
    store.commit(out)

    assert h.presence(holder) is Presence.OFFERED and h.offered_to("c1") == holder
    assert ev.StartTimer(("offer", "c1"), expires) in out  # the stored offer still times out
    assert not any(isinstance(c, ev.WithdrawOffer) for c in out)  # nobody was told of the dropped batch
    assert [(o.contact.id, o.manager.id) for o in out if isinstance(o, ev.OfferContact)] == [("c2", other)]
    assert h.board.managers[other].last_heartbeat == h.now - 1
    assert h.board.contacts == {c.id: c for c in store.read()[0]}
    assert h.board.managers == {m.id: m for m in store.read()[1]}
    assert h.board.queue(h.now) == []


def test_resync_takes_back_an_offer_the_stored_manager_does_not_hold() -> None:
    """As at a restart: the offer's manager is not offered it in the store, so it is nobody's."""
    h = harness()
    h.join(manager("anna"))
    h.send(ev.PresenceSet("anna", Presence.PAUSED, "x"))
    offered = contact("c1", status=ContactStatus.OFFERED, offered_to="anna", offer_expires_at=h.now + 20, seq=1)
    out = h.board.resync([offered], [replace(h.board.managers["anna"])], h.now)
    assert h.board.contacts["c1"].status is ContactStatus.WAITING
    assert [c.id for c in h.board.queue(h.now)] == ["c1"]
    assert not any(isinstance(c, ev.StartTimer) and c.key == ("offer", "c1") for c in out)


# ---- through the dispatcher and the real store -------------------------------------


def same(contacts: Iterable[Contact], managers: Iterable[Manager]) -> tuple[dict[str, Contact], dict[str, Manager]]:
    """Contacts and managers by id, beats left out (a heartbeat is never written)."""
    return {c.id: c for c in contacts}, {m.id: replace(m, last_heartbeat=0.0) for m in managers}


@pytest.mark.parametrize("refused", ["number out of range", "NUL in text"])
async def test_a_refused_batch_leaves_memory_as_the_database_has_it_and_routing_goes_on(
    refused: str, store: Store, backend: Backend
) -> None:
    if refused == "NUL in text" and backend.name == "sqlite":
        pytest.skip("SQLite stores a NUL in text, so only PostgreSQL refuses this batch; the other case runs on both")
    bad = manager("carla", order=2**63) if refused == "number out of range" else manager("carla", name="Кар\0ла")
    policy = RoutingPolicy(inactivity_pause=0, channels={Channel.CALL: ChannelRules(offer_timeout=CALL_OFFER)})
    for mid in ("anna", "boris"):
        await store.save_manager(manager(mid))
    d = Dispatcher(Switchboard(policy), store)
    await d.start(await store.load_open_contacts(), await store.load_managers())
    seen: list[tuple[str, str, str]] = []
    missed = asyncio.Event()

    def listen(cmd: ev.Command) -> None:
        if isinstance(cmd, ev.OfferContact):
            seen.append(("offer", cmd.contact.id, cmd.manager.id))
        elif isinstance(cmd, ev.WithdrawOffer):
            seen.append(("withdraw", cmd.contact_id, cmd.manager_id))
            if cmd.reason == "missed offer":
                missed.set()

    d.subscribe(listen)
    for mid in ("anna", "boris"):
        await d.submit(ev.PresenceSet(mid, Presence.AVAILABLE))
    c1, _ = await store.create_contact(contact("c1", Channel.CALL, arrived_at=d.clock()))
    await d.submit(ev.ContactArrived(c1))
    holder = d.board.contacts["c1"].offered_to
    assert holder is not None
    other = "boris" if holder == "anna" else "anna"
    c2, _ = await store.create_contact(contact("c2", arrived_at=d.clock()))

    # one batch: c2 arrives (offered to `other`), `holder` pauses (c1's offer withdrawn), a bad
    # profile. The arrival is queued first: the tasks put theirs when they first run.
    pausing = asyncio.ensure_future(d.submit(ev.PresenceSet(holder, Presence.PAUSED, "lunch")))
    saving = asyncio.ensure_future(d.submit(ev.ManagerSaved(bad)))
    d.post(ev.ContactArrived(c2))
    refusal = (Refused, OverflowError)  # SQLite's driver cannot even bind the number
    with pytest.raises(refusal):
        await asyncio.wait_for(saving, 10)
    with pytest.raises(refusal):
        await pausing

    stored = same(await store.load_open_contacts(), await store.load_managers())
    assert same(d.board.contacts.values(), d.board.managers.values()) == stored
    assert d.board.contacts["c1"].offered_to == holder  # the committed offer runs on...
    assert d.board.contacts["c2"].offered_to == other  # ...and routing went on
    assert "carla" not in d.board.managers
    assert ("withdraw", "c1", holder) not in seen  # what the dropped batch did was never told
    assert seen.count(("offer", "c2", other)) == 1

    # the kept offer's timeout was armed again: `holder` misses it, and nobody is stuck
    await asyncio.wait_for(missed.wait(), 10)
    await d.submit(ev.OfferAccepted("c2", other))
    await d.submit(ev.OfferAccepted("c1", other))
    await d.stop()
    assert d.board.managers[holder].presence is Presence.PAUSED
    assert {c.id: (c.status, c.assigned_to) for c in await store.load_open_contacts()} == {
        "c1": (ContactStatus.ASSIGNED, other),
        "c2": (ContactStatus.ASSIGNED, other),
    }
    fresh = Switchboard(policy)
    fresh.restore(await store.load_open_contacts(), await store.load_managers(), d.clock())
    assert same(d.board.contacts.values(), d.board.managers.values()) == same(
        fresh.contacts.values(), fresh.managers.values()
    )

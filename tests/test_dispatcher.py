"""The dispatcher: one writer, commit before side effects, and it outlives bad batches."""

from __future__ import annotations

import asyncio

import pytest

from acd.core import events as ev
from acd.core.model import Presence
from acd.core.policy import RoutingPolicy
from acd.core.switchboard import Switchboard
from acd.dispatcher import Dispatcher
from acd.storage import Refused, StorageError
from tests.core_helpers import contact, manager


class FlakyStore:
    """Records what was committed; fails the next `fail_with` commits with the given errors."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[str], list[str]]] = []
        self.fail_with: list[BaseException] = []

    async def apply(self, contacts, managers, decisions, transitions) -> None:  # type: ignore[no-untyped-def]
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.commits.append(([c.id for c in contacts], [d.contact_id for d in decisions]))


async def started(store: FlakyStore) -> Dispatcher:
    d = Dispatcher(Switchboard(RoutingPolicy(inactivity_pause=0)), store)
    await d.start([], [manager("anna")])
    return d


async def test_offers_reach_listeners_only_after_their_commit() -> None:
    store = FlakyStore()
    d = await started(store)
    seen: list[tuple[str, int]] = []
    d.subscribe(
        lambda cmd: seen.append((type(cmd).__name__, len(store.commits))) if isinstance(cmd, ev.OfferContact) else None
    )
    await d.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    before = len(store.commits)
    await d.submit(ev.ContactArrived(contact("c1", arrived_at=1.0)))
    assert seen == [("OfferContact", before + 1)]
    assert store.commits[-1][1] == ["c1"]  # the decision was in that commit
    await d.stop()


async def test_a_database_outage_delays_the_answer_but_loses_nothing() -> None:
    store = FlakyStore()
    d = await started(store)
    store.fail_with = [StorageError("down"), StorageError("still down")]
    out = await asyncio.wait_for(d.submit(ev.PresenceSet("anna", Presence.AVAILABLE)), 10)
    assert any(isinstance(c, ev.LogTransition) for c in out)
    assert store.commits, "the batch was committed once the database came back"
    await d.stop()


@pytest.mark.parametrize(
    "refusal",
    [
        TypeError("'NoneType' object is not iterable"),
        # PostgreSQL and a NUL in text: the same write would be refused for ever, and retrying
        # it as an outage stalled every event behind it
        Refused('invalid byte sequence for encoding "UTF8": 0x00'),
    ],
)
async def test_a_batch_the_store_refuses_as_bad_data_is_dropped_and_routing_goes_on(refusal: Exception) -> None:
    store = FlakyStore()
    d = await started(store)
    store.fail_with = [refusal]
    with pytest.raises(type(refusal)):
        await asyncio.wait_for(d.submit(ev.PresenceSet("anna", Presence.AVAILABLE)), 10)
    await asyncio.wait_for(d.submit(ev.ContactArrived(contact("c1", arrived_at=1.0))), 10)
    assert store.commits[-1][0] == ["c1"]
    await d.stop()


async def test_a_refused_request_is_answered_with_the_core_error() -> None:
    from acd.core.errors import CoreError

    d = await started(FlakyStore())
    with pytest.raises(CoreError) as err:
        await d.submit(ev.OfferAccepted("nope", "anna"))
    assert err.value.code == "no_such_contact"
    await d.stop()


async def test_leads_posted_together_are_routed_in_one_pass_in_order_with_the_events_around_them() -> None:
    """Posted arrivals queued together go through the core in one pass; an event between
    them (here one whose caller waits) keeps its place, so what follows sees its effect."""
    store = FlakyStore()
    d = await started(store)
    offers: list[tuple[str, str]] = []
    d.subscribe(
        lambda cmd: offers.append((cmd.contact.id, cmd.manager.id)) if isinstance(cmd, ev.OfferContact) else None
    )
    d.post(ev.ContactArrived(contact("c1", arrived_at=1.0, seq=1)))
    d.post(ev.ContactArrived(contact("c2", arrived_at=2.0, seq=2)))
    joined = asyncio.ensure_future(d.submit(ev.PresenceSet("anna", Presence.AVAILABLE)))
    d.post(ev.ContactArrived(contact("c3", arrived_at=3.0, seq=3)))
    await asyncio.wait_for(joined, 10)
    await d.stop()
    assert d.processed == 4
    assert offers == [("c1", "anna")]  # the first in the queue when anna joined
    assert {c.id for c in d.board.contacts.values()} == {"c1", "c2", "c3"}

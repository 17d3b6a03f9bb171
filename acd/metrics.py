"""Adapter: Prometheus metrics, read from the core's state at scrape time plus counters
the dispatcher and API bump as things happen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus, Presence
from acd.core.switchboard import Switchboard


class _StateCollector(Collector):
    def __init__(self, board: Callable[[], Switchboard], clock: Callable[[], float]) -> None:
        self._board = board
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        board = self._board()
        now = self._clock()
        waiting = GaugeMetricFamily("acd_contacts_waiting", "Contacts waiting in the queue", labels=["channel"])
        longest = GaugeMetricFamily("acd_longest_wait_seconds", "Longest current wait", labels=["channel"])
        counts = dict.fromkeys(Channel, 0)
        oldest: dict[Channel, float] = {}
        for c in board.contacts.values():
            if c.status is ContactStatus.WAITING:
                counts[c.channel] += 1
                oldest[c.channel] = min(oldest.get(c.channel, now), c.arrived_at)
        for ch in Channel:
            waiting.add_metric([ch.value], counts[ch])
            longest.add_metric([ch.value], now - oldest[ch] if ch in oldest else 0.0)
        states = GaugeMetricFamily("acd_managers", "Managers by presence state", labels=["state"])
        by_state = dict.fromkeys(Presence, 0)
        for m in board.managers.values():
            if m.active:
                by_state[m.presence] += 1
        for state, n in by_state.items():
            states.add_metric([state.value], n)
        yield waiting
        yield longest
        yield states


class Metrics:
    def __init__(self, board: Callable[[], Switchboard], clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(board, clock))
        self.offers = Counter("acd_offers", "Offers made to managers", ["channel"], registry=self.registry)
        self.missed = Counter("acd_missed_offers", "Offers that timed out", registry=self.registry)
        self.decisions = Counter("acd_decisions", "Routing decisions logged", ["kind"], registry=self.registry)
        self.intake = Histogram(
            "acd_intake_latency_seconds",
            "From a lead's request to its durable commit",
            ["channel"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.requests = Counter("acd_http_requests", "HTTP requests", ["status"], registry=self.registry)

    def observe(self, command: ev.Command) -> None:
        match command:
            case ev.OfferContact(contact=c):
                self.offers.labels(c.channel.value).inc()
                self.decisions.labels("offer").inc()
            case ev.WithdrawOffer(reason="missed offer"):
                self.missed.inc()

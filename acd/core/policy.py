"""Pure: the routing policy and business rules, as the core consumes them.

The configuration loader (`acd.config`) builds these from YAML; tests build them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from acd.core.hours import Calendar
from acd.core.model import Channel


class Strategy(StrEnum):
    BEST_MATCH = "best-match"
    LEASTRECENT = "leastrecent"
    FEWESTCALLS = "fewestcalls"
    RANDOM = "random"
    RRMEMORY = "rrmemory"
    LINEAR = "linear"


class Pool(StrEnum):
    """Who may take a contact at an escalation step (bullseye rings, innermost first)."""

    PREFERRED = "preferred"
    TEAM = "team"
    SKILL = "skill"
    ANY = "any"


class SkipWhen(StrEnum):
    """When a step is skipped at once instead of waiting out its timeout.

    `nobody_staffed`: nobody in the pool is logged in and unpaused (worth waiting for a
    busy preferred manager, not for an absent one). `nobody_available`: nobody in the pool
    could take the contact right now.
    """

    NOBODY_STAFFED = "nobody_staffed"
    NOBODY_AVAILABLE = "nobody_available"


@dataclass(frozen=True, slots=True)
class EscalationStep:
    pool: Pool
    timeout: float | None = None  # seconds at this step before widening; None = last step
    skip_when: SkipWhen = SkipWhen.NOBODY_STAFFED


DEFAULT_STEPS = (
    EscalationStep(Pool.PREFERRED, 20),
    EscalationStep(Pool.TEAM, 20),
    EscalationStep(Pool.SKILL, 30),
    EscalationStep(Pool.ANY, None),
)


@dataclass(frozen=True, slots=True)
class Weights:
    """Score weights of best-match; each component is scaled to about 0..1 first."""

    value: float = 1.0  # expected value of this contact with this manager
    fit: float = 0.5  # best managers for the most valuable contacts, others for the rest
    load: float = 0.5  # penalty for a share of today's contacts above the candidates' mean
    exploration: float = 0.05  # share of decisions that go to a barely rated manager


@dataclass(frozen=True, slots=True)
class ChannelRules:
    offer_timeout: float = 20.0
    wrap_up: float = 0.0
    priority_decay_per_hour: float = 0.0  # web leads cool down: priority lost per hour waited


@dataclass(frozen=True, slots=True)
class ShadowPolicy:
    """A candidate policy that decides beside the live one on every offer, without acting,
    so a supervisor can see where and how often the two differ before switching."""

    version: str
    strategy: Strategy = Strategy.BEST_MATCH
    weights: Weights = Weights()


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Everything the router needs to decide, with the version every decision records."""

    version: str = "1"
    strategy: Strategy = Strategy.BEST_MATCH
    steps: tuple[EscalationStep, ...] = DEFAULT_STEPS
    weights: Weights = Weights()
    segment_keys: tuple[str, ...] = ("purpose", "price_tier", "temperature")
    # criterion -> option value -> multiplier of a contact's value (price tier x temperature)
    value_weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # criterion -> option value -> skills a contact with that answer requires
    skills_by_answer: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # criterion -> option value -> priority added to a contact with that answer
    priority_by_answer: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    default_team: str | None = None
    channels: Mapping[Channel, ChannelRules] = field(default_factory=dict)
    default_capacity: Mapping[Channel, int] = field(
        default_factory=lambda: {Channel.CALL: 1, Channel.CALLBACK: 1, Channel.WEB: 5, Channel.EMAIL: 10}
    )
    missed_offers_to_pause: int = 1
    inactivity_pause: float = 600.0  # seconds without a heartbeat; 0 disables
    voice_is_exclusive: bool = True  # on a call, a manager is offered nothing else
    min_rated_deals: int = 10  # below this a manager counts as "new" for exploration
    seed: int = 0
    calendar: Calendar = field(default_factory=Calendar)
    # outside its team's working hours a contact waits at its step: no skipping, and the
    # step's timeout counts from the next opening (Switchboard._held)
    hold_outside_hours: bool = False
    shadow: ShadowPolicy | None = None

    def rules(self, channel: Channel) -> ChannelRules:
        return self.channels.get(channel, ChannelRules())

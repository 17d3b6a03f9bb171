"""Adapter: who is calling (bearer tokens with roles) and how often (per-client limits)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from acd.api.routing import ROLES, ApiError


@dataclass(frozen=True, slots=True)
class Identity:
    role: str
    manager_id: str | None = None

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.manager_id}" if self.manager_id else self.role


# An unknown token or session cookie costs a database look-up, and comes before the API's
# rate limit (which is keyed by the credential): past this many a minute from one client,
# its look-ups are refused (429) until the bucket refills. The sign-in form's own limit is
# the same.
BAD_CREDENTIALS_PER_MINUTE = 20


class TokenCache:
    """Verified tokens for a few seconds, so a busy panel does not hit the database on
    every request; a revoked token stops working within `ttl` seconds."""

    def __init__(self, verify: Callable[[str], Awaitable[tuple[str, str | None] | None]], ttl: float = 10.0) -> None:
        self._verify = verify
        self._ttl = ttl
        self._seen: dict[str, tuple[float, Identity | None]] = {}

    async def identify(self, token: str, before_lookup: Callable[[], None] | None = None) -> Identity | None:
        """The token's identity, or None; `before_lookup` runs when the database must be
        asked (it may raise to refuse that)."""
        now = time.monotonic()
        hit = self._seen.get(token)
        if hit and hit[0] > now:
            return hit[1]
        if before_lookup is not None:
            before_lookup()
        found = await self._verify(token)
        ident = Identity(found[0], found[1]) if found else None
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[token] = (now + self._ttl, ident)
        return ident

    def forget(self) -> None:
        self._seen.clear()


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to that many (or
    up to `burst`, for a slow rate that must still allow a few tries at once).

    At most `max_keys` keys are remembered; past that the one checked longest ago is
    forgotten (it starts again with a full bucket). So a flood from more addresses than
    that costs bounded memory and O(1) a request: pruning every idle key at once did
    nothing, and ran again on every request, once all of them were active."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
        burst: int | None = None,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, per_minute if burst is None else burst))
        self.max_keys = max_keys
        self._clock = clock
        # in the order of their last check; an OrderedDict, because taking a plain dict's
        # first key scans the holes its deletions left, O(n) again under a flood
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> None:
        """Spend one token for `key`, or raise 429 with Retry-After."""
        self._refuse(self._settle(key, 1.0))

    def refuse_if_spent(self, key: str) -> None:
        """Raise 429 as `check` would, spending nothing: for a limit on failures, asked
        before the attempt (which `spend` then charges if it fails)."""
        self._refuse(self._settle(key, 0.0))

    def spend(self, key: str) -> None:
        """Spend one token for `key` if it has one; never raises."""
        self._settle(key, 1.0)

    def _settle(self, key: str, cost: float) -> float:
        """The tokens `key` has now, before `cost` is taken from them (when there is one)."""
        now = self._clock()
        buckets = self._buckets
        tokens, last = buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        buckets[key] = (tokens if tokens < 1.0 else tokens - cost, now)
        buckets.move_to_end(key)
        if len(buckets) > self.max_keys:
            buckets.popitem(last=False)
        return tokens

    def _refuse(self, tokens: float) -> None:
        if tokens < 1.0:
            retry = max(1, int((1.0 - tokens) / self.rate) + 1)
            raise ApiError(429, "rate_limited", "too many requests, try again later", {"Retry-After": str(retry)})

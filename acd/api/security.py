"""Adapter: who is calling (bearer tokens with roles) and how often (per-client limits)."""

from __future__ import annotations

import time
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


class TokenCache:
    """Verified tokens for a few seconds, so a busy panel does not hit the database on
    every request; a revoked token stops working within `ttl` seconds."""

    def __init__(self, verify: Callable[[str], Awaitable[tuple[str, str | None] | None]], ttl: float = 10.0) -> None:
        self._verify = verify
        self._ttl = ttl
        self._seen: dict[str, tuple[float, Identity | None]] = {}

    async def identify(self, token: str) -> Identity | None:
        now = time.monotonic()
        hit = self._seen.get(token)
        if hit and hit[0] > now:
            return hit[1]
        found = await self._verify(token)
        ident = Identity(found[0], found[1]) if found else None
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[token] = (now + self._ttl, ident)
        return ident

    def forget(self) -> None:
        self._seen.clear()


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, per_minute))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> None:
        """Spend one token for `key`, or raise 429 with Retry-After."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            retry = max(1, int((1.0 - tokens) / self.rate) + 1)
            raise ApiError(429, "rate_limited", "too many requests, try again later", {"Retry-After": str(retry)})
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle clients rather than grow without bound
            cutoff = now - self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > cutoff}

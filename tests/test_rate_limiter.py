"""The per-client token bucket behind the public form, callback and sign-in limits."""

from __future__ import annotations

from acd.api.routing import ApiError
from acd.api.security import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(limiter: RateLimiter, key: str) -> bool:
    try:
        limiter.check(key)
    except ApiError as err:
        assert err.status == 429 and int(err.headers["Retry-After"]) >= 1
        return True
    return False


def test_a_client_gets_its_burst_then_one_more_as_the_bucket_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [refused(limiter, "a") for _ in range(4)] == [False, False, False, True]
    assert not refused(limiter, "b")  # each client has its own bucket
    clock.now += 20  # a third of a minute: one request's worth
    assert [refused(limiter, "a") for _ in range(2)] == [False, True]


def test_past_max_keys_the_client_checked_longest_ago_is_forgotten_and_memory_stays_bounded() -> None:
    """A flood from more addresses than `max_keys`: each request costs O(1) and the table
    never grows past the bound; the clients still active keep their (spent) buckets."""
    clock = Clock()
    limiter = RateLimiter(2, clock, max_keys=3)
    for key in ("a", "a", "b", "b", "c", "c"):
        assert not refused(limiter, key)
    assert refused(limiter, "a")  # a's is spent, and checking moves it to the end
    assert not refused(limiter, "d")  # b, checked longest ago, is forgotten
    assert len(limiter._buckets) == 3
    assert refused(limiter, "a") and refused(limiter, "c")
    assert not refused(limiter, "b")  # forgotten: a full bucket again


def test_a_flood_of_distinct_clients_keeps_the_table_at_its_bound() -> None:
    limiter = RateLimiter(10, Clock(), max_keys=100_000)
    for i in range(250_000):
        limiter.check(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    assert len(limiter._buckets) == 100_000


def test_a_limit_on_failures_is_asked_before_the_attempt_and_charged_after_a_failure() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock)
    for _ in range(5):
        limiter.refuse_if_spent("a")  # asking spends nothing
    limiter.spend("a")
    limiter.refuse_if_spent("a")
    limiter.spend("a")
    try:
        limiter.refuse_if_spent("a")
    except ApiError as err:
        assert err.status == 429 and int(err.headers["Retry-After"]) == 31
    else:
        raise AssertionError("two failures spent a limit of two")
    limiter.spend("a")  # a failure past the limit raises nothing: its answer is already chosen
    limiter.refuse_if_spent("b")
    clock.now += 30  # half a minute: one failure's worth
    limiter.refuse_if_spent("a")
    assert refused(limiter, "a") is False and refused(limiter, "a") is True

"""Specification of the rate limiter and the account lockout (memory and Redis storage)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tillpay.kit import ratelimit
from tillpay.kit.ratelimit import Lockout, RateDecision, RateLimiter, RatePolicy, headers

REDIS_URL = "redis://127.0.0.1:6379/0"
# Nothing listens on port 1, so connections are refused at once.
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"

MakeLimiter = Callable[..., RateLimiter]


def _redis_reachable() -> bool:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _require_redis() -> None:
    if _redis_reachable():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is required in CI but not reachable at {REDIS_URL}")
    pytest.skip(f"Redis not reachable at {REDIS_URL}")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    _require_redis()
    return REDIS_URL


@pytest.fixture
def redis_uri() -> str:
    _require_redis()
    return REDIS_URL


@pytest.fixture
async def make_limiter(storage_uri: str) -> AsyncIterator[MakeLimiter]:
    created: list[RateLimiter] = []

    def make(uri: str | None = None, *, fail_open: bool = False, **kwargs: Any) -> RateLimiter:
        limiter = RateLimiter(uri or storage_uri, fail_open=fail_open, **kwargs)
        created.append(limiter)
        return limiter

    yield make
    for limiter in created:
        await limiter.close()


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> RateLimiter:
    return make_limiter()


@pytest.fixture
def client() -> str:
    """A client key unique to the test, so tests sharing Redis never interfere."""
    return f"client-{secrets.token_hex(8)}"


async def _hits(limiter: RateLimiter, policy: str, key: str, count: int) -> list[RateDecision]:
    return [await limiter.hit(policy, key) for _ in range(count)]


# --- policies -------------------------------------------------------------------


def test_register_returns_the_policy_that_lookup_finds() -> None:
    limiter = RateLimiter(fail_open=False)
    registered = limiter.register("payments", "100/minute;1000/hour")
    assert limiter.policy("payments") is registered
    assert [(item.amount, item.get_expiry()) for item in registered.limits] == [
        (100, 60),
        (1000, 3600),
    ]


def test_policy_windows_are_ordered_shortest_first() -> None:
    policy = RatePolicy.parse("global", "1000/hour;10/second")
    assert [item.get_expiry() for item in policy.limits] == [1, 3600]


def test_unknown_policy_lookup_raises_key_error_naming_it() -> None:
    limiter = RateLimiter(fail_open=False)
    limiter.register("auth", "5/minute")
    with pytest.raises(KeyError, match="'webhooks' is not registered"):
        limiter.policy("webhooks")


def test_registering_a_name_twice_is_rejected() -> None:
    limiter = RateLimiter(fail_open=False)
    limiter.register("auth", "5/minute")
    with pytest.raises(ValueError, match="already registered"):
        limiter.register("auth", "10/minute")


@pytest.mark.parametrize("spec", ["", "abc", "10/fortnight", "ten/minute", "5/minute;;x"])
def test_unparsable_spec_raises_value_error_naming_spec_and_format(spec: str) -> None:
    limiter = RateLimiter(fail_open=False)
    with pytest.raises(ValueError, match=r"invalid rate-limit spec .* for policy 'auth'.*e\.g\."):
        limiter.register("auth", spec)


def test_zero_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="below 1"):
        RatePolicy.parse("auth", "0/minute")


@pytest.mark.parametrize("name", ["", "Auth", "a:b", "a/b", "1st", "x" * 64])
def test_policy_name_outside_the_safe_alphabet_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid rate-limit policy name"):
        RatePolicy.parse(name, "5/minute")


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown rate-limit strategy"):
        RateLimiter(fail_open=False, strategy="leaky-bucket")


def test_unsupported_storage_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported rate-limit storage scheme"):
        RateLimiter("memcached://127.0.0.1:11211", fail_open=False)


# --- limiting -------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window", "sliding-window-counter"])
async def test_allows_up_to_the_limit_then_denies(
    make_limiter: MakeLimiter, client: str, strategy: str
) -> None:
    limiter = make_limiter(strategy=strategy)
    limiter.register("auth", "3/minute")
    decisions = await _hits(limiter, "auth", client, 4)
    assert [d.allowed for d in decisions] == [True, True, True, False]


async def test_denied_decision_has_retry_after_within_the_window(
    limiter: RateLimiter, client: str
) -> None:
    limiter.register("auth", "1/minute")
    await limiter.hit("auth", client)
    denied = await limiter.hit("auth", client)
    assert denied.retry_after is not None
    assert 1 <= denied.retry_after <= 60


async def test_allowed_decision_has_no_retry_after(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "1/minute")
    assert (await limiter.hit("auth", client)).retry_after is None


async def test_remaining_counts_down_to_zero(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "3/minute")
    decisions = await _hits(limiter, "auth", client, 3)
    assert [(d.limit, d.remaining) for d in decisions] == [(3, 2), (3, 1), (3, 0)]


async def test_reset_after_is_within_the_window(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "3/minute")
    decision = await limiter.hit("auth", client)
    assert 0 <= decision.reset_after <= 60


async def test_cost_consumes_several_units(limiter: RateLimiter, client: str) -> None:
    limiter.register("payments", "5/minute")
    decision = await limiter.hit("payments", client, cost=3)
    assert decision.remaining == 2
    assert not (await limiter.hit("payments", client, cost=3)).allowed


async def test_cost_below_one_is_rejected(limiter: RateLimiter, client: str) -> None:
    limiter.register("payments", "5/minute")
    with pytest.raises(ValueError, match="cost"):
        await limiter.hit("payments", client, cost=0)


async def test_different_keys_are_independent(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "1/minute")
    await limiter.hit("auth", client, "a")
    assert not (await limiter.hit("auth", client, "a")).allowed
    assert (await limiter.hit("auth", client, "b")).allowed


async def test_policies_with_the_same_key_are_independent(
    limiter: RateLimiter, client: str
) -> None:
    limiter.register("auth", "1/minute")
    limiter.register("payments", "1/minute")
    await limiter.hit("auth", client)
    assert (await limiter.hit("payments", client)).allowed


async def test_unregistered_policy_object_can_be_hit(limiter: RateLimiter, client: str) -> None:
    policy = RatePolicy.parse("adhoc", "1/minute")
    assert (await limiter.hit(policy, client)).allowed
    assert not (await limiter.hit(policy, client)).allowed


async def test_multi_window_policy_reports_the_window_with_least_remaining(
    limiter: RateLimiter, client: str
) -> None:
    limiter.register("auth", "2/second;5/minute")
    decision = await limiter.hit("auth", client)
    assert (decision.limit, decision.remaining) == (2, 1)


async def test_multi_window_policy_denies_when_the_short_window_is_exhausted(
    limiter: RateLimiter, client: str
) -> None:
    limiter.register("auth", "2/second;5/minute")
    *_, denied = await _hits(limiter, "auth", client, 3)
    assert (denied.allowed, denied.limit, denied.retry_after) == (False, 2, 1)


async def test_multi_window_policy_denies_when_the_long_window_is_exhausted(
    limiter: RateLimiter, client: str
) -> None:
    limiter.register("auth", "2/second;5/minute")
    # Stay under 2/second while using up 5/minute.
    await _hits(limiter, "auth", client, 2)
    await asyncio.sleep(1.05)
    await _hits(limiter, "auth", client, 2)
    await asyncio.sleep(1.05)
    await limiter.hit("auth", client)
    denied = await limiter.hit("auth", client)
    assert (denied.allowed, denied.limit) == (False, 5)
    assert denied.retry_after is not None
    assert denied.retry_after > 1


async def test_test_does_not_consume(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "1/minute")
    for _ in range(3):
        assert (await limiter.test("auth", client)).allowed
    assert (await limiter.hit("auth", client)).allowed


async def test_test_reports_an_exhausted_limit_as_denied(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "1/minute")
    await limiter.hit("auth", client)
    decision = await limiter.test("auth", client)
    assert not decision.allowed
    assert decision.retry_after is not None
    assert decision.retry_after >= 1


async def test_reset_clears_the_counter_of_that_key(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "2/second;1/minute")
    await limiter.hit("auth", client)
    await limiter.reset("auth", client)
    assert (await limiter.hit("auth", client)).allowed


async def test_check_storage_is_true_when_reachable(limiter: RateLimiter) -> None:
    assert await limiter.check_storage()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a:b",), ("a", "b")),
        (("a/b",), ("a", "b")),
        (('a", "b',), ("a", "b")),
        (("tillpay:rl:auth:x",), ("x",)),
        (("",), ()),
        (("a", "b"), ("b", "a")),
    ],
)
async def test_crafted_keys_do_not_collide(
    limiter: RateLimiter, client: str, first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    limiter.register("auth", "1/minute")
    await limiter.hit("auth", client, *first)
    assert not (await limiter.hit("auth", client, *first)).allowed
    assert (await limiter.hit("auth", client, *second)).allowed


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    second=st.lists(st.text(max_size=8), max_size=3).map(tuple),
)
async def test_distinct_key_tuples_never_share_a_counter(
    first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    assume(first != second)
    limiter = RateLimiter(fail_open=False)
    limiter.register("auth", "1/minute")
    await limiter.hit("auth", *first)
    assert (await limiter.hit("auth", *second)).allowed


async def test_limiters_on_the_same_redis_share_counters(redis_uri: str, client: str) -> None:
    first, second = (RateLimiter(redis_uri, fail_open=False) for _ in range(2))
    try:
        for limiter in (first, second):
            limiter.register("auth", "1/minute")
        await first.hit("auth", client)
        assert not (await second.hit("auth", client)).allowed
    finally:
        await first.close()
        await second.close()


async def test_key_secret_changes_the_stored_keys(redis_uri: str, client: str) -> None:
    plain = RateLimiter(redis_uri, fail_open=False)
    keyed = RateLimiter(redis_uri, fail_open=False, key_secret=secrets.token_bytes(32))
    try:
        for limiter in (plain, keyed):
            limiter.register("auth", "1/minute")
        await plain.hit("auth", client)
        assert (await keyed.hit("auth", client)).allowed
    finally:
        await plain.close()
        await keyed.close()


# --- headers --------------------------------------------------------------------


def test_headers_of_an_allowed_decision() -> None:
    decision = RateDecision(allowed=True, limit=10, remaining=7, reset_after=42, retry_after=None)
    assert headers(decision) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "7",
        "RateLimit-Reset": "42",
    }


def test_headers_of_a_denied_decision_include_retry_after() -> None:
    decision = RateDecision(allowed=False, limit=10, remaining=0, reset_after=42, retry_after=42)
    assert headers(decision) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "42",
        "Retry-After": "42",
    }


def test_retry_after_header_is_at_least_one_second() -> None:
    decision = RateDecision(allowed=False, limit=2, remaining=0, reset_after=0, retry_after=0)
    assert headers(decision)["Retry-After"] == "1"


def test_degraded_decisions_carry_no_ratelimit_counts() -> None:
    allowed = RateDecision(True, 10, 10, 60, None, degraded=True)
    denied = RateDecision(False, 10, 0, 2, 2, degraded=True)
    assert headers(allowed) == {}
    assert headers(denied) == {"Retry-After": "2"}


async def test_headers_of_a_real_denial(limiter: RateLimiter, client: str) -> None:
    limiter.register("auth", "1/minute")
    await limiter.hit("auth", client)
    result = headers(await limiter.hit("auth", client))
    assert result["RateLimit-Limit"] == "1"
    assert result["RateLimit-Remaining"] == "0"
    assert int(result["Retry-After"]) >= 1
    assert 0 <= int(result["RateLimit-Reset"]) <= 60


# --- unreachable storage --------------------------------------------------------


@pytest.fixture
async def unreachable() -> AsyncIterator[Callable[[bool], RateLimiter]]:
    created: list[RateLimiter] = []

    def make(fail_open: bool) -> RateLimiter:
        limiter = RateLimiter(UNREACHABLE_REDIS_URL, fail_open=fail_open)
        limiter.register("auth", "5/minute")
        created.append(limiter)
        return limiter

    yield make
    for limiter in created:
        await limiter.close()


async def test_fail_open_allows_and_marks_the_decision_degraded(
    unreachable: Callable[[bool], RateLimiter],
    client: str,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.perf_counter()
    decision = await unreachable(True).hit("auth", client)
    record_property("elapsed_seconds", round(time.perf_counter() - started, 3))
    assert (decision.allowed, decision.degraded) == (True, True)


async def test_fail_closed_denies_with_a_short_retry_after(
    unreachable: Callable[[bool], RateLimiter],
    client: str,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.perf_counter()
    decision = await unreachable(False).hit("auth", client)
    record_property("elapsed_seconds", round(time.perf_counter() - started, 3))
    assert (decision.allowed, decision.degraded) == (False, True)
    assert decision.retry_after is not None
    assert 1 <= decision.retry_after <= 5


async def test_storage_failure_is_logged_as_error(
    unreachable: Callable[[bool], RateLimiter], client: str
) -> None:
    with capture_logs() as logs:
        await unreachable(True).hit("auth", client)
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("ratelimit.storage_unavailable", "error")
    ]


async def test_repeated_storage_failures_are_logged_once_per_interval(
    unreachable: Callable[[bool], RateLimiter], client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retry the storage on every call, so only the log throttle limits the events.
    monkeypatch.setattr(ratelimit, "STORAGE_RETRY_INTERVAL", 0.0)
    limiter = unreachable(True)
    with capture_logs() as logs:
        for _ in range(3):
            await limiter.hit("auth", client)
    assert [e["event"] for e in logs] == ["ratelimit.storage_unavailable"]


async def test_reset_with_unreachable_storage_does_not_raise(
    unreachable: Callable[[bool], RateLimiter], client: str
) -> None:
    await unreachable(False).reset("auth", client)


async def test_check_storage_is_false_when_unreachable(
    unreachable: Callable[[bool], RateLimiter],
) -> None:
    assert not await unreachable(True).check_storage()


async def test_lockout_fail_closed_reports_locked_when_storage_unreachable(
    unreachable: Callable[[bool], RateLimiter], client: str
) -> None:
    lockout = Lockout(unreachable(False), "login")
    assert (await lockout.check(client) or 0) >= 1


async def test_lockout_fail_open_reports_unlocked_when_storage_unreachable(
    unreachable: Callable[[bool], RateLimiter], client: str
) -> None:
    lockout = Lockout(unreachable(True), "login")
    assert await lockout.check(client) is None


# --- lockout --------------------------------------------------------------------


def _lockout(limiter: RateLimiter) -> Lockout:
    return Lockout(limiter, "login", threshold=3, base_seconds=10, max_seconds=35)


async def test_lockout_does_not_lock_below_threshold(limiter: RateLimiter, client: str) -> None:
    lockout = _lockout(limiter)
    assert [await lockout.failure(client) for _ in range(2)] == [0, 0]
    assert await lockout.check(client) is None


async def test_lockout_locks_for_base_seconds_at_threshold(
    limiter: RateLimiter, client: str
) -> None:
    lockout = _lockout(limiter)
    *_, locked_for = [await lockout.failure(client) for _ in range(3)]
    assert locked_for == 10
    remaining = await lockout.check(client)
    assert remaining is not None
    assert 8 <= remaining <= 10


async def test_lockout_doubles_per_further_failure_up_to_the_cap(
    limiter: RateLimiter, client: str
) -> None:
    lockout = _lockout(limiter)
    locks = [await lockout.failure(client) for _ in range(6)]
    assert locks == [0, 0, 10, 20, 35, 35]


async def test_lockout_check_reports_the_latest_lock(limiter: RateLimiter, client: str) -> None:
    lockout = _lockout(limiter)
    for _ in range(4):
        await lockout.failure(client)
    remaining = await lockout.check(client)
    assert remaining is not None
    assert 18 <= remaining <= 20


async def test_lockout_success_clears_lock_and_failures(limiter: RateLimiter, client: str) -> None:
    lockout = _lockout(limiter)
    for _ in range(4):
        await lockout.failure(client)
    await lockout.success(client)
    assert await lockout.check(client) is None
    assert await lockout.failure(client) == 0


async def test_lockout_keys_are_independent(limiter: RateLimiter, client: str) -> None:
    lockout = _lockout(limiter)
    for _ in range(3):
        await lockout.failure(f"{client}-a")
    assert await lockout.check(f"{client}-b") is None


async def test_lockout_is_shared_between_limiters_on_the_same_redis(
    redis_uri: str, client: str
) -> None:
    first, second = (RateLimiter(redis_uri, fail_open=False) for _ in range(2))
    try:
        for _ in range(3):
            await _lockout(first).failure(client)
        assert await _lockout(second).check(client) is not None
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"base_seconds": 0},
        {"base_seconds": 100, "max_seconds": 50},
        {"max_seconds": 100, "window_seconds": 50},
    ],
)
def test_lockout_rejects_inconsistent_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="lockout needs"):
        Lockout(RateLimiter(fail_open=False), "login", **kwargs)

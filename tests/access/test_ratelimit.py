"""Per-key rate limits: the sliding-window rule, in memory and shared through Redis."""

import threading
import uuid
from collections.abc import Iterator

import pytest

from access.ratelimit import (
    WINDOW_SECONDS,
    LocalRateLimiter,
    RedisRateLimiter,
    TokenCharge,
    decide,
)

T0 = 1_800_000_000.0  # the start of a window (divisible by 60)


def test_requests_are_admitted_up_to_the_limit_then_refused() -> None:
    limiter = LocalRateLimiter()

    results = [limiter.hit(subject="k", rpm=3, tpm=0, now=T0 + 1).allowed for _ in range(4)]

    assert results == [True, True, True, False]


def test_a_refused_request_is_not_counted() -> None:
    limiter = LocalRateLimiter()
    for _ in range(2):
        limiter.hit(subject="k", rpm=2, tpm=0, now=T0)
    for _ in range(5):
        assert limiter.hit(subject="k", rpm=2, tpm=0, now=T0 + 1).allowed is False

    # Two windows later nothing of the first minute is left.
    assert limiter.hit(subject="k", rpm=2, tpm=0, now=T0 + 2 * WINDOW_SECONDS).allowed


def test_refusal_says_which_limit_and_when_to_retry() -> None:
    limiter = LocalRateLimiter()
    limiter.hit(subject="k", rpm=1, tpm=0, now=T0 + 10)

    refused = limiter.hit(subject="k", rpm=1, tpm=0, now=T0 + 10)

    assert refused.allowed is False
    assert refused.limit == "requests_per_minute"
    # The one request of this window weighs fully until the next window starts (50 s),
    # then fades out over it; it allows another one once it weighs 0: 50 + 60 s.
    assert refused.retry_after == 110


def test_the_previous_window_counts_by_its_overlap_with_the_last_minute() -> None:
    limiter = LocalRateLimiter()
    for _ in range(10):
        limiter.hit(subject="k", rpm=10, tpm=0, now=T0 + 59)

    # 15 s into the next window, 45/60 of the previous 10 still count: 7.5 -> 2 more fit.
    later = T0 + WINDOW_SECONDS + 15
    admitted = [limiter.hit(subject="k", rpm=10, tpm=0, now=later).allowed for _ in range(4)]

    assert admitted == [True, True, False, False]


def test_no_burst_of_twice_the_limit_across_a_window_edge() -> None:
    limiter = LocalRateLimiter()
    end = [limiter.hit(subject="k", rpm=5, tpm=0, now=T0 + 59.9).allowed for _ in range(5)]
    start = [limiter.hit(subject="k", rpm=5, tpm=0, now=T0 + 60.1).allowed for _ in range(5)]

    assert end == [True] * 5
    assert start == [False] * 5


def test_subjects_have_their_own_limits() -> None:
    limiter = LocalRateLimiter()
    limiter.hit(subject="a", rpm=1, tpm=0, now=T0)

    assert limiter.hit(subject="b", rpm=1, tpm=0, now=T0).allowed
    assert not limiter.hit(subject="a", rpm=1, tpm=0, now=T0).allowed


def test_tokens_are_charged_and_a_request_over_the_rest_is_refused() -> None:
    limiter = LocalRateLimiter()
    first = limiter.hit(subject="k", rpm=0, tpm=100, tokens=60, now=T0)
    second = limiter.hit(subject="k", rpm=0, tpm=100, tokens=50, now=T0)
    third = limiter.hit(subject="k", rpm=0, tpm=100, tokens=40, now=T0)

    assert first.allowed
    assert first.charge == TokenCharge("k", int(T0 // 60), 60)
    assert second.allowed is False
    assert second.limit == "tokens_per_minute"
    assert third.allowed


def test_a_request_larger_than_the_whole_token_limit_runs_in_an_empty_minute() -> None:
    limiter = LocalRateLimiter()

    assert limiter.hit(subject="k", rpm=0, tpm=100, tokens=500, now=T0).allowed
    assert not limiter.hit(subject="k", rpm=0, tpm=100, tokens=1, now=T0).allowed


def test_settling_replaces_the_estimate_by_the_real_count() -> None:
    limiter = LocalRateLimiter()
    charge = limiter.hit(subject="k", rpm=0, tpm=100, tokens=90, now=T0).charge
    assert charge is not None
    assert not limiter.hit(subject="k", rpm=0, tpm=100, tokens=20, now=T0).allowed

    limiter.settle(charge, 30, now=T0 + 1)  # the provider reported 30 tokens

    assert limiter.hit(subject="k", rpm=0, tpm=100, tokens=20, now=T0 + 1).allowed
    limiter.settle(TokenCharge("k", int(T0 // 60), 20), 200, now=T0 + 2)
    assert not limiter.hit(subject="k", rpm=0, tpm=100, tokens=1, now=T0 + 2).allowed


@pytest.mark.parametrize(
    ("_case", "prev", "cur", "elapsed", "expected"),
    [
        ("empty", (0, 0), (0, 0), 0.0, (True, "", 0)),
        # Full now: in the next window this one weighs 4 * (60 - t) / 60; at t = 15 s it
        # is 3, room for one more: 30 s left here + 15 s.
        ("current full", (0, 0), (4, 0), 30.0, (False, "requests_per_minute", 45)),
        # 4 * 50/60 = 3.33 + 1 > 4 now; at 15 s it is 3 + 1: 5 s to wait.
        ("previous fading", (4, 0), (0, 0), 10.0, (False, "requests_per_minute", 5)),
        ("previous faded enough", (4, 0), (0, 0), 15.0, (True, "", 0)),
    ],
)
def test_decide(
    _case: str,
    prev: tuple[int, int],
    cur: tuple[int, int],
    elapsed: float,
    expected: tuple[bool, str, int],
) -> None:
    assert decide(prev=prev, cur=cur, elapsed=elapsed, rpm=4, tpm=0, tokens=0) == expected


# --- Redis: what several processes share ----------------------------------------------------


@pytest.fixture
def redis_limiters(redis_url: str) -> Iterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    """Two limiters with their own connections, as two worker processes have."""
    prefix = f"rhetor:test-rl:{uuid.uuid4().hex}"
    first, second = (
        RedisRateLimiter(redis_url, prefix=prefix),
        RedisRateLimiter(redis_url, prefix=prefix),
    )
    yield first, second
    for key in first.client.scan_iter(f"{prefix}:*"):
        first.client.delete(key)
    first.client.close()
    second.client.close()


@pytest.mark.integration
def test_two_limiters_on_one_redis_share_the_request_budget(
    redis_limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = redis_limiters
    admitted = []
    for i in range(10):
        limiter = a if i % 2 else b
        admitted.append(limiter.hit(subject="k", rpm=6, tpm=0, now=T0 + 5).allowed)

    assert admitted.count(True) == 6
    assert admitted[6:] == [False] * 4
    refused = a.hit(subject="k", rpm=6, tpm=0, now=T0 + 5)
    assert (refused.limit, refused.retry_after) == ("requests_per_minute", 65)


@pytest.mark.integration
def test_concurrent_hits_from_two_limiters_never_exceed_the_limit(
    redis_limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def worker(limiter: RedisRateLimiter) -> None:
        for _ in range(20):
            allowed = limiter.hit(subject="k", rpm=25, tpm=0, now=T0 + 30).allowed
            with lock:
                results.append(allowed)

    threads = [threading.Thread(target=worker, args=(lim,)) for lim in redis_limiters * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 120
    assert results.count(True) == 25


@pytest.mark.integration
def test_tokens_are_shared_and_settled_through_redis(
    redis_limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = redis_limiters
    charge = a.hit(subject="k", rpm=0, tpm=1000, tokens=900, now=T0 + 1).charge
    assert charge is not None
    assert b.hit(subject="k", rpm=0, tpm=1000, tokens=200, now=T0 + 2).limit == (
        "tokens_per_minute"
    )

    a.settle(charge, 100, now=T0 + 3)

    assert b.hit(subject="k", rpm=0, tpm=1000, tokens=200, now=T0 + 4).allowed


@pytest.mark.integration
def test_redis_and_memory_limiters_decide_alike(
    redis_limiters: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    redis_limiter, _ = redis_limiters
    local = LocalRateLimiter()
    moments = [T0 + 59, T0 + 59, T0 + 59, T0 + 75, T0 + 75, T0 + 100, T0 + 130, T0 + 130]

    for now in moments:
        expected = local.hit(subject="k", rpm=3, tpm=50, tokens=10, now=now)
        got = redis_limiter.hit(subject="k", rpm=3, tpm=50, tokens=10, now=now)
        assert (got.allowed, got.limit, got.retry_after) == (
            expected.allowed,
            expected.limit,
            expected.retry_after,
        ), now

"""Per-key rate limits: requests per minute and tokens per minute (HOUSE_STYLE R15).

The algorithm is the sliding-window counter: each subject has one counter pair
(requests, tokens) per fixed 60 s window, and the rate "in the last minute" is the
current window's count plus the previous window's count weighted by the part of it that
still lies within the last 60 s. It is exact at window edges to within that linear
interpolation, never lets a burst of twice the limit through across a boundary (a plain
fixed window does), and costs one counter hash per window.

- `hit` admits or refuses one request and, when it admits it, counts it and charges its
  estimated tokens. A request is refused when it would take the requests over the limit,
  or when its tokens would take the token count over the limit (a single request larger
  than the whole token limit is still admitted into an otherwise empty minute, or it
  could never run). A refused request is not counted.
- `settle` corrects the charge once the real token count is known (the provider's
  input + output tokens), into the window the estimate went to.

`RedisRateLimiter` runs each of them as one Lua script (one round trip, atomic, using the
Redis server's clock), so every process sharing the Redis server shares the limits.
`LocalRateLimiter` is the same algorithm in process memory, for a single process without
REDIS_URL.
"""

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from rhetor_site.errors import RhetorError

WINDOW_SECONDS = 60
KEY_PREFIX = "rhetor:rl"


class RateLimiterUnavailable(RhetorError):
    status = 503
    code = "rate_limiter_unavailable"


@dataclass(frozen=True)
class TokenCharge:
    """The tokens charged for an admitted request, and the window they went to."""

    subject: str
    window: int
    tokens: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # "requests_per_minute" or "tokens_per_minute" when refused
    limit: str = ""
    retry_after: int = 0  # whole seconds, at least 1 when refused
    charge: TokenCharge | None = None


def _weighted(prev: float, cur: float, elapsed: float) -> float:
    return prev * (WINDOW_SECONDS - elapsed) / WINDOW_SECONDS + cur


def _wait(prev: float, cur: float, elapsed: float, room: float) -> int:
    """Seconds until prev*(60-t')/60 + cur <= room, with t' the position in the window
    (rolling into the next window when the current one alone is already over)."""
    if cur <= room:
        # Within this window: t' = 60 - (room - cur) * 60 / prev.
        t = WINDOW_SECONDS - (room - cur) * WINDOW_SECONDS / prev if prev > 0 else elapsed
        wait = t - elapsed
    else:
        # In the next window, this window's count becomes the weighted previous one.
        t = WINDOW_SECONDS - room * WINDOW_SECONDS / cur if room > 0 else WINDOW_SECONDS
        wait = (WINDOW_SECONDS - elapsed) + t
    return max(1, math.ceil(wait))


def decide(
    *,
    prev: tuple[int, int],
    cur: tuple[int, int],
    elapsed: float,
    rpm: int,
    tpm: int,
    tokens: int,
) -> tuple[bool, str, int]:
    """The admission rule shared by both limiters (the Lua script mirrors it)."""
    if rpm > 0 and _weighted(prev[0], cur[0], elapsed) + 1 > rpm:
        return False, "requests_per_minute", _wait(prev[0], cur[0], elapsed, rpm - 1)
    if tpm > 0:
        used = _weighted(prev[1], cur[1], elapsed)
        if used + tokens > tpm and used > 0:
            return False, "tokens_per_minute", _wait(prev[1], cur[1], elapsed, max(tpm - tokens, 0))
    return True, "", 0


class RateLimiter(Protocol):
    def hit(
        self, *, subject: str, rpm: int, tpm: int, tokens: int = 0, now: float | None = None
    ) -> Decision: ...

    def settle(self, charge: TokenCharge, actual_tokens: int, now: float | None = None) -> None: ...


class LocalRateLimiter:
    """One process's limiter (no REDIS_URL): the same algorithm under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int], list[int]] = {}

    def _prune(self, window: int) -> None:
        for key in [k for k in self._windows if k[1] < window - 1]:
            del self._windows[key]

    def hit(
        self, *, subject: str, rpm: int, tpm: int, tokens: int = 0, now: float | None = None
    ) -> Decision:
        now = time.time() if now is None else now
        window = int(now // WINDOW_SECONDS)
        elapsed = now - window * WINDOW_SECONDS
        with self._lock:
            if len(self._windows) > 100_000:
                self._prune(window)
            prev = self._windows.get((subject, window - 1), [0, 0])
            cur = self._windows.setdefault((subject, window), [0, 0])
            allowed, limit, retry = decide(
                prev=(prev[0], prev[1]),
                cur=(cur[0], cur[1]),
                elapsed=elapsed,
                rpm=rpm,
                tpm=tpm,
                tokens=tokens,
            )
            if not allowed:
                return Decision(False, limit, retry)
            cur[0] += 1
            cur[1] += tokens
        return Decision(True, charge=TokenCharge(subject, window, tokens))

    def settle(self, charge: TokenCharge, actual_tokens: int, now: float | None = None) -> None:
        delta = actual_tokens - charge.tokens
        if delta == 0:
            return
        now = time.time() if now is None else now
        with self._lock:
            counts = self._windows.get((charge.subject, charge.window))
            if counts is None:
                if delta < 0:
                    return
                window = int(now // WINDOW_SECONDS)
                counts = self._windows.setdefault((charge.subject, window), [0, 0])
            counts[1] = max(0, counts[1] + delta)


# KEYS: none (computed from ARGV so the script can use the server clock).
# ARGV: prefix, subject, rpm, tpm, tokens, now_ms ("" = Redis TIME), window seconds.
# Returns {allowed, limit_code (0 none, 1 requests, 2 tokens), retry_after, window}.
_HIT = """
local now_ms = tonumber(ARGV[6])
if not now_ms then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local span = tonumber(ARGV[7])
local window = math.floor(now_ms / 1000 / span)
local elapsed = now_ms / 1000 - window * span
local base = ARGV[1] .. ':' .. ARGV[2] .. ':'
local cur_key = base .. window
local prev = redis.call('HMGET', base .. (window - 1), 'r', 't')
local cur = redis.call('HMGET', cur_key, 'r', 't')
local pr, pt = tonumber(prev[1]) or 0, tonumber(prev[2]) or 0
local cr, ct = tonumber(cur[1]) or 0, tonumber(cur[2]) or 0
local rpm, tpm, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function wait(p, c, room)
  local w
  if c <= room then
    local t = elapsed
    if p > 0 then t = span - (room - c) * span / p end
    w = t - elapsed
  else
    local t = span
    if room > 0 then t = span - room * span / c end
    w = (span - elapsed) + t
  end
  w = math.ceil(w)
  if w < 1 then w = 1 end
  return w
end
local weight = (span - elapsed) / span
if rpm > 0 and pr * weight + cr + 1 > rpm then
  return {0, 1, wait(pr, cr, rpm - 1), window}
end
if tpm > 0 then
  local used = pt * weight + ct
  if used + tokens > tpm and used > 0 then
    local room = tpm - tokens
    if room < 0 then room = 0 end
    return {0, 2, wait(pt, ct, room), window}
  end
end
redis.call('HINCRBY', cur_key, 'r', 1)
if tokens ~= 0 then redis.call('HINCRBY', cur_key, 't', tokens) end
redis.call('EXPIRE', cur_key, span * 2 + 5)
return {1, 0, 0, window}
"""

# ARGV: prefix, subject, charged window, delta, now_ms ("" = Redis TIME), window seconds.
_SETTLE = """
local base = ARGV[1] .. ':' .. ARGV[2] .. ':'
local key = base .. ARGV[3]
local delta = tonumber(ARGV[4])
if redis.call('EXISTS', key) == 0 then
  if delta < 0 then return 0 end
  local now_ms = tonumber(ARGV[5])
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local span = tonumber(ARGV[6])
  key = base .. math.floor(now_ms / 1000 / span)
end
local left = redis.call('HINCRBY', key, 't', delta)
if left < 0 then redis.call('HSET', key, 't', 0) end
redis.call('EXPIRE', key, tonumber(ARGV[6]) * 2 + 5)
return 1
"""

_LIMITS = {0: "", 1: "requests_per_minute", 2: "tokens_per_minute"}


class RedisRateLimiter:
    """Limits shared by every process using the same Redis server."""

    def __init__(self, url: str, *, prefix: str = KEY_PREFIX) -> None:
        import redis

        self.prefix = prefix
        self.client: Any = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._hit = self.client.register_script(_HIT)
        self._settle = self.client.register_script(_SETTLE)

    @staticmethod
    def _ms(now: float | None) -> str:
        return "" if now is None else str(int(now * 1000))

    def hit(
        self, *, subject: str, rpm: int, tpm: int, tokens: int = 0, now: float | None = None
    ) -> Decision:
        import redis

        try:
            allowed, code, retry, window = self._hit(
                args=[self.prefix, subject, rpm, tpm, tokens, self._ms(now), WINDOW_SECONDS]
            )
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(
                f"The rate limiter's Redis is unreachable: {exc.__class__.__name__}"
            ) from exc
        if not allowed:
            return Decision(False, _LIMITS[int(code)], int(retry))
        return Decision(True, charge=TokenCharge(subject, int(window), tokens))

    def settle(self, charge: TokenCharge, actual_tokens: int, now: float | None = None) -> None:
        import redis

        delta = actual_tokens - charge.tokens
        if delta == 0:
            return
        try:
            self._settle(
                args=[
                    self.prefix,
                    charge.subject,
                    charge.window,
                    delta,
                    self._ms(now),
                    WINDOW_SECONDS,
                ]
            )
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(
                f"The rate limiter's Redis is unreachable: {exc.__class__.__name__}"
            ) from exc


_limiter: RateLimiter | None = None
_limiter_url: str | None = None
_limiter_lock = threading.Lock()


def rate_limiter() -> RateLimiter:
    """This process's limiter: on REDIS_URL when it is set, else in memory."""
    global _limiter, _limiter_url
    url = settings.REDIS_URL or ""
    if _limiter is None or _limiter_url != url:
        with _limiter_lock:
            if _limiter is None or _limiter_url != url:
                _limiter = RedisRateLimiter(url) if url else LocalRateLimiter()
                _limiter_url = url
    return _limiter


def rate_limiter_reset() -> None:
    """Forget this process's limiter (tests, settings changes)."""
    global _limiter, _limiter_url
    with _limiter_lock:
        _limiter = None
        _limiter_url = None

"""A circuit breaker per provider and model, so a dead upstream does not cost every request
its timeout.

    closed     requests go through; consecutive retryable failures are counted
    open       after RHETOR_CIRCUIT_FAILURE_THRESHOLD consecutive failures: the target is
               skipped at once (the router records the attempt as "circuit_open") for
               RHETOR_CIRCUIT_COOLDOWN seconds
    half_open  after the cooldown one request is let through as a probe (the others are
               still skipped); its success closes the circuit, its failure opens it again

What counts as a failure: the errors the router may retry elsewhere (connection errors,
timeouts, 408/409/429, 5xx, a broken payload or a stream cut by the upstream). A terminal
error (400, 401, ...) proves the upstream is answering, so it counts as a success.

A 429 / 503 with a Retry-After longer than the router is willing to wait opens the circuit
for that long (`hold_off`), whatever the failure count: the provider said when to come back.

The state is per process (a module-level registry): each worker learns on its own that an
upstream is down, which costs each worker at most `threshold` failed requests. That is
deliberate: no Redis round trip on the request path, and a breaker never outlives the
process that measured it. `breaker_states()` feeds the admin dashboard and GET /health.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings

State = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


@dataclass(frozen=True)
class BreakerState:
    """What a breaker looks like now (for the dashboard and /health)."""

    provider: str
    model: str
    state: State
    consecutive_failures: int
    # Seconds until an open circuit admits a probe (0 when closed or half-open).
    retry_in: float
    reason: str  # why it opened: the last failure, or the Retry-After it obeys
    total_failures: int
    total_successes: int
    times_opened: int


@dataclass(frozen=True)
class Admission:
    """The breaker's answer for one attempt."""

    allowed: bool
    probe: bool = False  # the one request let through a half-open circuit
    retry_in: float = 0.0  # when refused: seconds until a probe is admitted
    reason: str = ""


@dataclass
class _Breaker:
    failures: int = 0
    opened_until: float | None = None  # monotonic time; None while closed
    probe_started: float | None = None  # a half-open probe is in flight since then
    reason: str = ""
    total_failures: int = 0
    total_successes: int = 0
    times_opened: int = 0


class CircuitBreakers:
    """Breakers keyed by (provider, model). Thread-safe; `clock` is injectable for tests."""

    def __init__(
        self,
        *,
        threshold: int | None = None,
        cooldown: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], _Breaker] = {}

    @property
    def threshold(self) -> int:
        value = self._threshold
        return max(1, value if value is not None else settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD)

    @property
    def cooldown(self) -> float:
        value = self._cooldown
        return max(0.0, value if value is not None else settings.RHETOR_CIRCUIT_COOLDOWN)

    def _get(self, provider: str, model: str) -> _Breaker:
        return self._breakers.setdefault((provider, model), _Breaker())

    def _state(self, breaker: _Breaker, now: float) -> State:
        if breaker.opened_until is None:
            return "closed"
        return "open" if now < breaker.opened_until else "half_open"

    def admit(self, provider: str, model: str) -> Admission:
        """May an attempt go to provider/model now? A half-open circuit admits one probe
        at a time; a probe that has not reported back within a cooldown (its request was
        lost) is replaced by a new one."""
        with self._lock:
            breaker = self._breakers.get((provider, model))
            if breaker is None:
                return Admission(True)
            now = self._clock()
            state = self._state(breaker, now)
            if state == "closed":
                return Admission(True)
            if state == "open":
                assert breaker.opened_until is not None  # noqa: S101 - open has a deadline
                return Admission(False, retry_in=breaker.opened_until - now, reason=breaker.reason)
            stale = max(self.cooldown, 1.0)
            if breaker.probe_started is not None and now - breaker.probe_started < stale:
                return Admission(False, retry_in=0.0, reason="a probe request is in flight")
            breaker.probe_started = now
            return Admission(True, probe=True)

    def record_success(self, provider: str, model: str) -> None:
        """The upstream answered: close the circuit and forget the failures."""
        with self._lock:
            breaker = self._get(provider, model)
            breaker.failures = 0
            breaker.opened_until = None
            breaker.probe_started = None
            breaker.reason = ""
            breaker.total_successes += 1

    def record_failure(self, provider: str, model: str, *, reason: str) -> None:
        """A retryable failure: open after `threshold` in a row; a failed probe re-opens
        the circuit for another cooldown."""
        with self._lock:
            breaker = self._get(provider, model)
            now = self._clock()
            breaker.failures += 1
            breaker.total_failures += 1
            probing = breaker.opened_until is not None and now >= breaker.opened_until
            breaker.probe_started = None
            if probing or breaker.failures >= self.threshold:
                self._open(breaker, now + self.cooldown, reason)

    def hold_off(self, provider: str, model: str, *, seconds: float, reason: str) -> None:
        """Open the circuit for `seconds` (the provider's Retry-After), or longer if it is
        already open for longer."""
        with self._lock:
            breaker = self._get(provider, model)
            until = self._clock() + max(0.0, seconds)
            if breaker.opened_until is None or breaker.opened_until < until:
                self._open(breaker, until, reason)

    def release(self, provider: str, model: str) -> None:
        """An admitted attempt ended without telling anything about the upstream (the
        client went away): a half-open circuit may admit the next probe."""
        with self._lock:
            breaker = self._breakers.get((provider, model))
            if breaker is not None:
                breaker.probe_started = None

    def _open(self, breaker: _Breaker, until: float, reason: str) -> None:
        if breaker.opened_until is None:
            breaker.times_opened += 1
        breaker.opened_until = until
        breaker.reason = reason[:300]

    def states(self) -> list[BreakerState]:
        """Every breaker that has seen traffic, open ones first."""
        with self._lock:
            now = self._clock()
            out = [
                BreakerState(
                    provider=provider,
                    model=model,
                    state=self._state(b, now),
                    consecutive_failures=b.failures,
                    retry_in=max(0.0, (b.opened_until or now) - now),
                    reason=b.reason,
                    total_failures=b.total_failures,
                    total_successes=b.total_successes,
                    times_opened=b.times_opened,
                )
                for (provider, model), b in self._breakers.items()
            ]
        order = {"open": 0, "half_open": 1, "closed": 2}
        return sorted(out, key=lambda s: (order[s.state], s.provider, s.model))

    def reset(self) -> None:
        with self._lock:
            self._breakers.clear()


# The process's breakers (see the module docstring: per process by design).
breakers = CircuitBreakers()


def breaker_states() -> list[BreakerState]:
    return breakers.states()


def breaker_summary() -> dict[str, str]:
    """ "provider/model" -> state, for GET /health (only breakers that are not closed)."""
    return {f"{s.provider}/{s.model}": s.state for s in breakers.states() if s.state != "closed"}

"""The circuit breaker per provider+model (llm/circuit.py) and how the router uses it:
open after N consecutive retryable failures, skip at once while open, one half-open probe
after the cooldown, close on success; Retry-After waited out or turned into a hold-off.
Time is a controlled clock; no network, no database."""

from collections.abc import AsyncIterator, Iterator

import pytest

import llm.providers as registry
from llm.circuit import CircuitBreakers, breaker_states, breakers
from llm.errors import ProviderRejected, ProviderUnavailable
from llm.gateway.fallbacks import OpenedStream, open_stream
from llm.gateway.plan import Plan
from llm.providers.base import (
    CompletionRequest,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from llm.providers.simulated import SimulatedProvider
from llm.routes import DEFAULT_ROUTES, Target


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cb(clock: Clock) -> CircuitBreakers:
    return CircuitBreakers(threshold=3, cooldown=30.0, clock=clock)


# --- The breaker alone -------------------------------------------------------------------


def test_opens_after_threshold_consecutive_failures(cb: CircuitBreakers) -> None:
    for _ in range(2):
        cb.record_failure("anthropic", "m", reason="HTTP 503")
        assert cb.admit("anthropic", "m").allowed is True

    cb.record_failure("anthropic", "m", reason="HTTP 503")

    refused = cb.admit("anthropic", "m")
    assert refused.allowed is False
    assert refused.retry_in == pytest.approx(30.0)
    assert refused.reason == "HTTP 503"
    [state] = cb.states()
    assert (state.state, state.consecutive_failures, state.times_opened) == ("open", 3, 1)


def test_a_success_resets_the_count(cb: CircuitBreakers) -> None:
    cb.record_failure("openai", "m", reason="x")
    cb.record_failure("openai", "m", reason="x")
    cb.record_success("openai", "m")
    cb.record_failure("openai", "m", reason="x")
    cb.record_failure("openai", "m", reason="x")

    assert cb.admit("openai", "m").allowed is True
    assert cb.states()[0].consecutive_failures == 2


def test_breakers_are_per_provider_and_model(cb: CircuitBreakers) -> None:
    for _ in range(3):
        cb.record_failure("anthropic", "a", reason="down")

    assert cb.admit("anthropic", "a").allowed is False
    assert cb.admit("anthropic", "b").allowed is True
    assert cb.admit("openai", "a").allowed is True


def test_half_open_after_cooldown_admits_one_probe(cb: CircuitBreakers, clock: Clock) -> None:
    for _ in range(3):
        cb.record_failure("anthropic", "m", reason="down")
    clock.advance(29.9)
    assert cb.admit("anthropic", "m").allowed is False

    clock.advance(0.2)

    probe = cb.admit("anthropic", "m")
    assert (probe.allowed, probe.probe) == (True, True)
    assert cb.admit("anthropic", "m").allowed is False  # only one probe at a time
    assert cb.states()[0].state == "half_open"


def test_successful_probe_closes_the_circuit(cb: CircuitBreakers, clock: Clock) -> None:
    for _ in range(3):
        cb.record_failure("anthropic", "m", reason="down")
    clock.advance(31)
    assert cb.admit("anthropic", "m").probe is True

    cb.record_success("anthropic", "m")

    assert cb.admit("anthropic", "m").allowed is True
    assert cb.admit("anthropic", "m").probe is False
    [state] = cb.states()
    assert (state.state, state.consecutive_failures, state.reason) == ("closed", 0, "")


def test_failed_probe_reopens_for_another_cooldown(cb: CircuitBreakers, clock: Clock) -> None:
    for _ in range(3):
        cb.record_failure("anthropic", "m", reason="down")
    clock.advance(31)
    assert cb.admit("anthropic", "m").probe is True

    cb.record_failure("anthropic", "m", reason="still down")

    refused = cb.admit("anthropic", "m")
    assert refused.allowed is False
    assert refused.retry_in == pytest.approx(30.0)
    assert refused.reason == "still down"
    assert cb.states()[0].times_opened == 1  # re-opened, not a new opening


def test_a_probe_that_never_reports_is_replaced(cb: CircuitBreakers, clock: Clock) -> None:
    for _ in range(3):
        cb.record_failure("anthropic", "m", reason="down")
    clock.advance(31)
    assert cb.admit("anthropic", "m").probe is True

    cb.release("anthropic", "m")  # the client went away mid-probe

    assert cb.admit("anthropic", "m").probe is True


def test_hold_off_opens_for_the_given_time_at_once(cb: CircuitBreakers, clock: Clock) -> None:
    cb.hold_off("openai", "m", seconds=120, reason="Retry-After 120")

    assert cb.admit("openai", "m").retry_in == pytest.approx(120)
    clock.advance(121)
    assert cb.admit("openai", "m").probe is True


def test_threshold_and_cooldown_come_from_settings(settings, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 1
    settings.RHETOR_CIRCUIT_COOLDOWN = 5.0
    cb = CircuitBreakers(clock=clock)

    cb.record_failure("ollama", "llama3", reason="refused")

    assert cb.admit("ollama", "llama3").retry_in == pytest.approx(5.0)


# --- The router with the process's breakers ------------------------------------------------


class FlakyProvider(SimulatedProvider):
    """A provider double: each call pops the next scripted outcome (an exception raised
    before the first event, "cut" for a failure after one chunk, or None for success)."""

    def __init__(self, pid: str, script: list[Exception | str | None] | None = None):
        super().__init__(delay=0)
        self.id = pid
        self.name = pid
        self.script = list(script or [])
        self.calls = 0

    def knows_model(self, model: str) -> bool:
        return True

    async def is_available(self) -> bool:
        return True

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        yield TextDelta(f"{self.id}:{request.model}")
        if step == "cut":
            raise ProviderResponseError(self.id, "the stream was cut")
        yield StreamEnd(Usage(1, 1), request.model)


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FlakyProvider]]:
    providers = {pid: FlakyProvider(pid) for pid in ("anthropic", "openai", "simulated")}
    monkeypatch.setattr(registry, "_registry", providers)
    yield providers
    monkeypatch.setattr(registry, "_registry", None)


@pytest.fixture
def fast_clock(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Clock:
    monkeypatch.setattr(breakers, "_clock", clock)
    return clock


PRIMARY = Target("anthropic", "claude-3-haiku-20240307")
FALLBACK = Target("openai", "gpt-3.5-turbo")
PLAN = Plan(DEFAULT_ROUTES["chat"], (PRIMARY, FALLBACK), 0.8, 100)


def build(target: Target, plan: Plan) -> CompletionRequest:
    return CompletionRequest(model=target.model, messages=())


async def drain(opened: OpenedStream) -> None:
    async for _ in opened.events():
        pass


def down() -> ProviderConnectionError:
    return ProviderConnectionError("anthropic", "connection refused")


async def test_an_open_circuit_skips_the_dead_upstream_without_calling_it(
    stubs: dict[str, FlakyProvider],
    settings,
    fast_clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 2
    stubs["anthropic"].script = [down(), down(), down()]
    for _ in range(2):
        await drain(await open_stream(plan=PLAN, build_request=build))
    assert stubs["anthropic"].calls == 2

    opened = await open_stream(plan=PLAN, build_request=build)

    assert stubs["anthropic"].calls == 2  # not called again
    assert opened.target == FALLBACK
    assert opened.fallback is True
    skipped = opened.attempts[0]
    assert (skipped.target, skipped.outcome) == (PRIMARY, "circuit_open")
    assert "connection refused" in skipped.error
    state = next(s for s in breaker_states() if s.provider == "anthropic")
    assert state.state == "open"


async def test_after_the_cooldown_one_probe_goes_through_and_closes_it(
    stubs: dict[str, FlakyProvider],
    settings,
    fast_clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 1
    settings.RHETOR_CIRCUIT_COOLDOWN = 10.0
    stubs["anthropic"].script = [down()]
    await drain(await open_stream(plan=PLAN, build_request=build))
    fast_clock.advance(11)

    probe = await open_stream(plan=PLAN, build_request=build)
    await drain(probe)

    assert probe.target == PRIMARY
    assert [a.outcome for a in probe.attempts] == ["ok"]
    assert breakers.admit(PRIMARY.provider, PRIMARY.model).allowed is True
    assert next(s for s in breaker_states() if s.provider == "anthropic").state == "closed"


async def test_a_stream_cut_mid_way_counts_as_a_failure(
    stubs: dict[str, FlakyProvider],
    settings,
    fast_clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 1
    stubs["anthropic"].script = ["cut"]
    opened = await open_stream(plan=PLAN, build_request=build)

    with pytest.raises(ProviderResponseError):
        await drain(opened)

    assert breakers.admit(PRIMARY.provider, PRIMARY.model).allowed is False


async def test_a_terminal_error_does_not_open_the_circuit(
    stubs: dict[str, FlakyProvider],
    settings,
    fast_clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 1
    stubs["anthropic"].script = [ProviderHTTPError("anthropic", 400, "bad request")]

    with pytest.raises(ProviderRejected):
        await open_stream(plan=PLAN, build_request=build)

    assert breakers.admit(PRIMARY.provider, PRIMARY.model).allowed is True


async def test_every_circuit_open_is_a_503_naming_them(
    stubs: dict[str, FlakyProvider], fast_clock: Clock
) -> None:
    breakers.hold_off(PRIMARY.provider, PRIMARY.model, seconds=60, reason="Retry-After 60")
    breakers.hold_off(FALLBACK.provider, FALLBACK.model, seconds=60, reason="Retry-After 60")

    with pytest.raises(ProviderUnavailable) as raised:
        await open_stream(plan=PLAN, build_request=build)

    assert {a["outcome"] for a in raised.value.details["attempts"]} == {"circuit_open"}
    assert raised.value.details["retry_after"] == 60  # when the first may be probed again
    assert stubs["anthropic"].calls == stubs["openai"].calls == 0


async def test_a_short_retry_after_is_waited_out_and_the_same_model_retried_once(
    stubs: dict[str, FlakyProvider],
    settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("llm.gateway.fallbacks.asyncio.sleep", sleep)
    settings.RHETOR_RETRY_AFTER_MAX_WAIT = 2.0
    stubs["anthropic"].script = [ProviderHTTPError("anthropic", 429, "slow down", retry_after=1.5)]

    opened = await open_stream(plan=PLAN, build_request=build)

    assert slept == [1.5]
    assert opened.target == PRIMARY
    assert opened.fallback is False
    assert [a.outcome for a in opened.attempts] == ["failed", "ok"]
    assert stubs["anthropic"].calls == 2


async def test_a_second_short_retry_after_falls_back(
    stubs: dict[str, FlakyProvider],
    settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    async def sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr("llm.gateway.fallbacks.asyncio.sleep", sleep)
    too_many = ProviderHTTPError("anthropic", 429, "slow down", retry_after=1)
    stubs["anthropic"].script = [too_many, too_many]

    opened = await open_stream(plan=PLAN, build_request=build)

    assert opened.target == FALLBACK
    assert [a.outcome for a in opened.attempts] == ["failed", "failed", "ok"]


async def test_a_long_retry_after_holds_the_model_off_and_falls_back_at_once(
    stubs: dict[str, FlakyProvider],
    settings,
    fast_clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    settings.RHETOR_RETRY_AFTER_MAX_WAIT = 2.0
    settings.RHETOR_RETRY_AFTER_MAX_HOLD = 600.0
    stubs["anthropic"].script = [ProviderHTTPError("anthropic", 429, "quota", retry_after=90)]

    first = await open_stream(plan=PLAN, build_request=build)
    await drain(first)
    second = await open_stream(plan=PLAN, build_request=build)

    assert first.target == second.target == FALLBACK
    assert stubs["anthropic"].calls == 1
    assert second.attempts[0].outcome == "circuit_open"
    assert "retry after 90s" in second.attempts[0].error
    fast_clock.advance(91)
    third = await open_stream(plan=PLAN, build_request=build)
    assert third.target == PRIMARY


async def test_retry_after_beyond_the_cap_holds_off_only_for_the_cap(
    stubs: dict[str, FlakyProvider],
    settings,
    fast_clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    settings.RHETOR_RETRY_AFTER_MAX_HOLD = 60.0
    stubs["anthropic"].script = [ProviderHTTPError("anthropic", 503, "later", retry_after=86400)]

    await drain(await open_stream(plan=PLAN, build_request=build))

    assert breakers.admit(PRIMARY.provider, PRIMARY.model).retry_in == pytest.approx(60.0)


# --- Where operators see it ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_dashboard_shows_the_breakers(admin_client, fast_clock: Clock) -> None:  # type: ignore[no-untyped-def]
    breakers.hold_off(PRIMARY.provider, PRIMARY.model, seconds=90, reason="Retry-After 90")
    breakers.record_success(FALLBACK.provider, FALLBACK.model)

    html = admin_client.get("/admin/").content.decode()

    table = html[html.index('id="circuit-breakers"') :]
    table = table[: table.index("</table>")]
    assert "<td>anthropic</td><td>claude-3-haiku-20240307</td><td>open</td>" in table
    assert "90.0 s" in table
    assert "Retry-After 90" in table
    assert "<td>openai</td><td>gpt-3.5-turbo</td><td>closed</td>" in table

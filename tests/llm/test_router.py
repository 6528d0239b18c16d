"""Route lookup, task configuration and fallback planning (no network; the route table
itself lives in the database, so the tests of `route_table()` use `db`)."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

import llm.providers as registry
from llm.errors import ProviderRejected, ProviderUnavailable, UnknownModel, UnknownTaskType
from llm.gateway import RouteOptions
from llm.gateway.fallbacks import open_stream
from llm.gateway.plan import Plan, plan_targets
from llm.providers.base import (
    ChatMessage,
    CompletionRequest,
    ProviderConnectionError,
    ProviderHTTPError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from llm.providers.simulated import SimulatedProvider
from llm.route_table import route_table
from llm.routes import DEFAULT_ROUTES, Target, build_route_table, parse_task_config

SEED_EXAMPLE = {
    "code": {
        "provider": "anthropic",
        "model": "claude-3-opus-20240229",
        "options": {
            "temperature": 0.2,
            "max_tokens": 4000,
            "fallback_provider": "openai",
            "fallback_model": "gpt-4-turbo",
        },
    },
    "ergon_code": {
        "provider": "openai",
        "model": "gpt-4o",
        "options": {"temperature": 0.1, "max_tokens": 1000},
    },
    "ergon": {"provider": "anthropic", "model": "claude-3-haiku-20240307"},
    "translation": {"provider": "ollama", "model": "llama3"},
}


class StubProvider(SimulatedProvider):
    """A provider double whose availability and failures a test controls."""

    def __init__(self, pid: str, *, available: bool, failures: list[Exception] | None = None):
        super().__init__(delay=0)
        self.id = pid
        self.name = pid
        self.available = available
        self.failures = failures or []
        self.calls: list[str] = []

    def knows_model(self, model: str) -> bool:
        return True

    async def is_available(self) -> bool:
        return self.available

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self.calls.append(request.model)
        if self.failures:
            raise self.failures.pop(0)
        yield TextDelta(f"{self.id}:{request.model}")
        yield StreamEnd(Usage(1, 1), request.model)


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, StubProvider]]:
    stubs = {
        "anthropic": StubProvider("anthropic", available=False),
        "openai": StubProvider("openai", available=False),
        "ollama": StubProvider("ollama", available=False),
        "simulated": StubProvider("simulated", available=True),
    }
    monkeypatch.setattr(registry, "_registry", stubs)
    yield stubs
    monkeypatch.setattr(registry, "_registry", None)


def test_default_routes_match_the_contract() -> None:
    code = DEFAULT_ROUTES["code"]
    assert code.target == Target("anthropic", "claude-3-opus-20240229")
    assert (code.temperature, code.max_tokens) == (0.2, 4000)
    assert code.fallbacks == (Target("openai", "gpt-4-turbo"),)
    chat = DEFAULT_ROUTES["chat"]
    assert chat.target == Target("anthropic", "claude-3-haiku-20240307")
    assert (chat.temperature, chat.max_tokens) == (0.8, 2000)
    assert chat.fallbacks == (Target("openai", "gpt-3.5-turbo"),)


@pytest.mark.parametrize(
    ("_case", "component", "task_type", "expected"),
    [
        ("component_task", "ergon", "code", "ergon_code"),
        ("component_only", "ergon", "chat", "ergon"),
        ("task_only", "telos", "code", "code"),
        ("default", None, "default", "default"),
        ("added_task_type", None, "translation", "translation"),
    ],
)
def test_lookup_order(_case: str, component: str | None, task_type: str, expected: str) -> None:
    table = build_route_table(parse_task_config(SEED_EXAMPLE))

    assert table.lookup(component=component, task_type=task_type).name == expected


def test_unknown_task_type_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownTaskType) as info:
        route_table().lookup(component=None, task_type="poetry")
    assert info.value.details["field"] == "task_type"


def test_task_config_file_is_read_from_the_setting(db, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(SEED_EXAMPLE))
    settings.RHETOR_TASK_CONFIG = str(path)

    route = route_table().lookup(component="ergon", task_type="code")

    assert route.target == Target("openai", "gpt-4o")
    assert route.max_tokens == 1000


@pytest.mark.parametrize(
    ("_case", "config", "message"),
    [
        ("not_object", [], "JSON object"),
        ("bad_provider", {"x": {"provider": "acme", "model": "m"}}, "provider must be one of"),
        ("no_model", {"x": {"provider": "openai"}}, "model must be"),
        (
            "bad_tokens",
            {"x": {"provider": "openai", "model": "m", "options": {"max_tokens": 0}}},
            "max_tokens",
        ),
    ],
)
def test_invalid_task_config_fails_loudly(_case: str, config: object, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_task_config(config)


async def test_no_real_provider_means_everything_is_simulated(providers) -> None:  # type: ignore[no-untyped-def]
    plan = await plan_targets(
        route=DEFAULT_ROUTES["code"], options=RouteOptions(), default_target=None
    )

    assert plan.targets == (Target("simulated", "simulated-standard"),)
    assert (plan.temperature, plan.max_tokens) == (0.2, 4000)


async def test_simulated_is_never_a_stand_in_for_configured_providers(providers) -> None:  # type: ignore[no-untyped-def]
    providers["openai"].available = True

    plan = await plan_targets(
        route=DEFAULT_ROUTES["chat"], options=RouteOptions(), default_target=None
    )

    assert plan.targets == (
        Target("anthropic", "claude-3-haiku-20240307"),
        Target("openai", "gpt-3.5-turbo"),
        Target("openai", "simulated-standard"),  # the stub's default model: the last resort
    )
    assert all(t.provider != "simulated" for t in plan.targets)


async def test_options_override_the_route(providers) -> None:  # type: ignore[no-untyped-def]
    providers["openai"].available = True
    options = RouteOptions(
        provider="openai",
        model="gpt-4o",
        temperature=0.1,
        max_tokens=50,
        fallback_provider="ollama",
        fallback_model="llama3",
    )

    plan = await plan_targets(route=DEFAULT_ROUTES["code"], options=options, default_target=None)

    assert plan.targets[:2] == (Target("openai", "gpt-4o"), Target("ollama", "llama3"))
    assert (plan.temperature, plan.max_tokens) == (0.1, 50)


async def test_operator_default_serves_only_the_default_route(providers) -> None:  # type: ignore[no-untyped-def]
    providers["ollama"].available = True
    chosen = Target("ollama", "llama3")

    default_plan = await plan_targets(
        route=DEFAULT_ROUTES["default"], options=RouteOptions(), default_target=chosen
    )
    code_plan = await plan_targets(
        route=DEFAULT_ROUTES["code"], options=RouteOptions(), default_target=chosen
    )

    assert default_plan.targets[0] == chosen
    assert code_plan.targets[0] == Target("anthropic", "claude-3-opus-20240229")
    assert code_plan.targets[-1] == chosen


async def test_unknown_model_in_options_is_refused() -> None:
    with pytest.raises(UnknownModel):
        await plan_targets(
            route=DEFAULT_ROUTES["code"],
            options=RouteOptions(provider="simulated", model="nope"),
            default_target=None,
        )


def _builder(target: Target, plan: Plan) -> CompletionRequest:
    return CompletionRequest(model=target.model, messages=(ChatMessage("user", "hi"),))


def _plan(*targets: Target) -> Plan:
    return Plan(DEFAULT_ROUTES["default"], targets, None, None)


async def test_retryable_failure_before_the_first_chunk_falls_back(providers) -> None:  # type: ignore[no-untyped-def]
    providers["anthropic"].available = True
    providers["anthropic"].failures = [ProviderHTTPError("anthropic", 529, "overloaded")]
    providers["openai"].available = True

    opened = await open_stream(
        plan=_plan(Target("anthropic", "a"), Target("openai", "o")), build_request=_builder
    )

    assert opened.target == Target("openai", "o")
    assert opened.fallback is True
    assert [a.outcome for a in opened.attempts] == ["failed", "ok"]
    assert providers["anthropic"].calls == ["a"]


async def test_unavailable_provider_is_skipped(providers) -> None:  # type: ignore[no-untyped-def]
    providers["openai"].available = True

    opened = await open_stream(
        plan=_plan(Target("anthropic", "a"), Target("openai", "o")), build_request=_builder
    )

    assert opened.target.provider == "openai"
    assert opened.fallback is True
    assert providers["anthropic"].calls == []


async def test_terminal_error_is_reported_as_what_it_is(providers) -> None:  # type: ignore[no-untyped-def]
    providers["anthropic"].available = True
    providers["anthropic"].failures = [ProviderHTTPError("anthropic", 400, "max_tokens: too large")]
    providers["openai"].available = True

    with pytest.raises(ProviderRejected) as info:
        await open_stream(
            plan=_plan(Target("anthropic", "a"), Target("openai", "o")), build_request=_builder
        )

    assert info.value.status == 400
    assert "max_tokens: too large" in info.value.message
    assert providers["openai"].calls == []


@pytest.mark.parametrize(("status", "expected"), [(401, 502), (403, 502), (404, 404)])
async def test_terminal_status_mapping(providers, status: int, expected: int) -> None:  # type: ignore[no-untyped-def]
    providers["anthropic"].available = True
    providers["anthropic"].failures = [ProviderHTTPError("anthropic", status, "no")]

    with pytest.raises(ProviderRejected) as info:
        await open_stream(plan=_plan(Target("anthropic", "a")), build_request=_builder)

    assert info.value.status == expected


async def test_every_model_failing_is_a_503_listing_the_attempts(providers) -> None:  # type: ignore[no-untyped-def]
    providers["anthropic"].available = True
    providers["anthropic"].failures = [ProviderConnectionError("anthropic", "refused")]

    with pytest.raises(ProviderUnavailable) as info:
        await open_stream(
            plan=_plan(Target("anthropic", "a"), Target("openai", "o")), build_request=_builder
        )

    assert info.value.status == 503
    assert [a["outcome"] for a in info.value.details["attempts"]] == ["failed", "unavailable"]
    assert "refused" in info.value.message

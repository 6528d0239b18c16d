"""Task routes in the database: seeding, validation, the services, and how an edit reaches
every worker's route table (the cache version) without a query per request."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import AsyncClient

from llm.models import TaskRoute
from llm.route_table import (
    ROUTES_VERSION_KEY,
    RouteTableCache,
    aroute_table,
    route_table,
    task_routes_seed,
)
from llm.routes import DEFAULT_ROUTES, Target, parse_task_config, route_to_spec
from llm.services import (
    TASK_ROUTE_DEFAULT_REQUIRED,
    task_route_create,
    task_route_delete,
    task_route_update,
    task_routes_import,
)
from tests.fakes import FakeUpstream

CONFIG = {
    "ergon_planning": {
        "provider": "openai",
        "model": "gpt-4o",
        "options": {
            "temperature": 0.3,
            "max_tokens": 1500,
            "fallback_provider": "anthropic",
            "fallback_model": "claude-3-haiku-20240307",
            "fallbacks": [{"provider": "ollama", "model": "llama3"}],
            "lower_max_tokens": True,
        },
    },
    "code": {"provider": "openai", "model": "gpt-4-turbo", "options": {"max_tokens": 800}},
}


def test_an_empty_table_is_seeded_with_the_built_in_routes(db) -> None:
    assert not TaskRoute.objects.exists()

    table = route_table()

    names = set(TaskRoute.objects.values_list("name", flat=True))
    assert names == {*DEFAULT_ROUTES, "summarize"}
    code = TaskRoute.objects.get(name="code")
    assert (code.provider, code.model) == ("anthropic", "claude-3-opus-20240229")
    assert (code.temperature, code.max_tokens) == (Decimal("0.2"), 4000)
    assert code.fallbacks == [{"provider": "openai", "model": "gpt-4-turbo"}]
    assert table.lookup(component=None, task_type="code") == DEFAULT_ROUTES["code"]


def test_seeding_reads_the_task_config_and_is_idempotent(db, settings, tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(CONFIG))
    settings.RHETOR_TASK_CONFIG = str(path)

    created = task_routes_seed()

    assert created == len(DEFAULT_ROUTES) + 2  # + summarize + ergon_planning
    route = route_table().lookup(component="ergon", task_type="planning")
    assert route.target == Target("openai", "gpt-4o")
    assert route.fallbacks == (
        Target("anthropic", "claude-3-haiku-20240307"),
        Target("ollama", "llama3"),
    )
    assert (route.temperature, route.max_tokens, route.lower_max_tokens) == (0.3, 1500, True)
    assert TaskRoute.objects.get(name="code").model == "gpt-4-turbo"
    assert task_routes_seed() == 0
    assert TaskRoute.objects.count() == created


def test_operator_edits_win_over_the_seed(db, settings, tmp_path: Path) -> None:
    task_routes_seed()
    code = TaskRoute.objects.get(name="code")
    task_route_update(
        route=code,
        provider="openai",
        model="gpt-4o",
        temperature=0.1,
        max_tokens=100,
        fallbacks=[],
        lower_max_tokens=False,
    )
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(CONFIG))
    settings.RHETOR_TASK_CONFIG = str(path)

    assert task_routes_seed() == 0
    assert route_table().lookup(component=None, task_type="code").target == Target(
        "openai", "gpt-4o"
    )


@pytest.mark.parametrize(
    ("_case", "fields", "field", "message"),
    [
        ("unknown_provider", {"provider": "acme"}, "provider", "Unknown provider 'acme'"),
        (
            "unknown_model",
            {"model": "gpt-9"},
            "model",
            "Unknown model 'gpt-9' for provider 'openai'; known models: gpt-4,",
        ),
        (
            "unknown_fallback",
            {"fallbacks": [Target("anthropic", "claude-99")]},
            "fallbacks",
            "Fallback 1: Unknown model 'claude-99' for provider 'anthropic'",
        ),
        ("temperature", {"temperature": 2.5}, "__all__", "Temperature must be between 0 and 2."),
        ("bad_name", {"name": "Ergon Code"}, "name", "Use lowercase letters"),
    ],
)
def test_invalid_routes_are_refused_with_a_clear_message(
    db, _case: str, fields: dict[str, Any], field: str, message: str
) -> None:
    arguments: dict[str, Any] = {"name": "ergon_code", "provider": "openai", "model": "gpt-4o"}

    with pytest.raises(ValidationError) as info:
        task_route_create(**{**arguments, **fields})

    assert any(message in m for m in info.value.message_dict[field])
    assert not TaskRoute.objects.filter(name=arguments["name"]).exists()


def test_ollama_models_are_dynamic_so_any_well_formed_name_is_accepted(db) -> None:
    route = task_route_create(name="translation", provider="ollama", model="qwen2.5:14b")

    assert route.pk is not None
    with pytest.raises(ValidationError):
        task_route_create(name="poetry", provider="ollama", model="bad name!")


def test_the_default_route_cannot_be_deleted(db) -> None:
    task_routes_seed()

    with pytest.raises(ValidationError) as info:
        task_route_delete(route=TaskRoute.objects.get(name="default"))

    assert info.value.messages == [TASK_ROUTE_DEFAULT_REQUIRED]
    assert TaskRoute.objects.filter(name="default").exists()


def test_a_deleted_route_falls_through_the_lookup_order(db) -> None:
    task_routes_seed()
    task_route_create(name="ergon", provider="openai", model="gpt-4o")
    assert route_table().lookup(component="ergon", task_type="code").name == "ergon"

    task_route_delete(route=TaskRoute.objects.get(name="ergon"))

    assert route_table().lookup(component="ergon", task_type="code").name == "code"


def test_an_edit_reaches_another_worker_through_the_cache_version(
    db, django_capture_on_commit_callbacks
) -> None:
    task_routes_seed()
    other_worker = RouteTableCache(recheck_seconds=0)
    before = other_worker.get()
    assert before.lookup(component=None, task_type="chat").target.model == (
        "claude-3-haiku-20240307"
    )

    with django_capture_on_commit_callbacks(execute=True):
        task_route_update(
            route=TaskRoute.objects.get(name="chat"),
            provider="openai",
            model="gpt-3.5-turbo",
            temperature=None,
            max_tokens=None,
            fallbacks=[],
            lower_max_tokens=False,
        )

    after = other_worker.get()
    assert after.lookup(component=None, task_type="chat").target == Target(
        "openai", "gpt-3.5-turbo"
    )
    assert other_worker.loads == 2


def test_the_version_is_bumped_only_when_the_write_commits(
    db, django_capture_on_commit_callbacks
) -> None:
    from django.core.cache import cache

    task_routes_seed()
    route_table()
    version = cache.get(ROUTES_VERSION_KEY)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        task_route_create(name="ergon", provider="openai", model="gpt-4o")

    assert cache.get(ROUTES_VERSION_KEY) == version
    assert len(callbacks) == 1
    callbacks[0]()
    assert cache.get(ROUTES_VERSION_KEY) != version


def test_between_checks_a_worker_neither_queries_nor_reloads(db, django_assert_num_queries) -> None:
    task_routes_seed()
    now = [100.0]
    worker = RouteTableCache(recheck_seconds=1.0, clock=lambda: now[0])
    worker.get()

    with django_assert_num_queries(0):
        for _ in range(50):
            worker.get()
    task_route_create(name="ergon", provider="openai", model="gpt-4o")
    from llm.route_table import route_table_changed

    route_table_changed()
    assert worker.get().lookup(component="ergon", task_type="code").name == "code"  # not yet
    now[0] += 1.5
    assert worker.get().lookup(component="ergon", task_type="code").name == "ergon"
    assert worker.loads == 2


async def test_the_request_path_lookup_makes_no_query_in_steady_state(settings) -> None:
    """aroute_table() between checks returns the worker's table without awaiting anything
    (no thread hop, no cache round trip, no query)."""
    settings.RHETOR_ROUTES_RECHECK_SECONDS = 3600
    from llm import route_table as tables
    from llm.routes import build_route_table

    sentinel = build_route_table({}, with_defaults=True)
    worker = RouteTableCache(loader=lambda: sentinel)
    original = tables._worker_routes
    tables._worker_routes = worker
    try:
        worker.value, worker.version, worker.checked_at = sentinel, "v", worker.clock()
        assert await aroute_table() is sentinel
        assert worker.loads == 0
    finally:
        tables._worker_routes = original


def test_import_is_all_or_nothing(db) -> None:
    task_routes_seed()
    routes = parse_task_config(
        {
            "ergon": {"provider": "openai", "model": "gpt-4o"},
            "telos": {"provider": "anthropic", "model": "claude-7"},
        }
    )

    with pytest.raises(ValidationError) as info:
        task_routes_import(routes=routes)

    assert "route 'telos', model: Unknown model 'claude-7'" in info.value.messages[0]
    assert not TaskRoute.objects.filter(name__in=["ergon", "telos"]).exists()


def test_import_with_replace_updates_creates_and_deletes(db) -> None:
    task_routes_seed()
    routes = parse_task_config(
        {
            "default": {"provider": "openai", "model": "gpt-4o"},
            "ergon_planning": CONFIG["ergon_planning"],
        }
    )

    result = task_routes_import(routes=routes, replace=True)

    assert result.created == ["ergon_planning"]
    assert result.updated == ["default"]
    assert set(result.deleted) == {*DEFAULT_ROUTES, "summarize"} - {"default"}
    assert sorted(TaskRoute.objects.values_list("name", flat=True)) == [
        "default",
        "ergon_planning",
    ]
    assert route_to_spec(route_table().routes["ergon_planning"]) == CONFIG["ergon_planning"]


def test_import_with_replace_needs_the_default_route(db) -> None:
    task_routes_seed()
    routes = parse_task_config({"ergon": {"provider": "openai", "model": "gpt-4o"}})

    with pytest.raises(ValidationError):
        task_routes_import(routes=routes, replace=True)

    assert TaskRoute.objects.filter(name="default").exists()
    assert not TaskRoute.objects.filter(name="ergon").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_an_edited_route_serves_the_next_message(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("Planned", input_tokens=10, output_tokens=2)
    await sync_to_async(task_routes_seed)()
    await sync_to_async(task_route_create)(
        name="ergon_planning",
        provider="anthropic",
        model="claude-3-haiku-20240307",
        temperature=0.15,
        max_tokens=321,
    )

    response = await AsyncClient().post(
        "/message",
        json.dumps({"message": "Plan it", "context_id": "ergon:p", "task_type": "planning"}),
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["model"] == "claude-3-haiku-20240307"
    sent = fake_upstream.last_request("anthropic").json
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == (
        "claude-3-haiku-20240307",
        0.15,
        321,
    )


def test_a_task_config_naming_an_unknown_model_fails_loudly(db, settings, tmp_path: Path) -> None:
    from django.core.exceptions import ImproperlyConfigured

    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"ergon": {"provider": "openai", "model": "my-finetune"}}))
    settings.RHETOR_TASK_CONFIG = str(path)

    with pytest.raises(ImproperlyConfigured, match="Unknown model 'my-finetune'"):
        route_table()

    assert not TaskRoute.objects.exists()
    settings.RHETOR_OPENAI_MODELS = ["my-finetune"]
    assert route_table().lookup(component="ergon", task_type="code").target.model == "my-finetune"

"""routes_export / routes_import and rhetor_doctor, through call_command."""

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from llm.models import TaskRoute
from llm.route_table import route_table, task_routes_seed
from llm.routes import DEFAULT_ROUTES, Target
from llm.services import task_route_create
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.django_db


def run(*args: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- routes_export / routes_import ---------------------------------------------------------


def test_export_writes_the_seed_format(tmp_path: Path) -> None:
    task_routes_seed()
    task_route_create(
        name="ergon_code",
        provider="openai",
        model="gpt-4o",
        temperature=0.1,
        max_tokens=1000,
        fallbacks=[Target("anthropic", "claude-3-opus-20240229"), Target("ollama", "llama3")],
    )
    path = tmp_path / "routes.json"

    summary = run("routes_export", "--output", str(path))

    assert summary.strip() == f"Exported {len(DEFAULT_ROUTES) + 2} task routes to {path}"
    config = json.loads(path.read_text())
    assert config["ergon_code"] == {
        "provider": "openai",
        "model": "gpt-4o",
        "options": {
            "temperature": 0.1,
            "max_tokens": 1000,
            "fallback_provider": "anthropic",
            "fallback_model": "claude-3-opus-20240229",
            "fallbacks": [{"provider": "ollama", "model": "llama3"}],
        },
    }
    assert config["chat"]["options"]["fallback_model"] == "gpt-3.5-turbo"


def test_export_to_stdout_is_only_the_json() -> None:
    config = json.loads(run("routes_export"))

    assert set(config) == {*DEFAULT_ROUTES, "summarize"}


def test_export_then_import_with_replace_round_trips(tmp_path: Path) -> None:
    task_routes_seed()
    task_route_create(name="ergon", provider="openai", model="gpt-4o", max_tokens=10)
    path = tmp_path / "routes.json"
    run("routes_export", "--output", str(path))
    before = route_table().routes
    task_route_create(name="telos", provider="openai", model="gpt-4o")

    summary = run("routes_import", str(path), "--replace")

    assert "deleted 1 (telos)" in summary
    assert "created 0," in summary
    assert route_table().routes == before


def test_import_adds_and_updates(tmp_path: Path) -> None:
    task_routes_seed()
    path = tmp_path / "routes.json"
    path.write_text(
        json.dumps(
            {
                "code": {"provider": "openai", "model": "gpt-4-turbo"},
                "ergon_planning": {
                    "provider": "anthropic",
                    "model": "claude-3-haiku-20240307",
                    "options": {"lower_max_tokens": True},
                },
            }
        )
    )

    summary = run("routes_import", str(path))

    assert summary.strip() == (
        f"Imported 2 task routes from {path}: created 1 (ergon_planning), "
        "updated 1 (code), deleted 0"
    )
    assert route_table().lookup(component=None, task_type="code").target == Target(
        "openai", "gpt-4-turbo"
    )
    assert route_table().lookup(component="ergon", task_type="planning").lower_max_tokens


@pytest.mark.parametrize(
    ("_case", "content", "message"),
    [
        ("not_json", "{nope", "is not valid JSON"),
        ("bad_shape", json.dumps({"x": {"provider": "acme", "model": "m"}}), "provider must be"),
        (
            "unknown_model",
            json.dumps(
                {
                    "ergon": {"provider": "openai", "model": "gpt-4o"},
                    "telos": {"provider": "openai", "model": "gpt-17"},
                }
            ),
            "route 'telos', model: Unknown model 'gpt-17' for provider 'openai'",
        ),
    ],
)
def test_import_refuses_bad_files_and_imports_nothing(
    tmp_path: Path, _case: str, content: str, message: str
) -> None:
    task_routes_seed()
    path = tmp_path / "routes.json"
    path.write_text(content)

    with pytest.raises(CommandError, match=message):
        run("routes_import", str(path))

    assert not TaskRoute.objects.filter(name__in=["ergon", "telos", "x"]).exists()


def test_import_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"cannot read .*nope.json: No such file"):
        run("routes_import", str(tmp_path / "nope.json"))


def test_replace_without_a_default_route_is_refused(tmp_path: Path) -> None:
    task_routes_seed()
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"ergon": {"provider": "openai", "model": "gpt-4o"}}))

    with pytest.raises(CommandError, match="default route cannot be deleted"):
        run("routes_import", str(path), "--replace")

    assert TaskRoute.objects.count() == len(DEFAULT_ROUTES) + 1


# --- rhetor_doctor ---------------------------------------------------------------------------


@pytest.fixture
def healthy(settings: Any) -> Any:
    """Only the simulated provider, no Redis, no Hermes: nothing to complain about."""
    settings.RHETOR_PROVIDERS = ["simulated"]
    settings.REDIS_URL = ""
    settings.RHETOR_WORKERS = 1
    settings.HERMES_API_URL = ""
    settings.RHETOR_TASK_CONFIG = ""
    return settings


def test_doctor_passes_a_healthy_configuration(healthy: Any) -> None:
    output = run("rhetor_doctor")

    assert f"ok   database: {connection.vendor} database reachable and migrated" in output
    assert "ok   prices: every routed model has a price" in output
    assert "ok   redis: not needed" in output
    assert "rhetor_doctor: no problems, 0 warning(s)" in output


def test_doctor_warns_about_an_enabled_provider_without_its_key(healthy: Any) -> None:
    healthy.RHETOR_PROVIDERS = ["openai", "simulated"]
    healthy.OPENAI_API_KEY = ""

    output = run("rhetor_doctor")

    assert "WARN openai: enabled but OPENAI_API_KEY is not set, so it is not used" in output
    assert "no problems, 1 warning(s)" in output


def test_doctor_checks_providers_over_http(healthy: Any, fake_upstream: FakeUpstream) -> None:
    healthy.RHETOR_PROVIDERS = ["openai", "ollama", "simulated"]
    healthy.OPENAI_API_KEY = "test-key"
    healthy.OPENAI_BASE_URL = fake_upstream.url + "/v1"
    healthy.OLLAMA_BASE_URL = fake_upstream.url

    output = run("rhetor_doctor")

    assert f"ok   openai: reachable (HTTP 200 from {fake_upstream.url}/v1/models)" in output
    assert f"ok   ollama: reachable (HTTP 200 from {fake_upstream.url}/api/tags)" in output
    assert fake_upstream.last_request("openai").headers["authorization"] == "Bearer test-key"


def test_doctor_fails_on_a_rejected_key(healthy: Any, fake_upstream: FakeUpstream) -> None:
    healthy.RHETOR_PROVIDERS = ["openai", "simulated"]
    healthy.OPENAI_API_KEY = "wrong"
    healthy.OPENAI_BASE_URL = fake_upstream.url + "/v1"
    fake_upstream.fail(401, path="/v1/models")
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 problem"):
        call_command("rhetor_doctor", stdout=out)

    assert "FAIL openai: the key was rejected (HTTP 401)" in out.getvalue()
    assert "fix: set a valid OPENAI_API_KEY" in out.getvalue()


def test_doctor_fails_on_an_unreachable_provider(healthy: Any) -> None:
    healthy.RHETOR_PROVIDERS = ["anthropic", "simulated"]
    healthy.ANTHROPIC_API_KEY = "k"
    healthy.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("rhetor_doctor", stdout=out)

    assert "FAIL anthropic: not reachable at http://127.0.0.1:9/v1/models" in out.getvalue()


def test_doctor_fails_on_a_routed_model_without_a_price(healthy: Any) -> None:
    task_routes_seed()
    task_route_create(name="translation", provider="ollama", model="qwen2.5:14b")
    task_route_create(name="ergon", provider="openai", model="gpt-4o")
    from budget.models import ModelPrice

    ModelPrice.objects.filter(provider="openai", model="gpt-4o").delete()
    out = io.StringIO()

    with pytest.raises(CommandError, match="problem"):
        call_command("rhetor_doctor", stdout=out)

    text = out.getvalue()
    assert "FAIL prices: no price for routed model openai/gpt-4o" in text
    assert "fix: set one: manage.py set_price openai gpt-4o" in text
    assert "qwen2.5" not in text  # Ollama is free ("*" price)


def test_doctor_fails_when_redis_is_set_but_absent(healthy: Any) -> None:
    healthy.REDIS_URL = "redis://127.0.0.1:9/0"
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("rhetor_doctor", stdout=out)

    assert "FAIL redis: REDIS_URL is set but Redis does not answer" in out.getvalue()


def test_doctor_fails_when_several_workers_have_no_redis(healthy: Any) -> None:
    healthy.RHETOR_WORKERS = 2
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("rhetor_doctor", stdout=out)

    assert "FAIL redis: RHETOR_WORKERS=2 needs Redis, but REDIS_URL is not set" in out.getvalue()


@pytest.mark.integration
def test_doctor_reaches_a_real_redis(healthy: Any, redis_url: str) -> None:
    healthy.REDIS_URL = redis_url
    healthy.RHETOR_WORKERS = 2

    assert "ok   redis: reachable" in run("rhetor_doctor")


def test_doctor_checks_hermes(healthy: Any, fake_upstream: FakeUpstream) -> None:
    healthy.HERMES_API_URL = fake_upstream.url
    assert "ok   hermes: reachable" in run("rhetor_doctor")

    healthy.HERMES_API_URL = "http://127.0.0.1:9"
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rhetor_doctor", stdout=out)
    assert "FAIL hermes: HERMES_API_URL=http://127.0.0.1:9 does not answer" in out.getvalue()


def test_doctor_reports_a_broken_task_config(healthy: Any, tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text("{broken")
    healthy.RHETOR_TASK_CONFIG = str(path)
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("rhetor_doctor", stdout=out)

    assert "FAIL routes: RHETOR_TASK_CONFIG" in out.getvalue()
    assert "is not valid JSON" in out.getvalue()

"""Every door is a translator over the one gateway: the same rules on each of them.

The prompt comparison run asks models, so it obeys what every gateway request obeys (the
`messages` scope, a pinned key's components, the rate limit, its real cost); a model named
without its provider resolves alike on /message, /ws and /v1.
"""

import json
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings

from access.ratelimit import rate_limiter
from budget.models import UsageRecord
from budget.policies import usd
from prompts import services as prompt_services
from rhetor_site.routing import websocket_urlpatterns
from tests.access.conftest import key_headers, make_key
from tests.fakes import FakeUpstream

REMOTE = {"RHETOR_HOST": "0.0.0.0", "RHETOR_REQUIRE_AUTH": None}  # noqa: S104


@pytest.fixture
def prompts(db: Any) -> None:
    prompt_services.prompt_create(name="Telos plan", component="telos", content="Plan well.")
    prompt_services.prompt_create(name="Telos goal", component="telos", content="Aim high.")


def compare(client: Client, headers: dict[str, str], **extra: Any) -> Any:
    body = {"prompt_id1": "telos_plan", "prompt_id2": "telos_goal", **extra}
    return client.post(
        "/prompts/compare", json.dumps(body), content_type="application/json", **headers
    )


@override_settings(**REMOTE)
@pytest.mark.usefixtures("prompts")
def test_a_pinned_key_cannot_run_another_components_prompts(client: Client) -> None:
    ergon = key_headers(make_key(scopes="messages,prompts:read", components="ergon").token)

    read = compare(client, ergon)
    run = compare(client, ergon, run=True, message="Plan my week")

    assert read.status_code == 200  # reading both prompts is prompts:read
    assert run.status_code == 403
    assert run.json()["code"] == "forbidden"
    assert run.json()["component"] == "telos"
    assert not UsageRecord.objects.exists()


@override_settings(**REMOTE)
@pytest.mark.usefixtures("prompts")
def test_a_run_needs_the_messages_scope(client: Client) -> None:
    reader = key_headers(make_key(scopes="prompts:read").token)

    response = compare(client, reader, run=True, message="Plan my week")

    assert response.status_code == 403
    assert response.json()["scope"] == "messages"
    assert not UsageRecord.objects.exists()


@override_settings(**REMOTE, REDIS_URL="")  # the in-memory limiter, whose counters it reads
@pytest.mark.usefixtures("prompts")
def test_a_run_is_charged_to_the_keys_token_limit_and_reports_its_cost(client: Client) -> None:
    created = make_key(scopes="messages,prompts:read", components="telos", tpm=100_000)

    response = compare(client, key_headers(created.token), run=True, message="Plan my week")

    assert response.status_code == 200
    results = response.json()["results"]
    records = list(UsageRecord.objects.order_by("id"))
    assert len(records) == 2
    for key, record in zip(("prompt1", "prompt2"), records, strict=True):
        assert results[key]["usage"]["cost"] == usd(record.cost_nanos)
        assert results[key]["usage"]["input_tokens"] == record.input_tokens
    windows = rate_limiter()._windows  # type: ignore[attr-defined]
    charged = sum(v[1] for (subject, _), v in windows.items() if subject == created.key.key_id)
    assert charged == sum(r.input_tokens + r.output_tokens for r in records)


# --- One model resolution on every door -------------------------------------------------


pytestmark_async = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def _message(body: dict[str, Any]) -> Any:
    from django.test import AsyncClient

    return await AsyncClient().post("/message", json.dumps(body), content_type="application/json")


async def _ws(options: dict[str, Any]) -> dict[str, Any]:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    connected, _ = await ws.connect()
    assert connected
    frame = {"message": "Hi", "context": "ergon:doors", "streaming": False, "options": options}
    await ws.send_json_to({"type": "LLM_REQUEST", "payload": frame})
    for _ in range(10):
        got = await ws.receive_json_from(timeout=5)
        if got["type"] in ("RESPONSE", "ERROR"):
            await ws.disconnect()
            return dict(got)
    raise AssertionError("no RESPONSE or ERROR frame")


async def _v1(model: str) -> Any:
    from django.test import AsyncClient

    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    return await AsyncClient().post(
        "/v1/chat/completions", json.dumps(body), content_type="application/json"
    )


@pytestmark_async
@pytest.mark.parametrize("model", ["gpt-4o", "openai/gpt-4o"])
async def test_a_model_without_its_routes_provider_resolves_alike_on_every_door(
    openai_provider: Any, fake_upstream: FakeUpstream, model: str
) -> None:
    # The default route is Anthropic's (not configured here); gpt-4o is OpenAI's.
    message = await _message({"message": "Hi", "options": {"model": model}})
    frame = await _ws({"model": model})
    v1 = await _v1(model)

    assert message.status_code == 200, message.content
    assert (message.json()["provider"], message.json()["model"]) == ("openai", "gpt-4o")
    assert frame["type"] == "RESPONSE", frame
    assert (frame["payload"]["provider"], frame["payload"]["model"]) == ("openai", "gpt-4o")
    assert v1.status_code == 200, v1.content
    assert v1["X-Rhetor-Provider"] == "openai"
    assert [r.path for r in fake_upstream.requests] == ["/v1/chat/completions"] * 3


@pytestmark_async
async def test_an_unknown_model_is_refused_alike_on_every_door(openai_provider: Any) -> None:
    message = await _message({"message": "Hi", "options": {"model": "gpt-nope"}})
    frame = await _ws({"model": "gpt-nope"})
    v1 = await _v1("gpt-nope")

    assert message.status_code == 400
    assert message.json()["code"] == "unknown_model"
    assert frame["type"] == "ERROR"
    assert frame["payload"]["code"] == "unknown_model"
    assert v1.status_code == 404
    assert v1.json()["error"]["code"] == "model_not_found"
    assert not await UsageRecord.objects.aexists()

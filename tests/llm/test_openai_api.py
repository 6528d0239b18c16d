"""The OpenAI-compatible endpoints, driven by the official `openai` SDK.

The SDK talks to Rhetor's ASGI application in process (httpx2.ASGITransport) and, in the
last test, to a real `manage.py serve` over loopback HTTP. Providers are the fake
upstreams of tests/fakes, so every answer, failure and usage figure is known.
"""

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from asgiref.sync import sync_to_async

from access.keycache import forget_key
from access.services import api_key_create
from budget.models import UsageRecord
from budget.services import budget_limit_set
from contexts.models import Context, Message
from llm.openai_format import OpenAIError, parse_chat_request
from llm.route_table import task_routes_seed
from llm.routes import build_route_table
from llm.services import task_route_create
from tests.fakes import FakeUpstream

# serialized_rollback: the seeded rows (default prompts, prices) survive other tests' flushes.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

USER_HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def api_key() -> AsyncIterator[str]:
    """A real key with the `messages` scope: the SDK always sends one."""
    created = await sync_to_async(api_key_create)(name="sdk", scopes="messages")
    yield created.token
    forget_key()


@pytest.fixture
async def client(api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    from rhetor_site.asgi import application

    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=application), base_url="http://127.0.0.1"
    )
    sdk = openai.AsyncOpenAI(
        api_key=api_key, base_url="http://127.0.0.1/v1", http_client=http, max_retries=0
    )
    yield sdk
    await sdk.close()


async def records() -> list[UsageRecord]:
    return [r async for r in UsageRecord.objects.order_by("id")]


# --- Non-streaming -----------------------------------------------------------------------


async def test_a_route_name_is_served_by_the_task_router_and_metered_once(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("Routed answer", input_tokens=11, output_tokens=2)

    raw = await client.chat.completions.with_raw_response.create(
        model="rhetor/chat", messages=USER_HI
    )
    completion = raw.parse()

    # The chat route's primary is Anthropic (not configured): its fallback answers.
    sent = fake_upstream.last_request("openai").json
    assert sent["model"] == "gpt-3.5-turbo"
    assert sent["temperature"] == 0.8
    assert sent["max_tokens"] == 2000
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-3.5-turbo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Routed answer"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 2)
    assert completion.usage.total_tokens == 13
    assert raw.headers["x-rhetor-provider"] == "openai"
    assert raw.headers["x-rhetor-fallback"] == "true"
    # gpt-3.5-turbo: 500 nano-USD in, 1500 out per token -> 11*500 + 2*1500 = 8500 nanos.
    assert raw.headers["x-rhetor-cost"] == "0.0000085"
    [record] = await records()
    assert (record.provider, record.model, record.status) == ("openai", "gpt-3.5-turbo", "ok")
    assert (record.input_tokens, record.output_tokens, record.cost_nanos) == (11, 2, 8500)


@pytest.mark.parametrize("model", ["gpt-4o", "openai/gpt-4o"])
async def test_a_model_id_goes_to_its_provider_with_the_clients_settings(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream, model: str
) -> None:
    fake_upstream.reply("Direct", input_tokens=3, output_tokens=1)

    completion = await client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Two "}, {"type": "text", "text": "parts"}],
            },
        ],
        temperature=0.1,
        max_completion_tokens=7,
    )

    sent = fake_upstream.last_request("openai").json
    assert sent["model"] == "gpt-4o"
    assert sent["temperature"] == 0.1
    assert sent["max_tokens"] == 7
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Two parts"},
    ]
    assert completion.model == "gpt-4o"
    assert completion.choices[0].message.content == "Direct"


async def test_a_component_route_with_its_prompt_and_a_stored_context(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("First", input_tokens=5, output_tokens=1)
    headers = {"X-Rhetor-Context": "ergon:oa", "X-Rhetor-Component": "ergon"}
    await client.chat.completions.create(
        model="rhetor/chat", messages=USER_HI, extra_headers=headers
    )
    fake_upstream.reply("Second", input_tokens=9, output_tokens=1)

    # The client resends the whole conversation; only the new turn is stored again.
    await client.chat.completions.create(
        model="rhetor/chat",
        messages=[
            *USER_HI,
            {"role": "assistant", "content": "First"},
            {"role": "user", "content": "More"},
        ],
        extra_headers=headers,
    )

    sent = fake_upstream.last_request("openai").json
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][0]["content"].startswith("You are Ergon")
    assert [(m["role"], m["content"]) for m in sent["messages"][1:]] == [
        ("user", "Hi"),
        ("assistant", "First"),
        ("user", "More"),
    ]
    context = await Context.objects.aget(context_id="ergon:oa")
    assert context.component == "ergon"
    stored = [(m.role, m.content) async for m in Message.objects.filter(context=context)]
    assert stored == [
        ("user", "Hi"),
        ("assistant", "First"),
        ("user", "More"),
        ("assistant", "Second"),
    ]
    assert [r.component for r in await records()] == ["ergon", "ergon"]
    assert {r.context_id for r in await records()} == {"ergon:oa"}


async def test_without_a_context_header_nothing_is_stored_but_usage_is_recorded(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("Stateless", input_tokens=4, output_tokens=1)

    await client.chat.completions.create(model="gpt-4o", messages=USER_HI)

    assert await Context.objects.acount() == 0
    assert await Message.objects.acount() == 0
    [record] = await records()
    assert (record.status, record.input_tokens, record.output_tokens) == ("ok", 4, 1)


async def test_a_component_task_route_is_served_as_rhetor_component_task(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    def add_route() -> None:
        task_routes_seed()
        task_route_create(
            name="ergon_planning", provider="openai", model="gpt-4-turbo", max_tokens=321
        )

    await sync_to_async(add_route)()

    completion = await client.chat.completions.create(
        model="rhetor/ergon_planning", messages=USER_HI
    )
    listed = {m.id async for m in client.models.list()}

    sent = fake_upstream.last_request("openai").json
    assert (sent["model"], sent["max_tokens"]) == ("gpt-4-turbo", 321)
    assert completion.model == "gpt-4-turbo"
    assert "rhetor/ergon_planning" in listed
    [record] = await records()
    assert (record.component, record.task_type) == ("ergon", "planning")


# --- Streaming ---------------------------------------------------------------------------


async def test_stream_in_openai_chunks_with_usage_last(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("one two three four", chunks=4, input_tokens=6, output_tokens=4)

    stream = await client.chat.completions.create(
        model="gpt-4o", messages=USER_HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (6, 4)
    assert all(c.usage is None for c in chunks[:-1])
    [record] = await records()
    assert (record.status, record.output_tokens) == ("ok", 4)


async def test_stream_without_include_usage_has_no_usage_chunk_and_ends_with_done(
    openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    from django.test import AsyncClient

    fake_upstream.reply("a b", chunks=2)

    response = await AsyncClient().post(
        "/v1/chat/completions",
        json.dumps({"model": "gpt-4o", "messages": USER_HI, "stream": True}),
        content_type="application/json",
    )
    body = b"".join([c async for c in response.streaming_content]).decode()

    assert response["Content-Type"] == "text/event-stream"
    frames = [f for f in body.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    events = [json.loads(f[len("data: ") :]) for f in frames[:-1]]
    assert all("usage" not in e for e in events)
    assert [e["choices"][0]["finish_reason"] for e in events] == [None, None, None, "stop"]
    assert events[-1]["choices"][0]["delta"] == {}


async def test_a_stream_that_fails_midway_raises_in_the_sdk_and_is_metered(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("one two three", chunks=3)
    fake_upstream.stream_error(500, message="upstream melted", after_chunks=1, path="openai")

    stream = await client.chat.completions.create(model="gpt-4o", messages=USER_HI, stream=True)
    received: list[Any] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIError, match="upstream melted") as raised:
        await consume()

    assert raised.value.code == "stream_interrupted"
    assert "".join(c.choices[0].delta.content or "" for c in received) == "one "
    [record] = await records()
    assert record.status == "error"


# --- Errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "extra", "param"),
    [
        ("tools", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ("n", {"n": 2}, "n"),
        ("stop", {"stop": ["\n"]}, "stop"),
        ("json mode", {"response_format": {"type": "json_object"}}, "response_format"),
        ("temperature", {"temperature": 3}, "temperature"),
        ("unknown", {"bogus": 1}, "bogus"),
    ],
)
async def test_unsupported_or_invalid_parameters_are_a_400_naming_them(
    client: openai.AsyncOpenAI,
    openai_provider: Any,
    fake_upstream: FakeUpstream,
    _case: str,
    extra: dict[str, Any],
    param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model="gpt-4o", messages=USER_HI, extra_body=extra)

    assert raised.value.status_code == 400
    assert raised.value.param == param
    assert raised.value.type == "invalid_request_error"
    assert fake_upstream.requests_to("openai") == []
    assert await records() == []


async def test_an_image_part_is_refused(client: openai.AsyncOpenAI, openai_provider: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/x.png"}}

    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": [image]}]
        )

    assert raised.value.param == "messages[0].content[0]"
    assert raised.value.code == "unsupported_parameter"


async def test_an_unknown_model_is_a_404_model_not_found(client: openai.AsyncOpenAI) -> None:
    for model in ("no-such-model", "openai/no-such-model", "rhetor/no_such_route"):
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(model=model, messages=USER_HI)
        assert raised.value.code == "model_not_found"
        assert raised.value.param == "model"


async def test_a_header_contradicting_the_route_is_a_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="rhetor/code", messages=USER_HI, extra_headers={"X-Rhetor-Task": "chat"}
        )
    assert raised.value.param == "X-Rhetor-Task"


async def test_an_enforced_budget_is_openais_quota_error_and_nothing_is_sent(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    await sync_to_async(budget_limit_set)(period="daily", limit_nanos=1_000, enforcement="enforce")

    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER_HI)

    assert raised.value.status_code == 429
    assert raised.value.code == "insufficient_quota"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert raised.value.body["rhetor"]["code"] == "budget_exceeded"
    assert fake_upstream.requests_to("openai") == []
    assert await records() == []


async def test_an_upstream_authentication_failure_is_a_502_server_error(
    client: openai.AsyncOpenAI, openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail(401, path="openai")

    with pytest.raises(openai.InternalServerError) as raised:
        await client.chat.completions.create(model="gpt-4o", messages=USER_HI)

    assert raised.value.status_code == 502
    assert raised.value.code == "provider_auth_failed"
    assert raised.value.type == "server_error"


# --- Models -----------------------------------------------------------------------------


async def test_models_lists_served_models_and_routes(
    client: openai.AsyncOpenAI, openai_provider: Any
) -> None:
    models = [m async for m in client.models.list()]
    code = await client.models.retrieve("rhetor/code")

    ids = {m.id: m.owned_by for m in models}
    assert ids["gpt-4o"] == "openai"
    assert ids["rhetor/code"] == "rhetor"
    assert "claude-3-opus-20240229" not in ids  # Anthropic is not configured
    assert all(m.object == "model" for m in models)
    assert code.id == "rhetor/code"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")


# --- Parsing (no database) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"n": 1, "tools": [], "top_p": 1, "logprobs": False, "user": "me", "stop": None},
        {"messages": [{"role": "developer", "content": "x"}, *USER_HI]},
        {
            "messages": [
                *USER_HI,
                {"role": "assistant", "content": "a", "refusal": None, "tool_calls": None},
                *USER_HI,
            ]
        },
    ],
)
def test_neutral_values_and_replayed_sdk_messages_are_accepted(body: dict[str, Any]) -> None:
    call = parse_chat_request(
        json.dumps({"model": "simulated-standard", "messages": USER_HI, **body}).encode(),
        {},
        routes=build_route_table({}),
    )

    assert call.request.messages[-1].content == "Hi"
    assert call.request.store is False


@pytest.mark.parametrize(
    ("_case", "body", "param"),
    [
        ("not json", b"{", None),
        (
            "no user turn",
            {"model": "gpt-4o", "messages": [{"role": "system", "content": "x"}]},
            "messages",
        ),
        (
            "tool role",
            {"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
        ),
        (
            "usage without stream",
            {"model": "gpt-4o", "messages": USER_HI, "stream_options": {"include_usage": True}},
            "stream_options",
        ),
        (
            "max tokens disagree",
            {"model": "gpt-4o", "messages": USER_HI, "max_tokens": 5, "max_completion_tokens": 6},
            "max_tokens",
        ),
    ],
)
def test_malformed_requests_are_refused(_case: str, body: Any, param: str | None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(OpenAIError) as raised:
        parse_chat_request(raw, {}, routes=build_route_table({}))
    assert raised.value.status == 400
    assert raised.value.param == param


# --- End to end over real HTTP --------------------------------------------------------------


def test_the_sdk_streams_through_a_real_server_to_a_real_upstream(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    from tests.servers import serve, stop_server

    fake_upstream.reply("over real sockets", chunks=3, input_tokens=8, output_tokens=3)
    url, process = serve(
        tmp_path,
        {
            "RHETOR_PROVIDERS": "openai,simulated",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": f"{fake_upstream.url}/v1",
        },
    )
    try:
        token = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "create_api_key",
                "--name",
                "e2e",
                "--scopes",
                "messages",
            ],
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'rhetor.sqlite3'}",
                "REDIS_URL": "",
            },
            cwd=Path(__file__).resolve().parents[2],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        sdk = openai.OpenAI(api_key=token, base_url=f"{url}/v1", max_retries=0, timeout=10)
        chunks = list(
            sdk.chat.completions.create(
                model="gpt-4o",
                messages=USER_HI,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"X-Rhetor-Context": "e2e:openai"},
            )
        )
        completion = sdk.chat.completions.create(model="rhetor/code", messages=USER_HI)
    finally:
        stop_server(process)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "over real sockets"
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 11
    assert completion.model == "gpt-4-turbo"  # the code route's fallback: Anthropic is off
    assert [r.json["model"] for r in fake_upstream.requests_to("/v1/chat/completions")] == [
        "gpt-4o",
        "gpt-4-turbo",
    ]

"""The Python clients' own behaviour, without a server: importable without Django,
errors typed by status, the API key header, Hermes discovery, and stream failures
(the wire is `httpx.MockTransport`)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from rhetor.client import (
    DEFAULT_URL,
    BudgetExceeded,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ReplyStream,
    RhetorClientError,
    RhetorCommunicationClient,
    RhetorPromptClient,
    StreamInterrupted,
    Unauthorized,
    Unavailable,
    discover_rhetor_url,
    resolve_rhetor_url,
    server_template,
)

ROOT = Path(__file__).resolve().parents[2]


def test_client_imports_without_django() -> None:
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import rhetor.client\n"
        "assert 'DJANGO_SETTINGS_MODULE' not in os.environ\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(loaded & {'django', 'ninja', 'channels', 'rhetor_site', 'llm'}))\n"
    )

    # -I: isolated (no PYTHON* variables, no user site); a clean environment besides.
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def answering(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("_case", "status", "kind"),
    [
        ("validation", 422, InvalidRequest),
        ("bad request", 400, InvalidRequest),
        ("no key", 401, Unauthorized),
        ("budget", 402, BudgetExceeded),
        ("scope", 403, Forbidden),
        ("missing", 404, NotFound),
        ("server", 500, Unavailable),
        ("provider down", 503, Unavailable),
        ("teapot", 418, RhetorClientError),
    ],
)
async def test_error_answers_raise_the_exception_of_their_status(
    _case: str, status: int, kind: type[RhetorClientError]
) -> None:
    body = {"error": "The daily budget does not allow this", "code": "some_code", "limit": "1"}
    client = RhetorCommunicationClient("http://rhetor.test", transport=answering(status, body))

    with pytest.raises(kind) as caught:
        await client.send_message("hi")
    await client.close()

    assert type(caught.value) is kind
    assert caught.value.status == status
    assert caught.value.error == "The daily budget does not allow this"
    assert caught.value.code == "some_code"
    assert caught.value.body["limit"] == "1"


async def test_rate_limit_carries_retry_after_and_non_json_errors_keep_their_text() -> None:
    limited = RhetorPromptClient(
        "http://rhetor.test",
        transport=answering(
            429, {"error": "slow down", "code": "rate_limited"}, {"Retry-After": "3"}
        ),
    )
    gateway = RhetorPromptClient("http://rhetor.test", transport=answering(502, b"Bad gateway"))

    with pytest.raises(RateLimited) as rate:
        await limited.list_templates()
    with pytest.raises(Unavailable) as down:
        await gateway.list_templates()

    assert rate.value.retry_after == 3.0
    assert down.value.error == "Bad gateway"
    assert down.value.code == "http_502"


async def test_unreachable_rhetor_is_unavailable_without_a_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = RhetorPromptClient("http://rhetor.test", transport=httpx.MockTransport(refuse))

    with pytest.raises(Unavailable) as caught:
        await client.list_prompts()

    assert caught.value.status is None
    assert caught.value.code == "connection_error"


@pytest.mark.parametrize("source", ["argument", "environment"])
async def test_api_key_is_sent_as_a_bearer_token(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"count": 0, "prompts": []})

    monkeypatch.setenv("RHETOR_API_KEY", "rk_env_secret")
    key = "rk_arg_secret" if source == "argument" else None
    async with RhetorPromptClient(
        "http://rhetor.test", api_key=key, transport=httpx.MockTransport(handler)
    ) as client:
        await client.list_prompts()

    expected = "rk_arg_secret" if source == "argument" else "rk_env_secret"
    assert seen[0].headers["Authorization"] == f"Bearer {expected}"


async def test_no_key_sends_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"count": 0, "prompts": []})

    monkeypatch.delenv("RHETOR_API_KEY", raising=False)
    async with RhetorPromptClient(
        "http://rhetor.test", transport=httpx.MockTransport(handler)
    ) as client:
        await client.list_prompts()

    assert "Authorization" not in seen[0].headers


async def test_context_ids_are_percent_encoded_in_paths() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"context_id": "a:b/c d", "count": 0, "messages": []})

    async with RhetorCommunicationClient(
        "http://rhetor.test", transport=httpx.MockTransport(handler)
    ) as client:
        await client.get_conversation("a:b/c d", limit=5)

    assert seen == ["/contexts/a%3Ab%2Fc%20d?limit=5&include_metadata=true"]


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)


async def test_an_error_event_mid_stream_raises_stream_interrupted() -> None:
    body = sse(
        {"chunk": "Once upon", "model": "m", "provider": "p", "done": False},
        {"chunk": "", "error": "p failed mid-stream: reset", "done": True},
    )
    transport = answering(200, body, {"Content-Type": "text/event-stream"})
    received: list[str] = []

    async def read_all(client: RhetorCommunicationClient) -> ReplyStream:
        async with client.stream_message("story") as reply:
            async for chunk in reply:
                received.append(chunk)
        return reply

    async with RhetorCommunicationClient("http://rhetor.test", transport=transport) as client:
        stream = client.stream_message("story")
        with pytest.raises(StreamInterrupted) as caught:
            await read_all(client)
        with pytest.raises(StreamInterrupted):
            _ = [c async for c in stream]

    assert received == ["Once upon"]
    assert caught.value.error == "p failed mid-stream: reset"
    assert stream.done is True
    assert stream.text == "Once upon"


async def test_a_stream_that_ends_without_its_done_event_is_an_error() -> None:
    body = sse({"chunk": "partial", "model": "m", "provider": "p", "done": False})
    transport = answering(200, body, {"Content-Type": "text/event-stream"})

    async with RhetorCommunicationClient("http://rhetor.test", transport=transport) as client:
        with pytest.raises(StreamInterrupted) as caught:
            _ = [c async for c in client.stream_message("story")]

    assert caught.value.code == "stream_incomplete"


@pytest.mark.parametrize(
    ("_case", "template", "variables", "expected"),
    [
        (
            "seed style",
            "For {component}: {feature}",
            ["component", "feature"],
            "For {{ component }}: {{ feature }}",
        ),
        (
            "undeclared braces stay",
            "{component} uses {json}",
            ["component"],
            "{{ component }} uses {json}",
        ),
        ("already rhetor syntax", "{{ a }} and {b}", ["a", "b"], "{{ a }} and {b}"),
        ("no variables", "{a}", None, "{a}"),
    ],
)
def test_original_placeholders_become_rhetor_placeholders(
    _case: str, template: str, variables: list[str] | None, expected: str
) -> None:
    assert server_template(template, variables) == expected


# --- Discovery ------------------------------------------------------------------------------


def hermes_listing(listing: Any, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/components"
        return httpx.Response(status, json=listing)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("_case", "listing", "expected"),
    [
        ("list with endpoint", [{"name": "rhetor", "endpoint": "http://h:8300/"}], "http://h:8300"),
        (
            "wrapped, metadata endpoints",
            {"components": [{"type": "rhetor", "metadata": {"endpoints": {"http": "http://m:1"}}}]},
            "http://m:1",
        ),
        ("keyed by id", {"rhetor-7": {"url": "http://k:2"}}, "http://k:2"),
        ("not registered", [{"name": "engram", "endpoint": "http://e:1"}], None),
        ("garbage", "nope", None),
    ],
)
async def test_discovery_reads_what_hermes_lists(
    _case: str, listing: Any, expected: str | None
) -> None:
    found = await discover_rhetor_url("http://hermes.test/api", transport=hermes_listing(listing))

    assert found == expected


async def test_discovery_falls_back_when_hermes_is_down_or_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RHETOR_URL", raising=False)
    monkeypatch.delenv("HERMES_API_URL", raising=False)
    down = await discover_rhetor_url("http://hermes.test", transport=hermes_listing({}, 503))

    assert down is None
    assert await resolve_rhetor_url() == DEFAULT_URL
    assert await resolve_rhetor_url("http://given:1/") == "http://given:1"
    monkeypatch.setenv("RHETOR_URL", "http://env:2")
    assert await resolve_rhetor_url() == "http://env:2"

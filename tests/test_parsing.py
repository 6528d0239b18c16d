"""Request bodies the database cannot store (a NUL character anywhere) are refused as
invalid input before any operation sees them, on every REST endpoint and on /ws."""

import json
from typing import Any

import pytest
from django.test import Client

from contexts.models import Message
from prompts.models import Template
from tests.llm.test_consumers import ConsumerTestCase


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/message", {"message": "hi\x00", "context_id": "nul"}),
        ("/chat", {"messages": [{"role": "user", "content": "hi"}], "context_id": "nul\x00"}),
        ("/templates", {"name": "t", "content": "x", "tags": ["a\x00"]}),
        ("/budget/limit", {"period": "daily", "limit_amount": "1", "component": "\x00"}),
    ],
)
def test_a_nul_anywhere_in_a_body_is_a_422_naming_it(
    db: None, client: Client, path: str, body: Any
) -> None:
    response = post(client, path, body)

    assert response.status_code == 422, response.content
    assert response.json()["code"] == "validation_error"
    assert "NUL character (U+0000)" in response.json()["error"]
    assert not Message.objects.exists()
    assert not Template.objects.filter(name="t").exists()


def test_the_openai_endpoint_refuses_it_in_openais_error_shape(db: None, client: Client) -> None:
    response = post(
        client,
        "/v1/chat/completions",
        {"model": "rhetor/chat", "messages": [{"role": "user", "content": "a\x00"}]},
    )

    assert 400 <= response.status_code < 500
    assert "NUL character" in response.json()["error"]["message"]


def test_an_escaped_backslash_u0000_is_ordinary_text(db: None, client: Client) -> None:
    # The six characters \u0000 (JSON "\\u0000") are text, not a NUL.
    response = post(client, "/message", {"message": "print('\\u0000')", "context_id": "esc"})

    assert response.status_code == 200, response.content


class WebSocketNulTests(ConsumerTestCase):
    async def test_a_frame_with_a_nul_answers_an_error_and_the_socket_stays_open(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {"type": "LLM_REQUEST", "payload": {"message": "x\x00", "context": "c"}}
        )
        error = await ws.receive_json_from()
        await ws.send_json_to({"type": "REGISTER", "payload": {"component_id": "ergon"}})
        registered = await ws.receive_json_from()
        await ws.disconnect()

        assert error["type"] == "ERROR"
        assert "NUL character" in error["payload"]["error"]
        assert registered["type"] == "RESPONSE"
        assert not await Message.objects.aexists()

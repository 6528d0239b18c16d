"""Fixtures for the LLM layer: a fake upstream, and real providers pointed at it.

    async def test_reply_comes_from_anthropic(anthropic_provider, fake_upstream):
        fake_upstream.reply("Hi there", input_tokens=3)   # what the upstream answers
        fake_upstream.fail(503, path="anthropic")         # ...or how it fails, once
        ...                                               # call Rhetor
        sent = fake_upstream.last_request("anthropic").json
        assert sent["system"] == "..."

- `fake_upstream`: the `FakeUpstream` (tests/fakes/upstream.py) on 127.0.0.1, one server
  per test module, reset (requests, faults, reply settings; listening again) around every test.
- `anthropic_provider` / `openai_provider` / `ollama_provider`: enable that provider in
  RHETOR_PROVIDERS, set a key ("test-key") and point its base URL at the fake
  (ANTHROPIC_BASE_URL = url, OPENAI_BASE_URL = url + "/v1", OLLAMA_BASE_URL = url), rebuild
  the registry (`reset_providers()`) and return the registry's instance, so
  `llm.providers.get_provider(id)` and everything built on it use the fake. Each one
  rebuilds the registry: when a test uses several, read providers through `get_provider`.
- After every test the registry is reset, so no SDK client outlives its event loop.

Fixtures reach pytest-style tests only. An async method of a django.test.TestCase runs on
an event loop of its own that ends with the method: use `FakeUpstream` and
`override_settings` there, and `await llm.providers.reset_providers()` before the method
returns, or the providers' sockets outlive their loop (ResourceWarning).
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llm.providers import get_provider, reset_providers
from llm.providers.anthropic import AnthropicProvider
from llm.providers.ollama import OllamaProvider
from llm.providers.openai import OpenAIProvider
from tests.fakes.upstream import FakeUpstream

TEST_KEY = "test-key"


@pytest.fixture(scope="module")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    """The module's server; tests use `fake_upstream`, which also resets it."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()


@pytest.fixture(autouse=True)
async def _reset_provider_registry() -> AsyncIterator[None]:
    yield
    await reset_providers()


def _enable(settings: Any, provider_id: str) -> None:
    if provider_id not in settings.RHETOR_PROVIDERS:
        settings.RHETOR_PROVIDERS = [*settings.RHETOR_PROVIDERS, provider_id]


@pytest.fixture
async def anthropic_provider(fake_upstream: FakeUpstream, settings: Any) -> AnthropicProvider:
    _enable(settings, "anthropic")
    settings.ANTHROPIC_API_KEY = TEST_KEY
    settings.ANTHROPIC_BASE_URL = fake_upstream.url
    await reset_providers()
    provider = get_provider("anthropic")
    assert isinstance(provider, AnthropicProvider)
    return provider


@pytest.fixture
async def openai_provider(fake_upstream: FakeUpstream, settings: Any) -> OpenAIProvider:
    _enable(settings, "openai")
    settings.OPENAI_API_KEY = TEST_KEY
    settings.OPENAI_BASE_URL = f"{fake_upstream.url}/v1"
    await reset_providers()
    provider = get_provider("openai")
    assert isinstance(provider, OpenAIProvider)
    return provider


@pytest.fixture
async def ollama_provider(fake_upstream: FakeUpstream, settings: Any) -> OllamaProvider:
    _enable(settings, "ollama")
    settings.OLLAMA_BASE_URL = fake_upstream.url
    await reset_providers()
    provider = get_provider("ollama")
    assert isinstance(provider, OllamaProvider)
    return provider

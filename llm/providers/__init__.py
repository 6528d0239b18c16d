"""The provider registry: one instance of each provider per process, created lazily and
reused, so SDK clients and their connection pools live as long as the process."""

from llm.providers.base import Provider

PROVIDER_ORDER = ("anthropic", "openai", "ollama", "simulated")

_registry: dict[str, Provider] | None = None


def _build(provider_id: str) -> Provider:
    if provider_id == "anthropic":
        from llm.providers.anthropic import AnthropicProvider

        return AnthropicProvider()
    if provider_id == "openai":
        from llm.providers.openai import OpenAIProvider

        return OpenAIProvider()
    if provider_id == "ollama":
        from llm.providers.ollama import OllamaProvider

        return OllamaProvider()
    if provider_id == "simulated":
        from llm.providers.simulated import SimulatedProvider

        return SimulatedProvider()
    raise KeyError(provider_id)


def all_providers() -> dict[str, Provider]:
    """Every known provider, keyed by id, in the canonical order. A provider missing from
    RHETOR_PROVIDERS is still listed (as unavailable) but never configured."""
    global _registry
    if _registry is None:
        _registry = {pid: _build(pid) for pid in PROVIDER_ORDER}
    return _registry


def get_provider(provider_id: str) -> Provider | None:
    return all_providers().get(provider_id)


async def reset_providers() -> None:
    """Close and forget every provider (tests, settings changes)."""
    global _registry
    if _registry is not None:
        for provider in _registry.values():
            await provider.aclose()
    _registry = None

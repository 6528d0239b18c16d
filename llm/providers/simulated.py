"""The simulated provider: deterministic, zero-cost, always available.

It is what a user with no API keys gets, so every answer says plainly that it is simulated.
It streams word by word with a realistic cadence and reports usage like a real provider.
"""

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator

from django.conf import settings

from llm.providers.base import (
    Completion,
    CompletionRequest,
    ModelInfo,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from rhetor_site.tokens import estimate_messages_tokens, estimate_tokens

MODELS = [
    ModelInfo(id="simulated-standard", name="Standard Simulation", context_window=8192),
    ModelInfo(id="simulated-fast", name="Fast Simulation", context_window=8192),
]

_OPENERS = (
    "Here is a simulated answer.",
    "This is a simulated reply.",
    "Simulated response follows.",
)


def simulated_reply(request: CompletionRequest) -> str:
    """The deterministic answer to a request: same input, same words."""
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    digest = int(hashlib.sha256(last_user.encode()).hexdigest(), 16)
    opener = _OPENERS[digest % len(_OPENERS)]
    quoted = re.sub(r"\s+", " ", last_user).strip()
    if len(quoted) > 200:
        quoted = quoted[:197] + "..."
    turns = len(request.messages)
    reply = (
        f'[Simulated response from {request.model}] {opener} You said: "{quoted}". '
        f"I can see {turns} message{'s' if turns != 1 else ''} in this conversation"
        f"{' and a system prompt' if request.system else ''}. "
        "No LLM provider API key is configured, so Rhetor answers with its simulated provider; "
        "set ANTHROPIC_API_KEY or OPENAI_API_KEY, or run Ollama, for real answers."
    )
    if request.max_tokens is not None:
        words = reply.split(" ")
        # Respect max_tokens like a real model would: stop when the budget is spent.
        kept: list[str] = []
        used = 0
        for word in words:
            cost = estimate_tokens(word + " ")
            if used + cost > request.max_tokens:
                break
            kept.append(word)
            used += cost
        reply = " ".join(kept)
    return reply


class SimulatedProvider:
    id = "simulated"
    name = "Simulated LLM"

    def __init__(self, delay: float | None = None) -> None:
        self._delay = delay

    @property
    def delay(self) -> float:
        """The pause between streamed words (RHETOR_SIMULATED_DELAY unless fixed)."""
        return settings.RHETOR_SIMULATED_DELAY if self._delay is None else self._delay

    def is_configured(self) -> bool:
        return True

    async def is_available(self) -> bool:
        return True

    def models(self) -> list[ModelInfo]:
        return list(MODELS)

    def default_model(self) -> str:
        return MODELS[0].id

    def knows_model(self, model: str) -> bool:
        return any(m.id == model for m in MODELS)

    def _usage(self, request: CompletionRequest, text: str) -> Usage:
        return Usage(
            input_tokens=estimate_messages_tokens(request.messages, request.system),
            output_tokens=estimate_tokens(text),
            source="provider",
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        text = simulated_reply(request)
        return Completion(
            text=text,
            usage=self._usage(request, text),
            model=request.model,
            finish_reason="stop",
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        text = simulated_reply(request)
        pieces = re.findall(r"\S+\s*", text)
        for piece in pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        yield StreamEnd(usage=self._usage(request, text), model=request.model, finish_reason="stop")

    async def aclose(self) -> None:
        return None

"""Offline token estimates, used where a provider has not reported real counts."""

import math

from llm.providers.base import ChatMessage

# Per-message overhead of the chat formats (role markers, separators), in tokens.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """About four characters per token for English text with BPE tokenizers; never 0 for
    non-empty text."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 4))


def estimate_messages_tokens(messages: tuple[ChatMessage, ...], system: str | None = None) -> int:
    total = estimate_tokens(system or "") + (MESSAGE_OVERHEAD if system else 0)
    for message in messages:
        total += estimate_tokens(message.content) + MESSAGE_OVERHEAD
    return total

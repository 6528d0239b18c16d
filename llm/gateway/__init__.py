"""The gateway core: one request's whole life, from its caller to its stored exchange.

Read llm/gateway/core.py first: it is the sequence (admit, prepare, plan, open with
fallbacks and budget holds, stream, settle, store, publish), each step a function in a
module of this package. The doors translate their wire formats into `LLMRequest` and
`Caller` and call `llm_stream_open` / `llm_complete`:

    llm/api.py          REST /message, /chat, /stream (SSE) and /prompts/compare
    llm/openai_api.py   /v1/chat/completions (llm/openai_format.py: its wire format)
    llm/consumers.py    the WebSocket /ws
    llm/summaries.py    the model that writes conversation summaries (contexts.summaries)
"""

from llm.gateway.core import llm_complete, llm_stream_open
from llm.gateway.request import (
    INTERNAL,
    Caller,
    LLMRequest,
    LLMResult,
    RouteOptions,
    http_caller,
)
from llm.gateway.stream import LLMStream

__all__ = [
    "INTERNAL",
    "Caller",
    "LLMRequest",
    "LLMResult",
    "LLMStream",
    "RouteOptions",
    "http_caller",
    "llm_complete",
    "llm_stream_open",
]

"""The wire formats the fake upstream speaks, built from the recorded payloads in
`tests/fixtures/llm/<provider>/`, so the fake cannot drift from what the real APIs send.

Every builder takes a `Reply` (what to answer) and returns either a JSON-able dict (the
non-streaming answer) or a `StreamPlan` (the frames of the streaming answer, already
encoded). Text frames are rendered by splicing the JSON-escaped text into a pre-rendered
template, so a long stream costs one `json.dumps` of a short string per chunk.
"""

import copy
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llm"

Provider = Literal["anthropic", "openai", "ollama"]

SSE = "text/event-stream; charset=utf-8"
NDJSON = "application/x-ndjson"

_SLOT = "\x00TEXT\x00"
_SLOT_JSON = json.dumps(_SLOT)

_WORD = re.compile(r"\S+\s*")


# --- Templates ----------------------------------------------------------------------------


@cache
def _fixture_text(provider: str, name: str) -> str:
    return (FIXTURES / provider / name).read_text()


def load_json(provider: str, name: str) -> Any:
    """A recorded JSON payload (a fresh copy: callers may change it)."""
    return json.loads(_fixture_text(provider, name))


def load_sse(provider: str, name: str) -> list[tuple[str | None, str]]:
    """A recorded SSE stream as (event name, data) pairs, in order."""
    events: list[tuple[str | None, str]] = []
    for block in _fixture_text(provider, name).split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        if data:
            events.append((event, "\n".join(data)))
    return events


def load_ndjson(provider: str, name: str) -> list[Any]:
    """A recorded NDJSON stream, one parsed object per line."""
    return [json.loads(line) for line in _fixture_text(provider, name).splitlines() if line]


@cache
def _sse_templates(provider: str, name: str) -> dict[str, list[Any]]:
    """The recorded events of a stream grouped by their `type` (or event name)."""
    grouped: dict[str, list[Any]] = {}
    for event, data in load_sse(provider, name):
        if data == "[DONE]":
            continue
        payload = json.loads(data)
        key = event or ("usage" if not payload.get("choices") else "chunk")
        grouped.setdefault(key, []).append(payload)
    return grouped


def _template(provider: str, name: str, key: str, index: int = 0) -> Any:
    return copy.deepcopy(_sse_templates(provider, name)[key][index])


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _text_frame_renderer(template: str) -> tuple[bytes, bytes]:
    """Split a rendered frame holding `_SLOT` as its text into (prefix, suffix)."""
    prefix, suffix = template.split(_SLOT_JSON)
    return prefix.encode(), suffix.encode()


def _splice(prefix: bytes, text: str, suffix: bytes) -> bytes:
    return prefix + json.dumps(text, ensure_ascii=False).encode() + suffix


# --- What to answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The answer to one chat request: its text deltas and the usage to report."""

    model: str
    pieces: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    # True when max_tokens cut the answer short (finish reason "length" / "max_tokens").
    truncated: bool = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def content_text(content: Any) -> str:
    """The text of a message `content`: a string, or a list of blocks/parts with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def chat_texts(provider: Provider, body: dict[str, Any]) -> tuple[str, list[str]]:
    """(last user message, every prompt text including Anthropic's `system`)."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
    if provider == "anthropic":
        texts.append(content_text(body.get("system")))
    last_user = next(
        (
            content_text(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    return last_user, texts


def max_tokens_of(provider: Provider, body: dict[str, Any]) -> int | None:
    if provider == "anthropic":
        value = body.get("max_tokens")
    elif provider == "openai":
        value = body.get("max_completion_tokens", body.get("max_tokens"))
    else:
        options = body.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def build_reply(
    provider: Provider,
    body: dict[str, Any],
    *,
    text: str | None = None,
    chunks: int | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
) -> Reply:
    """The deterministic answer to a chat request body.

    The text is `text` or, by default, "Echo: <last user message>". The fake counts one
    token per word: a reply of more words than max_tokens is cut there (and marked
    truncated); usage defaults to the words of the prompt (system prompt included) and of
    the reply. With `chunks` the text is streamed as exactly that many deltas: words are
    grouped, or repeated cyclically when the text has fewer words than `chunks`.
    """
    last_user, prompt_texts = chat_texts(provider, body)
    reply_text = text if text is not None else f"Echo: {last_user}"
    words = _WORD.findall(reply_text.strip())
    if chunks is not None and 0 < len(words) < chunks:
        base = [w.rstrip() for w in words]
        cycled = [base[i % len(base)] for i in range(chunks)]
        words = [w + " " for w in cycled[:-1]] + [cycled[-1]]
    limit = max_tokens_of(provider, body)
    truncated = limit is not None and len(words) > limit
    if limit is not None and truncated:
        words = words[:limit]
    n = len(words) if chunks is None else min(chunks, len(words))
    pieces: list[str] = []
    for i in range(n):
        start, end = i * len(words) // n, (i + 1) * len(words) // n
        pieces.append("".join(words[start:end]))
    model = body.get("model")
    prompt_words = sum(len(_WORD.findall(t)) for t in prompt_texts)
    return Reply(
        model=model if isinstance(model, str) else "unknown",
        pieces=tuple(pieces),
        input_tokens=prompt_words if input_tokens is None else input_tokens,
        output_tokens=len(words) if output_tokens is None else output_tokens,
        truncated=truncated,
    )


@dataclass(frozen=True)
class StreamPlan:
    """The frames of one streaming answer. `head` comes before the text, `content` holds
    one frame per text delta, `tail` holds the closing events, last one last."""

    content_type: str
    head: list[bytes]
    content: list[bytes]
    tail: list[bytes]
    malformed: bytes
    headers: dict[str, str] = field(default_factory=dict)


# --- Anthropic ----------------------------------------------------------------------------

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    payload: dict[str, Any] = load_json("anthropic", "error_overloaded.json")
    payload["error"] = {"type": anthropic_error_type(status), "message": message}
    return payload


def _sse(event: str | None, payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else _dumps(payload)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


def anthropic_message(reply: Reply, message_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = load_json("anthropic", "message.json")
    payload.update(
        id=message_id,
        model=reply.model,
        content=[{"type": "text", "text": reply.text}],
        stop_reason="max_tokens" if reply.truncated else "end_turn",
        usage={"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    )
    return payload


def anthropic_stream(reply: Reply, message_id: str) -> StreamPlan:
    name = "stream_basic.sse"
    start = _template("anthropic", name, "message_start")
    start["message"].update(id=message_id, model=reply.model)
    start["message"]["usage"] = {"input_tokens": reply.input_tokens, "output_tokens": 1}
    delta = _template("anthropic", name, "content_block_delta")
    delta["delta"]["text"] = _SLOT
    prefix, suffix = _text_frame_renderer(_sse("content_block_delta", delta).decode())
    message_delta = _template("anthropic", name, "message_delta")
    message_delta["delta"]["stop_reason"] = "max_tokens" if reply.truncated else "end_turn"
    message_delta["usage"] = {"output_tokens": reply.output_tokens}
    return StreamPlan(
        content_type=SSE,
        head=[
            _sse("message_start", start),
            _sse("content_block_start", _template("anthropic", name, "content_block_start")),
            _sse("ping", _template("anthropic", name, "ping")),
        ],
        content=[_splice(prefix, piece, suffix) for piece in reply.pieces],
        tail=[
            _sse("content_block_stop", _template("anthropic", name, "content_block_stop")),
            _sse("message_delta", message_delta),
            _sse("message_stop", _template("anthropic", name, "message_stop")),
        ],
        malformed=b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n',
    )


def anthropic_stream_error(status: int, message: str) -> bytes:
    return _sse("error", anthropic_error(status, message))


# --- OpenAI -------------------------------------------------------------------------------


def openai_error(status: int, message: str) -> dict[str, Any]:
    payload: dict[str, Any] = load_json("openai", "error_rate_limit.json")
    kinds = {
        401: ("invalid_request_error", "invalid_api_key"),
        429: ("requests", "rate_limit_exceeded"),
    }
    kind, code = kinds.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    payload["error"] = {"message": message, "type": kind, "param": None, "code": code}
    return payload


def openai_completion(reply: Reply, completion_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = load_json("openai", "chat_completion.json")
    payload.update(id=completion_id, created=int(time.time()), model=reply.model)
    choice = payload["choices"][0]
    choice["message"]["content"] = reply.text
    choice["finish_reason"] = "length" if reply.truncated else "stop"
    payload["usage"] = {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }
    return payload


def openai_stream(reply: Reply, completion_id: str, *, include_usage: bool) -> StreamPlan:
    name = "stream_basic.sse"
    created = int(time.time())

    def chunk(index: int) -> dict[str, Any]:
        payload: dict[str, Any] = _template("openai", name, "chunk", index)
        payload.update(id=completion_id, created=created, model=reply.model)
        return payload

    role = chunk(0)
    text = chunk(1)
    text["choices"][0]["delta"]["content"] = _SLOT
    prefix, suffix = _text_frame_renderer(_sse(None, text).decode())
    finish = chunk(-1)
    finish["choices"][0]["finish_reason"] = "length" if reply.truncated else "stop"
    tail = [_sse(None, finish)]
    if include_usage:
        usage: dict[str, Any] = _template("openai", name, "usage")
        usage.update(id=completion_id, created=created, model=reply.model)
        usage["usage"] = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        tail.append(_sse(None, usage))
    tail.append(_sse(None, "[DONE]"))
    return StreamPlan(
        content_type=SSE,
        head=[_sse(None, role)],
        content=[_splice(prefix, piece, suffix) for piece in reply.pieces],
        tail=tail,
        malformed=b'data: {"id": "' + completion_id.encode() + b'", "object": "chat.comp\n\n',
    )


def openai_stream_error(status: int, message: str) -> bytes:
    return _sse(None, openai_error(status, message))


def openai_models() -> dict[str, Any]:
    payload: dict[str, Any] = load_json("openai", "models.json")
    return payload


# --- Ollama -------------------------------------------------------------------------------


def ollama_error(status: int, message: str) -> dict[str, Any]:
    del status  # Ollama's error bodies carry only the message
    payload: dict[str, Any] = load_json("ollama", "error_not_found.json")
    payload["error"] = message
    return payload


def _ollama_final(reply: Reply, created_at: str) -> dict[str, Any]:
    final: dict[str, Any] = copy.deepcopy(load_ndjson("ollama", "chat_stream.ndjson")[-1])
    final.update(
        model=reply.model,
        created_at=created_at,
        done_reason="length" if reply.truncated else "stop",
        prompt_eval_count=reply.input_tokens,
        eval_count=reply.output_tokens,
    )
    return final


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ollama_chat(reply: Reply) -> dict[str, Any]:
    payload: dict[str, Any] = load_json("ollama", "chat.json")
    payload.update(_ollama_final(reply, _now_iso()))
    payload["message"] = {"role": "assistant", "content": reply.text}
    return payload


def ollama_stream(reply: Reply) -> StreamPlan:
    created_at = _now_iso()
    line: dict[str, Any] = load_ndjson("ollama", "chat_stream.ndjson")[0]
    line.update(model=reply.model, created_at=created_at)
    line["message"]["content"] = _SLOT
    prefix, suffix = _text_frame_renderer(_dumps(line) + "\n")
    return StreamPlan(
        content_type=NDJSON,
        head=[],
        content=[_splice(prefix, piece, suffix) for piece in reply.pieces],
        tail=[(_dumps(_ollama_final(reply, created_at)) + "\n").encode()],
        malformed=b'{"model": "' + reply.model.encode() + b'", "message": {"role": "assis\n',
    )


def ollama_stream_error(status: int, message: str) -> bytes:
    return (_dumps(ollama_error(status, message)) + "\n").encode()


def ollama_tags(names: tuple[str, ...]) -> dict[str, Any]:
    payload: dict[str, Any] = load_json("ollama", "tags.json")
    template = payload["models"][0]
    models = []
    for name in names:
        model = copy.deepcopy(template)
        model.update(name=name, model=name)
        model["details"]["family"] = name.split(":", 1)[0]
        models.append(model)
    payload["models"] = models
    return payload

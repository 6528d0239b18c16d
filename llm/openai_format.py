"""OpenAI's chat-completions wire format, translated to and from Rhetor's request path.

    parse_chat_request(body, headers) -> ChatCall      the request, or an OpenAIError (4xx)
    completion_body(result, call)      -> dict          `chat.completion`
    ChunkWriter(call, ...)                              `chat.completion.chunk` SSE frames
    error_body(exc)                    -> dict          {"error": {message, type, param, code}}

The `model` is a model id a provider serves (`gpt-4o`, or `openai/gpt-4o` to name the
provider) or a task route, `rhetor/<route>` (`rhetor/code`, `rhetor/ergon_planning`),
served by the task router with its fallbacks. Headers attach the request to Rhetor's
world: `X-Rhetor-Component`, `X-Rhetor-Context` (a stored context: the conversation is
appended to it, like /chat) and `X-Rhetor-Task` (the task type). Without a context the
request is stateless, as it is at OpenAI: nothing is read from or stored in a context;
it is metered all the same.

What Rhetor cannot honour is refused with a 400 naming the parameter (tools, n > 1,
images, stop sequences, ...), never silently dropped. A parameter sent with its neutral
value (`n: 1`, `tools: []`, `top_p: 1`, `"refusal": null` in a replayed message) is
accepted, because SDKs and frameworks send those.
"""

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm.gateway.request import LLMRequest, LLMResult, RouteOptions
from llm.providers.base import ChatMessage, Role
from llm.routes import RouteTable
from rhetor_site.errors import InvalidInput, RhetorError
from rhetor_site.parsing import refuse_nul

ROUTE_PREFIX = "rhetor/"
CONTEXT_HEADER = "X-Rhetor-Context"
COMPONENT_HEADER = "X-Rhetor-Component"
TASK_HEADER = "X-Rhetor-Task"
MAX_HEADER_VALUE = {CONTEXT_HEADER: 512, COMPONENT_HEADER: 100, TASK_HEADER: 100}

UNRECOGNIZED_ARGUMENT = "Unrecognized request argument supplied: {name}"
UNSUPPORTED_PARAMETER = "Rhetor does not support {what}"
MODEL_NOT_FOUND = (
    "The model {model!r} does not exist: use a model id from GET /v1/models, "
    "'<provider>/<model>', or a task route 'rhetor/<route>'"
)


class OpenAIError(RhetorError):
    """A request the OpenAI endpoint refuses before it reaches the request path."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or "invalid_request_error"
        self.param = param
        self.error_type = error_type


# --- Errors ------------------------------------------------------------------------------

# Rhetor's statuses as OpenAI answers them. 402 becomes OpenAI's own quota error, 429
# `insufficient_quota` (the SDK raises RateLimitError; `x-should-retry: false` keeps it
# from retrying a budget that will not refill within seconds); 422 becomes 400.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def error_answer(exc: RhetorError) -> ErrorAnswer:
    """The OpenAI error shape and status for any of Rhetor's errors."""
    if isinstance(exc, OpenAIError):
        body = _error(exc.message, exc.error_type, exc.param, exc.code)
        return ErrorAnswer(exc.status, body, {})
    details = exc.details
    param = details.get("field") if isinstance(details.get("field"), str) else None
    if exc.code == "budget_exceeded":
        body = _error(exc.message, "insufficient_quota", None, "insufficient_quota")
        body["error"]["rhetor"] = {"code": exc.code, **details}
        return ErrorAnswer(429, body, {"x-should-retry": "false"})
    status = 400 if exc.status == 422 else exc.status
    error_type = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = _error(exc.message, error_type, param, exc.code)
    if exc.code in ("unknown_model", "unknown_provider"):
        body = _error(exc.message, "invalid_request_error", "model", "model_not_found")
        status = 404
    extra = {k: v for k, v in details.items() if k != "field"}
    if extra:
        body["error"]["rhetor"] = extra
    return ErrorAnswer(status, body, {})


def _error(message: str, error_type: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def internal_error_body() -> dict[str, Any]:
    return _error("Internal server error", "server_error", None, "internal_error")


# --- Requests ------------------------------------------------------------------------------


def _unsupported(name: str, what: str | None = None) -> OpenAIError:
    return OpenAIError(
        UNSUPPORTED_PARAMETER.format(what=what or f"the parameter '{name}'"),
        param=name,
        code="unsupported_parameter",
    )


def _invalid(name: str, message: str) -> OpenAIError:
    return OpenAIError(message, param=name, code="invalid_value")


def _neutral(value: Any) -> bool:
    return value is None or value == [] or value == {} or value is False


# Parameters accepted only with their neutral value: what it is, and the neutral test.
_NEUTRAL_ONLY: dict[str, tuple[str, Any]] = {
    "tools": ("tools (function calling)", _neutral),
    "functions": ("functions (function calling)", _neutral),
    "function_call": ("function_call", lambda v: v is None or v == "none"),
    "tool_choice": ("tool_choice", lambda v: v is None or v == "none"),
    "n": ("more than one choice (n > 1)", lambda v: v is None or (v == 1 and v is not True)),
    "logprobs": ("logprobs", _neutral),
    "top_logprobs": ("top_logprobs", lambda v: v is None or v == 0),
    "logit_bias": ("logit_bias", _neutral),
    "stop": ("stop sequences", _neutral),
    "top_p": ("top_p other than 1", lambda v: v is None or v == 1),
    "frequency_penalty": ("frequency_penalty", lambda v: v is None or v == 0),
    "presence_penalty": ("presence_penalty", lambda v: v is None or v == 0),
    "seed": ("seed", lambda v: v is None),
    "response_format": (
        "response_format other than text",
        lambda v: v is None or v == {"type": "text"},
    ),
    "modalities": ("modalities other than text", lambda v: v is None or v == ["text"]),
    "audio": ("audio output", _neutral),
    "prediction": ("predicted outputs", _neutral),
    "web_search_options": ("web search", _neutral),
    "reasoning_effort": ("reasoning_effort", lambda v: v is None),
    "verbosity": ("verbosity", lambda v: v is None),
}
# Accepted and ignored: they describe the caller, not the generation.
_IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "safety_identifier"}
_KNOWN = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    *_NEUTRAL_ONLY,
    *_IGNORED,
}
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_MESSAGE_KEYS = {"role", "content", "name"}
# Keys an SDK puts on a replayed assistant message; accepted while they are empty.
_MESSAGE_NEUTRAL_KEYS = {"refusal", "tool_calls", "function_call", "audio", "annotations"}


@dataclass(frozen=True)
class ChatCall:
    """A parsed /v1/chat/completions request."""

    model: str  # as the client named it
    request: LLMRequest
    stream: bool
    include_usage: bool
    completion_id: str
    created: int


def _text_content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", f"{where}.content must be a string or a list of parts")
    texts = []
    for i, part in enumerate(content):
        param = f"{where}.content[{i}]"
        if not isinstance(part, dict):
            raise _invalid(param, f"{param} must be an object")
        kind = part.get("type")
        if kind != "text":
            raise _unsupported(param, f"content parts of type {kind!r} (only 'text')")
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(f"{param}.text", f"{param}.text must be a string")
        texts.append(text)
    return "".join(texts)


def _messages(raw: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "messages must be a non-empty array")
    messages = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise _invalid(where, f"{where} must be an object")
        role = item.get("role")
        if role in ("tool", "function"):
            raise _unsupported(f"{where}.role", f"messages with role {role!r}")
        if role not in _ROLES:
            raise _invalid(
                f"{where}.role", f"{where}.role must be one of system, developer, user, assistant"
            )
        for key, value in item.items():
            if key in _MESSAGE_KEYS:
                continue
            if key in _MESSAGE_NEUTRAL_KEYS and _neutral(value):
                continue
            if key in _MESSAGE_NEUTRAL_KEYS:
                raise _unsupported(f"{where}.{key}")
            raise OpenAIError(
                UNRECOGNIZED_ARGUMENT.format(name=f"{where}.{key}"),
                param=f"{where}.{key}",
                code="unknown_parameter",
            )
        if "content" not in item:
            raise _invalid(f"{where}.content", f"{where}.content is required")
        messages.append(ChatMessage(_ROLES[role], _text_content(item["content"], where)))
    if not any(m.role == "user" and m.content.strip() for m in messages):
        raise _invalid("messages", "messages must contain at least one non-empty user message")
    return tuple(messages)


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(name, f"{name} must be a number between {low:g} and {high:g}")
    return float(value)


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    found: dict[str, int] = {}
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise _invalid(name, f"{name} must be an integer between 1 and 1000000")
        found[name] = value
    if len(set(found.values())) > 1:
        raise _invalid("max_tokens", "max_tokens and max_completion_tokens disagree")
    return next(iter(found.values()), None)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_HEADER_VALUE[name]:
        raise _invalid(name, f"{name} is longer than {MAX_HEADER_VALUE[name]} characters")
    return value


@dataclass(frozen=True)
class _Resolved:
    options: RouteOptions
    component: str | None
    task_type: str | None


def resolve_model(
    model: str, *, component: str | None, task_type: str | None, routes: RouteTable
) -> _Resolved:
    """`rhetor/<route>` -> the route's component and task type; any other name is a model
    id for the gateway to resolve (llm.gateway.plan.resolve_target)."""
    if model.startswith(ROUTE_PREFIX):
        return _resolve_route(model, model[len(ROUTE_PREFIX) :], component, task_type, routes)
    # A model id, bare or `provider/model`: resolved by the gateway, as on every door.
    return _Resolved(RouteOptions(model=model), component, task_type)


def _model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        MODEL_NOT_FOUND.format(model=model), status=404, param="model", code="model_not_found"
    )


def _resolve_route(
    model: str, name: str, component: str | None, task_type: str | None, table: RouteTable
) -> _Resolved:

    def conflict(header: str, value: str) -> OpenAIError:
        return _invalid(header, f"{header} {value!r} contradicts the route of model {model!r}")

    head, sep, tail = name.rpartition("_")
    if name in table.routes and sep and head and tail in table.task_types:
        # `<component>_<task>`: both come from the route.
        if component is not None and component != head:
            raise conflict(COMPONENT_HEADER, component)
        if task_type is not None and task_type != tail:
            raise conflict(TASK_HEADER, task_type)
        return _Resolved(RouteOptions(), head, tail)
    if name in table.task_types and name in table.routes:
        if task_type is not None and task_type != name:
            raise conflict(TASK_HEADER, task_type)
        return _Resolved(RouteOptions(), component, name)
    if name in table.routes:
        # A component's route (`rhetor/ergon`): its default task unless a header says.
        if component is not None and component != name:
            raise conflict(COMPONENT_HEADER, component)
        return _Resolved(RouteOptions(), name, task_type)
    raise _model_not_found(model)


def parse_chat_request(body: bytes, headers: Mapping[str, str], *, routes: RouteTable) -> ChatCall:
    """The request body and X-Rhetor-* headers as a ChatCall; OpenAIError when invalid.
    `routes` is the task route table that `rhetor/<route>` names are resolved against."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise OpenAIError(
            "We could not parse the JSON body of your request: it must be a JSON object",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise OpenAIError("The request body must be a JSON object", code="invalid_json")
    try:
        refuse_nul(data, body)
    except InvalidInput as exc:
        raise OpenAIError(exc.message, code="invalid_value") from None
    for name, value in data.items():
        if name not in _KNOWN:
            raise OpenAIError(
                UNRECOGNIZED_ARGUMENT.format(name=name), param=name, code="unknown_parameter"
            )
        if name in _NEUTRAL_ONLY:
            what, neutral = _NEUTRAL_ONLY[name]
            if not neutral(value):
                raise _unsupported(name, what)
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model", "model is required: a model id or 'rhetor/<route>'")
    messages = _messages(data.get("messages"))
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "stream must be true or false")
    stream_options = data.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not stream:
            raise _invalid("stream_options", "stream_options is only allowed with stream: true")
        if not isinstance(stream_options, dict):
            raise _invalid("stream_options", "stream_options must be an object")
        for key in stream_options:
            if key not in ("include_usage", "include_obfuscation"):
                raise OpenAIError(
                    UNRECOGNIZED_ARGUMENT.format(name=f"stream_options.{key}"),
                    param=f"stream_options.{key}",
                    code="unknown_parameter",
                )
        include_usage = stream_options.get("include_usage") is True
    temperature = _number(data, "temperature", 0, 2)
    max_tokens = _max_tokens(data)

    context_id = _header(headers, CONTEXT_HEADER)
    resolved = resolve_model(
        model.strip(),
        component=_header(headers, COMPONENT_HEADER),
        task_type=_header(headers, TASK_HEADER),
        routes=routes,
    )
    options = RouteOptions(
        provider=resolved.options.provider,
        model=resolved.options.model,
        temperature=temperature,
        max_tokens=max_tokens,
    )
    request = LLMRequest(
        messages=messages,
        context_id=context_id or "",
        component=resolved.component,
        task_type=resolved.task_type or "default",
        options=options,
        whole_conversation=True,
        store=context_id is not None,
    )
    return ChatCall(
        model=model.strip(),
        request=request,
        stream=bool(stream),
        include_usage=include_usage,
        completion_id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
    )


# --- Answers -------------------------------------------------------------------------------


def finish_reason(reason: str | None) -> str:
    """A provider's stop reason in OpenAI's vocabulary."""
    if reason in ("length", "max_tokens", "model_length"):
        return "length"
    if reason == "content_filter":
        return "content_filter"
    return "stop"


def usage_body(result: LLMResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def completion_body(result: LLMResult, call: ChatCall) -> dict[str, Any]:
    """`chat.completion`; `model` is the model that answered (a fallback names itself)."""
    return {
        "id": call.completion_id,
        "object": "chat.completion",
        "created": call.created,
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result.finish_reason),
            }
        ],
        "usage": usage_body(result),
        "system_fingerprint": None,
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class ChunkWriter:
    """The SSE frames of one streamed completion. Every text chunk shares a precomputed
    prefix and suffix, so a chunk costs one string encode (no dict, no full dumps)."""

    DONE = b"data: [DONE]\n\n"

    def __init__(self, call: ChatCall, *, model: str) -> None:
        self.call = call
        self.head = {
            "id": call.completion_id,
            "object": "chat.completion.chunk",
            "created": call.created,
            "model": model,
            "system_fingerprint": None,
        }
        usage = b',"usage":null' if call.include_usage else b""
        self._prefix = (
            b"data: " + _dumps(self.head)[:-1] + b',"choices":[{"index":0,"delta":{"content":'
        )
        self._suffix = b'},"logprobs":null,"finish_reason":null}]' + usage + b"}\n\n"

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {**self.head, "choices": choices}
        if self.call.include_usage:
            data["usage"] = None
        data.update(extra)
        return b"data: " + _dumps(data) + b"\n\n"

    def role(self) -> bytes:
        """The first chunk: the assistant role, with empty content (as OpenAI sends)."""
        delta = {"role": "assistant", "content": "", "refusal": None}
        return self._frame([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def text(self, chunk: str) -> bytes:
        return self._prefix + _dumps(chunk) + self._suffix

    def finish(self, result: LLMResult) -> bytes:
        choice = {
            "index": 0,
            "delta": {},
            "logprobs": None,
            "finish_reason": finish_reason(result.finish_reason),
        }
        return self._frame([choice])

    def usage(self, result: LLMResult) -> bytes:
        """With stream_options.include_usage: the last chunk, empty choices and the usage."""
        return self._frame([], usage=usage_body(result))

    @staticmethod
    def error(message: str, code: str) -> bytes:
        """A failure after the stream began: the error event the SDK raises APIError on."""
        return b"data: " + _dumps(_error(message, "server_error", None, code)) + b"\n\n"


# --- Models --------------------------------------------------------------------------------

MODEL_CREATED = 1_700_000_000  # a fixed epoch: Rhetor's catalogue has no creation dates


def model_entry(model_id: str, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": owned_by}


def route_names(routes: RouteTable) -> list[str]:
    return sorted(routes.routes)

"""A fake LLM upstream: one small asyncio HTTP/1.1 server speaking the real wire formats of
OpenAI, Anthropic and Ollama. It records every request and fails on demand.

    upstream = FakeUpstream().start()        # 127.0.0.1, ephemeral port, own thread + loop
    upstream.reply("Hello there", input_tokens=7)
    upstream.fail(429, path="anthropic", retry_after="3")
    ...                                      # point a client at upstream.url
    upstream.last_request("anthropic").json["system"]
    upstream.stop()

The fault menu (each for the next `times` matching requests; `path` a provider name or path):

    fail(status, retry_after=)      an HTTP error with the provider's error body (429, 5xx, ...)
    stall(seconds)                  nothing at all for `seconds` (a read timeout)
    stall(seconds, after_headers=True)   200 and headers, then silence
    cut(after_chunks=N)             N text chunks, then the connection closes mid-body
    malformed(after_chunks=N)       a broken JSON frame after N chunks (or a broken JSON body)
    truncate() / drop_final()       no closing events at all / no message_stop, [DONE], done
    stream_error(status)            the provider's in-stream error event
    reset_connection()              an RST instead of an answer
    reset_connection(after_chunks=N)     an RST after N chunks of a stream
    flap(503, fail=1, succeed=1)    alternately failing and answering (any fault, not only 503)
    Blackhole()                     a port whose connections never complete (connect timeout)

Routes: `POST /v1/chat/completions`, `GET /v1/models` (OpenAI); `POST /v1/messages`
(Anthropic); `POST /api/chat`, `GET /api/tags` (Ollama). JSON or streaming by the body's
`"stream"`. Streams are chunked (keep-alive) by default, or close-delimited.

Standalone, for benchmarks (no recording beyond the last 1000 requests):

    python -m tests.fakes.upstream --port 8400 [--chunks N] [--delay S] [--reply TEXT]
"""

import argparse
import asyncio
import collections
import dataclasses
import http
import itertools
import json
import logging
import signal
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from tests.fakes import wire

logger = logging.getLogger(__name__)

PROVIDER_PATHS: dict[str, tuple[str, ...]] = {
    "openai": ("/v1/chat/completions", "/v1/models"),
    "anthropic": ("/v1/messages",),
    "ollama": ("/api/chat", "/api/tags"),
}
_ROUTES: dict[tuple[str, str], tuple[wire.Provider, str]] = {
    ("POST", "/v1/chat/completions"): ("openai", "chat"),
    ("GET", "/v1/models"): ("openai", "models"),
    ("POST", "/v1/messages"): ("anthropic", "chat"),
    ("POST", "/api/chat"): ("ollama", "chat"),
    ("GET", "/api/tags"): ("ollama", "tags"),
}
DEFAULT_OLLAMA_MODELS = ("llama3:latest", "mistral:latest")
DEFAULT_ERROR_MESSAGES = {
    400: "Invalid request",
    401: "Invalid API key",
    403: "Permission denied",
    404: "Not found",
    408: "Request timeout",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    529: "Overloaded",
}

FaultKind = Literal[
    "status",  # answer `status` with the provider's error body (+ Retry-After)
    "stall",  # wait `seconds` before sending anything
    "stall_after_headers",  # send the headers, then wait `seconds`
    "cut",  # stream `after_chunks` text chunks, then close the connection mid-body
    "malformed",  # a broken JSON frame after `after_chunks` chunks (or a broken JSON body)
    "truncate",  # the stream ends cleanly right after the text, without closing events
    "drop_final",  # the stream lacks only its last event: message_stop / [DONE] / done line
    "stream_error",  # an in-stream error event (`status`, `message`) after `after_chunks`
    "reset",  # reset the connection (RST) instead of answering
    "reset_mid_stream",  # stream `after_chunks` chunks, then reset the connection (RST)
]
# truncate, drop_final and stream_error concern streams: JSON answers ignore them.


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    message: str | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    after_chunks: int = 1


@dataclass
class _ArmedFault:
    fault: Fault
    path: str | None
    remaining: int | None  # None: until cleared
    # Flapping: of every `fail + succeed` matching requests the first `fail` get the fault.
    cycle: tuple[int, int] | None = None
    seen: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, and the reply it planned for it (chat routes)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any
    reply: wire.Reply | None = None
    fault: Fault | None = None


@dataclass(frozen=True)
class ReplyConfig:
    text: str | None = None
    chunks: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    delay: float = 0.0
    framing: Literal["chunked", "close"] = "chunked"
    stream_usage: bool = True
    ollama_models: tuple[str, ...] = DEFAULT_OLLAMA_MODELS


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool = True


def _matches(target: str | None, path: str) -> bool:
    if target is None:
        return True
    return path == target or path in PROVIDER_PATHS.get(target, ())


class FakeUpstream:
    """The fake server. Thread-safe to configure from tests while it serves."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunks: int | None = None,
        delay: float = 0.0,
        reply: str | None = None,
        max_recorded: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._defaults = ReplyConfig(text=reply, chunks=chunks, delay=delay)
        self._config = self._defaults
        self._lock = threading.Lock()
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_recorded)
        self._faults: list[_ArmedFault] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- Lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123 (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        """Serve from a background thread with its own event loop."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="fake-upstream", daemon=True
        )
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Stop listening, drop every connection and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._call(self._close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = None

    def down(self) -> None:
        """Stop listening and drop open connections: clients get "connection refused"."""
        self._call(self._close())

    def up(self) -> None:
        """Listen again, on the same port."""
        if not self.listening:
            self._call(self._listen())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        """Serve on the running loop until SIGINT / SIGTERM or cancellation (the
        standalone mode)."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await self._listen()
        logger.info("fake upstream listening on %s", self.url)
        try:
            await stopping.wait()
        finally:
            await self._close()
            logger.info("fake upstream stopped")

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _call(self, coro: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("the fake upstream is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # --- Configuration --------------------------------------------------------------------

    def reply(
        self,
        text: str | None = None,
        *,
        chunks: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        delay: float | None = None,
        framing: Literal["chunked", "close"] = "chunked",
        stream_usage: bool = True,
    ) -> None:
        """How to answer chat requests from now on (replaces the previous setting).

        text: the reply; default "Echo: <last user message>". chunks: the number of text
        deltas a stream carries; default one per word. input_tokens / output_tokens: the
        usage to report; default the words of the prompt / of the reply. delay: seconds
        between text chunks. framing: "chunked" (keep-alive) or "close" (close-delimited
        body). stream_usage=False: an OpenAI-compatible server that never sends the usage
        chunk, even when asked with stream_options.include_usage.
        """
        with self._lock:
            self._config = ReplyConfig(
                text=text if text is not None else self._defaults.text,
                chunks=chunks if chunks is not None else self._defaults.chunks,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                delay=self._defaults.delay if delay is None else delay,
                framing=framing,
                stream_usage=stream_usage,
                ollama_models=self._config.ollama_models,
            )

    def set_ollama_models(self, names: Iterable[str]) -> None:
        """The models `GET /api/tags` lists (default llama3:latest, mistral:latest)."""
        with self._lock:
            self._config = dataclasses.replace(self._config, ollama_models=tuple(names))

    def reset(self) -> None:
        """Forget requests, faults and reply settings, and listen again if down."""
        with self._lock:
            self._config = self._defaults
            self._requests.clear()
            self._faults.clear()
        if self._loop is not None:
            self.up()

    # --- Faults ---------------------------------------------------------------------------

    def inject(self, fault: Fault, *, path: str | None = None, times: int | None = 1) -> None:
        """Apply `fault` to the next `times` matching requests (None: until cleared).

        path: None for every request, an exact path ("/v1/messages") or a provider name
        ("anthropic", "openai", "ollama") for all of that provider's paths.
        """
        if path is not None and not path.startswith("/") and path not in PROVIDER_PATHS:
            raise ValueError(f"unknown provider or path: {path!r}")
        with self._lock:
            self._faults.append(_ArmedFault(fault, path, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def fail(
        self,
        status: int,
        *,
        message: str | None = None,
        retry_after: str | float | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer with an HTTP error and the provider's own error body."""
        after = None if retry_after is None else str(retry_after)
        fault = Fault("status", status=status, message=message, retry_after=after)
        self.inject(fault, path=path, times=times)

    def stall(
        self,
        seconds: float,
        *,
        after_headers: bool = False,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        kind: FaultKind = "stall_after_headers" if after_headers else "stall"
        self.inject(Fault(kind, seconds=seconds), path=path, times=times)

    def cut(self, after_chunks: int = 1, *, path: str | None = None, times: int | None = 1) -> None:
        self.inject(Fault("cut", after_chunks=after_chunks), path=path, times=times)

    def malformed(
        self, after_chunks: int = 1, *, path: str | None = None, times: int | None = 1
    ) -> None:
        self.inject(Fault("malformed", after_chunks=after_chunks), path=path, times=times)

    def truncate(self, *, path: str | None = None, times: int | None = 1) -> None:
        self.inject(Fault("truncate"), path=path, times=times)

    def drop_final(self, *, path: str | None = None, times: int | None = 1) -> None:
        self.inject(Fault("drop_final"), path=path, times=times)

    def stream_error(
        self,
        status: int = 529,
        *,
        message: str | None = None,
        after_chunks: int = 1,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        fault = Fault("stream_error", status=status, message=message, after_chunks=after_chunks)
        self.inject(fault, path=path, times=times)

    def reset_connection(
        self,
        *,
        after_chunks: int | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        """An RST instead of an answer, or (after_chunks) in the middle of a stream."""
        if after_chunks is None:
            self.inject(Fault("reset"), path=path, times=times)
        else:
            fault = Fault("reset_mid_stream", after_chunks=after_chunks)
            self.inject(fault, path=path, times=times)

    def flap(
        self,
        fault: Fault | int = 503,
        *,
        fail: int = 1,
        succeed: int = 1,
        path: str | None = None,
        times: int | None = None,
    ) -> None:
        """A flapping upstream: `fail` requests get `fault` (an HTTP status or any Fault),
        the next `succeed` are answered normally, and so on; `times` counts the failures
        (None: until cleared)."""
        if fail < 1 or succeed < 1:
            raise ValueError("fail and succeed must be at least 1")
        if isinstance(fault, int):
            fault = Fault("status", status=fault)
        with self._lock:
            self._faults.append(_ArmedFault(fault, path, times, cycle=(fail, succeed)))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for armed in self._faults:
                if _matches(armed.path, path):
                    if armed.cycle is not None:
                        fail, succeed = armed.cycle
                        position = armed.seen % (fail + succeed)
                        armed.seen += 1
                        if position >= fail:
                            return None
                    if armed.remaining is not None:
                        armed.remaining -= 1
                        if armed.remaining <= 0:
                            self._faults.remove(armed)
                    return armed.fault
        return None

    # --- Recorded requests ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to an exact path or a provider's paths (None: all)."""
        return [r for r in self.requests if _matches(path, r.path)]

    def last_request(self, path: str | None = None) -> RecordedRequest:
        matching = self.requests_to(path)
        if not matching:
            raise LookupError(f"the fake upstream received no request to {path or 'any path'}")
        return matching[-1]

    # --- Serving --------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except asyncio.CancelledError:
            writer.transport.abort()
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            # The client went away mid-request, or sent something that is not HTTP/1.1.
            writer.transport.abort()
        finally:
            if task is not None:
                self._connections.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection between requests
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked(reader)
        else:
            body = b""
        path, _, query = target.partition("?")
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and not (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        return _Request(method, path, query, headers, body, keep_alive)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close."""
        request = await self._read_request(reader)
        if request is None:
            return False
        with self._lock:
            config = self._config
        route = _ROUTES.get((request.method, request.path))
        fault = self._take_fault(request.path)
        body: Any = None
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = None
        reply = None
        if route is not None and route[1] == "chat" and isinstance(body, dict):
            reply = wire.build_reply(
                route[0],
                body,
                text=config.text,
                chunks=config.chunks,
                input_tokens=config.input_tokens,
                output_tokens=config.output_tokens,
            )
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    request.query,
                    request.headers,
                    request.body,
                    body,
                    reply,
                    fault,
                )
            )

        if fault is not None and fault.kind == "reset":
            _reset(writer)
            return False
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        if route is None:
            payload = {"error": f"no route for {request.method} {request.path}"}
            return await self._send_json(writer, 404, payload, request.keep_alive)
        provider, kind = route
        if fault is not None and fault.kind == "status":
            return await self._send_error(writer, provider, fault, request.keep_alive)
        if kind == "models":
            return await self._send_json(writer, 200, wire.openai_models(), request.keep_alive)
        if kind == "tags":
            payload = wire.ollama_tags(config.ollama_models)
            return await self._send_json(writer, 200, payload, request.keep_alive, fault)
        if reply is None or not isinstance(body, dict):
            error = _error_body(provider, 400, "the request body is not a JSON object")
            return await self._send_json(writer, 400, error, request.keep_alive)
        if body.get("stream") is True:
            plan = self._stream_plan(provider, reply, body, config)
            return await self._send_stream(
                writer, plan, provider, fault, config, request.keep_alive
            )
        return await self._send_json(
            writer, 200, self._json_answer(provider, reply), request.keep_alive, fault
        )

    def _json_answer(self, provider: wire.Provider, reply: wire.Reply) -> dict[str, Any]:
        if provider == "anthropic":
            return wire.anthropic_message(reply, f"msg_fake{next(self._ids):06d}")
        if provider == "openai":
            return wire.openai_completion(reply, f"chatcmpl-fake{next(self._ids):06d}")
        return wire.ollama_chat(reply)

    def _stream_plan(
        self,
        provider: wire.Provider,
        reply: wire.Reply,
        body: dict[str, Any],
        config: ReplyConfig,
    ) -> wire.StreamPlan:
        if provider == "anthropic":
            return wire.anthropic_stream(reply, f"msg_fake{next(self._ids):06d}")
        if provider == "openai":
            options = body.get("stream_options")
            asked = isinstance(options, dict) and options.get("include_usage") is True
            completion_id = f"chatcmpl-fake{next(self._ids):06d}"
            return wire.openai_stream(
                reply, completion_id, include_usage=asked and config.stream_usage
            )
        return wire.ollama_stream(reply)

    # --- Writing --------------------------------------------------------------------------

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Overloaded" if status == 529 else "Error"
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_error(
        self, writer: asyncio.StreamWriter, provider: wire.Provider, fault: Fault, keep_alive: bool
    ) -> bool:
        message = fault.message or DEFAULT_ERROR_MESSAGES.get(fault.status, "Error")
        extra = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
        payload = _error_body(provider, fault.status, message)
        return await self._send_json(writer, fault.status, payload, keep_alive, None, extra)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        keep_alive: bool,
        fault: Fault | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> bool:
        data = json.dumps(payload, ensure_ascii=False).encode()
        if fault is not None and fault.kind == "malformed":
            data = data[: max(1, len(data) // 2)]
        headers = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "connection": "keep-alive" if keep_alive else "close",
            "request-id": f"req_fake{next(self._ids):06d}",
            **(extra_headers or {}),
        }
        if fault is not None and fault.kind == "cut":
            writer.write(self._head(status, headers) + data[: len(data) // 2])
            await writer.drain()
            writer.close()
            return False
        if fault is not None and fault.kind == "stall_after_headers":
            writer.write(self._head(status, headers))
            await writer.drain()
            await asyncio.sleep(fault.seconds)
            writer.write(data)
        else:
            writer.write(self._head(status, headers) + data)
        await writer.drain()
        return keep_alive

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        plan: wire.StreamPlan,
        provider: wire.Provider,
        fault: Fault | None,
        config: ReplyConfig,
        keep_alive: bool,
    ) -> bool:
        chunked = config.framing == "chunked"
        keep_alive = keep_alive and chunked
        headers = {
            "content-type": plan.content_type,
            "cache-control": "no-cache",
            "connection": "keep-alive" if keep_alive else "close",
            "request-id": f"req_fake{next(self._ids):06d}",
        }
        if chunked:
            headers["transfer-encoding"] = "chunked"
        writer.write(self._head(200, headers))
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "stall_after_headers":
            await writer.drain()
            await asyncio.sleep(fault.seconds)

        def send(frame: bytes) -> None:
            if chunked:
                writer.write(b"%x\r\n%b\r\n" % (len(frame), frame))
            else:
                writer.write(frame)

        for frame in plan.head:
            send(frame)
        content = list(plan.content)
        stop_at = None
        if fault is not None and kind in ("cut", "malformed", "stream_error", "reset_mid_stream"):
            stop_at = min(fault.after_chunks, len(content))
        for index, frame in enumerate(content):
            if index == stop_at:
                break
            if config.delay and index:
                await writer.drain()
                await asyncio.sleep(config.delay)
            send(frame)
        if fault is not None and kind == "cut":
            await writer.drain()
            writer.close()  # mid-body: no terminating chunk, or a short close-delimited body
            return False
        if fault is not None and kind == "reset_mid_stream":
            await writer.drain()
            _reset(writer)
            return False
        if fault is not None and kind == "malformed":
            send(plan.malformed)
        elif fault is not None and kind == "stream_error":
            message = fault.message or DEFAULT_ERROR_MESSAGES.get(fault.status, "Error")
            send(_stream_error_frame(provider, fault.status, message))
        elif kind == "drop_final":
            for frame in plan.tail[:-1]:
                send(frame)
        elif kind != "truncate":
            for frame in plan.tail:
                send(frame)
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        if not keep_alive:
            writer.close()
        return keep_alive


def _error_body(provider: wire.Provider, status: int, message: str) -> dict[str, Any]:
    if provider == "anthropic":
        return wire.anthropic_error(status, message)
    if provider == "openai":
        return wire.openai_error(status, message)
    return wire.ollama_error(status, message)


def _stream_error_frame(provider: wire.Provider, status: int, message: str) -> bytes:
    if provider == "anthropic":
        return wire.anthropic_stream_error(status, message)
    if provider == "openai":
        return wire.openai_stream_error(status, message)
    return wire.ollama_stream_error(status, message)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Blackhole:
    """A loopback port whose connections never complete: it listens with a zero backlog
    and never accepts, and its accept queue is filled at once, so the kernel drops every
    new SYN and a client's connect attempt times out (what an unreachable host or a
    firewall that drops packets looks like).

        with Blackhole() as hole:
            settings.ANTHROPIC_BASE_URL = hole.url   # connecting there times out
    """

    FILLERS = 4

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(self.FILLERS):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex((host, self.port))  # EINPROGRESS: it stays pending, the point
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        for sock in [*self._fillers, self._listener]:
            sock.close()
        self._fillers.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI / Anthropic / Ollama upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--chunks", type=int, default=None, help="text deltas per stream")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--reply", default=None, help="reply text (default: echo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    upstream = FakeUpstream(
        args.host,
        args.port,
        chunks=args.chunks,
        delay=args.delay,
        reply=args.reply,
        max_recorded=1000,
    )
    asyncio.run(upstream.serve_forever())


if __name__ == "__main__":
    main()

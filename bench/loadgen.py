"""A small closed-loop HTTP/1.1 load generator for the gateway benchmark (loopback only).

`concurrency` connections (kept alive) each send the same request again as soon as the
previous answer is complete, for `duration` seconds after `warmup` seconds, or until
`max_requests` answers were measured. It speaks just enough HTTP/1.1 (Content-Length and
chunked bodies) to time each request from the first byte sent to:

- the first byte of the body (TTFB; for a server-sent event stream, its first event), and
- the end of the body (latency).

An answer counts as an error when the status is not 200, the connection fails, or the body
lacks `expect` (e.g. `[DONE]` at the end of an OpenAI stream). It is written on asyncio
protocols, not an HTTP client library: at a few thousand requests per second on a shared
core an HTTP library's own cost would be measured instead of the servers'.

    .venv/bin/python bench/loadgen.py http://127.0.0.1:8400/v1/chat/completions \
        --body '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}' -c 8 -d 5
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    ttfbs: list[float] = field(default_factory=list, repr=False)
    first_error: str = ""
    # Every 200 answer, warm-up included (to check the gateway metered each one).
    answered: int = 0
    # Set by bench/gateway.py: the gateway's CPU time per answered request.
    cpu_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @staticmethod
    def _pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] * 1000

    def summary(self) -> dict[str, float | int | str | None]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "rate": round(self.rate, 1),
            "p50_ms": self._pct(self.latencies, 0.5),
            "p99_ms": self._pct(self.latencies, 0.99),
            "ttfb_p50_ms": self._pct(self.ttfbs, 0.5),
            "ttfb_p99_ms": self._pct(self.ttfbs, 0.99),
            "mean_ms": statistics.fmean(self.latencies) * 1000 if self.latencies else None,
            "first_error": self.first_error,
        }


class _Conn(asyncio.Protocol):
    """One keep-alive connection; `request()` sends the request and waits for the answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.first_body_at = 0.0
        self.status = 0
        self.body = b""
        self._reset()

    def _reset(self) -> None:
        self.buffer.clear()
        self.head_done = False
        self.chunked = False
        self.remaining = -1
        self.body_parts: list[bytes] = []
        self.first_body_at = 0.0
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._parse()
        except Exception as exc:  # malformed answer
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def _parse(self) -> None:
        if not self.head_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[: end + 4]
            self.status = int(head[0].split(" ", 2)[1])
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.head_done = True
            if headers.get("transfer-encoding", "").lower() == "chunked":
                self.chunked = True
            else:
                self.remaining = int(headers.get("content-length", "0"))
        if self.chunked:
            while True:
                line_end = self.buffer.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(self.buffer[:line_end]).split(b";")[0], 16)
                if len(self.buffer) < line_end + 2 + size + 2:
                    return
                chunk = bytes(self.buffer[line_end + 2 : line_end + 2 + size])
                del self.buffer[: line_end + 2 + size + 2]
                if size == 0:
                    self._done()
                    return
                if not self.first_body_at:
                    self.first_body_at = time.perf_counter()
                self.body_parts.append(chunk)
        else:
            if self.buffer and not self.first_body_at:
                self.first_body_at = time.perf_counter()
            if len(self.buffer) >= self.remaining:
                self.body_parts.append(bytes(self.buffer[: self.remaining]))
                del self.buffer[: self.remaining]
                self._done()

    def _done(self) -> None:
        self.body = b"".join(self.body_parts)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def request(self, payload: bytes) -> tuple[int, bytes, float]:
        assert self.transport is not None
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        await self.waiter
        return self.status, self.body, self.first_body_at


def build_request(url: str, *, method: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def run_load(
    url: str,
    *,
    body: bytes | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    concurrency: int = 1,
    duration: float = 5.0,
    warmup: float = 1.0,
    max_requests: int = 1_000_000,
    expect: bytes | None = None,
    body_for: Callable[[int, int], bytes] | None = None,
) -> LoadResult:
    """Closed loop: `concurrency` workers, each one request at a time. `body_for(i)` may
    vary the body per request (e.g. a context per conversation)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator only targets loopback")
    fixed = build_request(url, method=method, body=body, headers=headers or {})
    loop = asyncio.get_running_loop()
    result = LoadResult(concurrency=concurrency)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    counter = 0

    async def connect() -> _Conn:
        _, conn = await loop.create_connection(_Conn, host, port)
        return conn

    async def worker(slot: int) -> None:
        nonlocal counter
        conn: _Conn | None = None
        while True:
            now = time.perf_counter()
            if now >= stop_at or result.requests >= max_requests:
                break
            index = counter
            counter += 1
            payload = fixed
            if body_for is not None:
                payload = build_request(
                    url, method=method, body=body_for(slot, index), headers=headers or {}
                )
            sent = time.perf_counter()
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                    sent = time.perf_counter()
                status, data, first = await asyncio.wait_for(conn.request(payload), 60)
                error = "" if status == 200 else f"HTTP {status}: {data[:200]!r}"
                if not error and expect is not None and expect not in data:
                    error = f"answer lacks {expect!r}: {data[-200:]!r}"
            except (TimeoutError, OSError, ValueError, ConnectionError) as exc:
                status, first, error = 0, 0.0, f"{type(exc).__name__}: {exc}"
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
            done = time.perf_counter()
            if not error:
                result.answered += 1
            if sent < measure_from or done > stop_at:
                continue
            if error:
                result.errors += 1
                result.first_error = result.first_error or error
                continue
            result.requests += 1
            result.latencies.append(done - sent)
            result.ttfbs.append((first or done) - sent)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.elapsed = min(time.perf_counter(), stop_at) - measure_from
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--body", default=None, help="JSON body (POST); none: GET")
    parser.add_argument("-H", "--header", action="append", default=[], help="Name: value")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-w", "--warmup", type=float, default=1.0)
    parser.add_argument("-n", "--max-requests", type=int, default=1_000_000)
    parser.add_argument("--expect", default=None, help="bytes every answer must contain")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    result = asyncio.run(
        run_load(
            args.url,
            body=args.body.encode() if args.body is not None else None,
            method="POST" if args.body is not None else "GET",
            headers={k.strip(): v.strip() for k, v in headers.items()},
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            max_requests=args.max_requests,
            expect=args.expect.encode() if args.expect else None,
        )
    )
    sys.stdout.write(json.dumps({**result.summary(), **{"elapsed": result.elapsed}}) + "\n")


if __name__ == "__main__":
    main()

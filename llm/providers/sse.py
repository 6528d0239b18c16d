"""Server-sent events framing for the provider adapters: bytes as they arrive off the
wire in, whole events out.

    decoder = SSEDecoder()
    async for chunk in response.aiter_bytes():
        for event in decoder.feed(chunk):
            ...  # event.data, event.event
    for event in decoder.finish():
        ...

It follows the WHATWG event-stream rules that matter to LLM APIs: lines end in LF, CRLF
or CR (a CRLF split across two reads is one line end); `data:` lines accumulate, joined
with "\\n"; `event:` names the event; a blank line dispatches it; `:` comments
(keep-alives), `id:`, `retry:` and unknown fields are ignored; one space after the colon
is dropped. A frame with no `data:` line dispatches nothing. Unlike the spec, a last frame
that the stream ends without a blank line after (or a last line without its line end) is
still dispatched by `finish()`: the adapter decides whether it is complete, and a frame
cut mid-way fails there as malformed JSON instead of vanishing.

Reads usually carry whole frames, so the work per read is one split and, per line, a
prefix test and a decode; nothing is copied byte by byte.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None


class SSEDecoder:
    """Incremental: feed it reads in order, then call `finish()` once at end of stream.
    Invalid UTF-8 raises UnicodeDecodeError (a ValueError)."""

    __slots__ = ("_data", "_event", "_partial", "_pending_cr")

    def __init__(self) -> None:
        self._partial = b""  # the start of a line whose end has not arrived yet
        self._pending_cr = False  # the last read ended in CR: an LF next belongs to it
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if 0x0D in chunk:
            if chunk[-1] == 0x0D:
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        return self._lines(lines)

    def finish(self) -> list[SSEEvent]:
        """The events the end of the stream completes (a last frame without its blank
        line). The decoder is empty afterwards."""
        lines = [self._partial] if self._partial else []
        self._partial = b""
        self._pending_cr = False
        events = self._lines(lines)
        if self._data:
            events.append(self._dispatch())
        self._event = None
        return events

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._event = None
            elif line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data.append(value.decode())
            elif line[0] != 0x3A:  # not a ":" comment
                name, _, value = line.partition(b":")
                if name == b"event":
                    self._event = (value[1:] if value[:1] == b" " else value).decode() or None
                elif name == b"data":  # a bare "data" line: an empty data line
                    self._data.append("")
        return events

    def _dispatch(self) -> SSEEvent:
        data = self._data
        event = SSEEvent(data[0] if len(data) == 1 else "\n".join(data), self._event)
        self._data = []
        self._event = None
        return event

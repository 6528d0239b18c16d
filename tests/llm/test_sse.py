"""The SSE frame reader (llm/providers/sse.py): whole events out of reads cut anywhere."""

import pytest

from llm.providers.sse import SSEDecoder, SSEEvent

OPENAI = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)
OPENAI_EVENTS = [
    SSEEvent('{"choices":[{"delta":{"content":"Hel"}}]}'),
    SSEEvent('{"choices":[{"delta":{"content":"lo"}}]}'),
    SSEEvent("[DONE]"),
]


def decode(*reads: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for read in reads for event in decoder.feed(read)]
    return events + decoder.finish()


def every_split(stream: bytes) -> list[tuple[bytes, ...]]:
    """The stream as one read, cut in two at every offset, and one byte per read."""
    splits: list[tuple[bytes, ...]] = [(stream,)]
    splits += [(stream[:i], stream[i:]) for i in range(1, len(stream))]
    splits.append(tuple(stream[i : i + 1] for i in range(len(stream))))
    return splits


def test_whole_frames_in_one_read() -> None:
    assert decode(OPENAI) == OPENAI_EVENTS


def test_frames_split_across_reads_anywhere() -> None:
    for reads in every_split(OPENAI):
        assert decode(*reads) == OPENAI_EVENTS, reads


def test_events_come_out_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b'data: {"a":1}\n') == []
    assert decoder.feed(b"\ndata: [DO") == [SSEEvent('{"a":1}')]
    assert decoder.feed(b"NE]\n\n") == [SSEEvent("[DONE]")]
    assert decoder.finish() == []


@pytest.mark.parametrize(
    "newline", [b"\r\n", b"\r", b"\n"], ids=["_case_crlf", "_case_cr", "_case_lf"]
)
def test_every_line_ending_at_every_split(newline: bytes) -> None:
    stream = OPENAI.replace(b"\n", newline)

    for reads in every_split(stream):
        assert decode(*reads) == OPENAI_EVENTS, reads


def test_crlf_split_between_reads_is_one_line_end() -> None:
    # Were the CR and the LF two line ends, the blank line would dispatch "a" alone.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent("a\nb")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert decode(b"data: first\ndata:second\ndata:  third\ndata\n\n") == [
        SSEEvent("first\nsecond\n third\n")
    ]


def test_comments_keep_alives_and_other_fields_are_ignored() -> None:
    stream = (
        b": keep-alive\n\n"
        b":\n"
        b"id: 7\nretry: 3000\nunknown: x\n"
        b"data: one\n\n"
        b": OPENROUTER PROCESSING\n\n"
        b"data: two\n\n"
    )

    assert decode(stream) == [SSEEvent("one"), SSEEvent("two")]


def test_event_lines_name_the_event_and_do_not_leak_to_the_next() -> None:
    stream = (
        b"event: message_start\n"
        b'data: {"type":"message_start"}\n\n'
        b"event:ping\n\n"  # no data: dispatches nothing, and the name is dropped
        b"data: plain\n\n"
        b"event: error\r\n"
        b'data: {"type":"error"}\r\n\r\n'
    )

    assert decode(stream) == [
        SSEEvent('{"type":"message_start"}', "message_start"),
        SSEEvent("plain"),
        SSEEvent('{"type":"error"}', "error"),
    ]


def test_trailing_frame_without_blank_line_is_dispatched_at_the_end() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b"data: one\n\ndata: [DONE]\n") == [SSEEvent("one")]
    assert decoder.finish() == [SSEEvent("[DONE]")]
    assert decoder.finish() == []


def test_last_line_without_its_line_end_is_dispatched_at_the_end() -> None:
    assert decode(b"event: done\ndata: [DONE]") == [SSEEvent("[DONE]", "done")]


def test_frame_cut_mid_line_comes_out_as_it_arrived() -> None:
    # The adapter's json.loads then fails: a malformed frame, never a silent loss.
    assert decode(b'data: {"id": "chatcmpl-1", "obj') == [SSEEvent('{"id": "chatcmpl-1", "obj')]


def test_utf8_split_inside_a_character() -> None:
    stream = "data: Grüße, 世界\n\n".encode()

    for reads in every_split(stream):
        assert decode(*reads) == [SSEEvent("Grüße, 世界")], reads


def test_invalid_utf8_raises_a_value_error() -> None:
    with pytest.raises(ValueError, match="utf-8"):
        decode(b"data: \xff\xfe\n\n")


def test_empty_reads_and_empty_stream() -> None:
    assert decode() == []
    assert decode(b"", b"\n\n", b"") == []
    assert decode(b"data: a\r", b"", b"\n\n") == [SSEEvent("a")]

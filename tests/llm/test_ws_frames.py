"""WebSocket frames of 1, 4 and 6 MiB against a real `manage.py serve` (daphne): up to
RHETOR_MAX_WS_FRAME_BYTES (4 MiB) a frame is served; beyond it the client gets the
documented `frame_too_large` ERROR frame and the socket stays open (daphne's own limit,
1 MiB by default, used to drop the connection without a close frame)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import websockets

from tests.servers import serve, stop_server

MIB = 1024 * 1024


def status_frame(size: int) -> str:
    """A STATUS frame padded to `size` bytes."""
    frame = {"type": "STATUS", "req_id": str(size), "payload": {"pad": ""}}
    frame["payload"]["pad"] = "x" * (size - len(json.dumps(frame)))
    text = json.dumps(frame)
    assert len(text) == size
    return text


async def exchange(url: str) -> list[dict[str, Any]]:
    answers = []
    async with websockets.connect(f"{url}/ws", max_size=None) as ws:
        for size in (1 * MIB, 4 * MIB, 6 * MIB, 1024):
            await ws.send(status_frame(size))
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
    return answers


def test_frames_up_to_the_limit_are_served_and_larger_ones_refused_on_an_open_socket(
    tmp_path: Path,
) -> None:
    url, server = serve(tmp_path)
    try:
        answers = asyncio.run(exchange(url.replace("http://", "ws://")))
    finally:
        stop_server(server)

    one, four, six, after = answers
    assert (one["type"], one["req_id"]) == ("RESPONSE", str(MIB))
    assert (four["type"], four["req_id"]) == ("RESPONSE", str(4 * MIB))
    assert six["type"] == "ERROR"
    assert six["payload"]["code"] == "frame_too_large"
    assert (after["type"], after["req_id"]) == ("RESPONSE", "1024")  # the socket stayed open

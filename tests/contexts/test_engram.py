"""The Engram mirror against a local fake Engram that is down, slow, then back."""

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, TestCase, override_settings
from django.utils import timezone

from contexts.engram import (
    EngramClient,
    engram_mirror_kick,
    engram_mirror_stop,
    engram_process_one,
)
from contexts.models import EngramOutbox
from contexts.services import context_delete
from tests.contexts.conftest import FakeEngram, add_turns

TIMEOUT = 0.3


class EngramMirrorTests(TestCase):
    def setUp(self) -> None:
        self.engram = FakeEngram(delay=1.0).start()
        self.addCleanup(self.engram.stop)
        settings = override_settings(ENGRAM_URL=self.engram.url, RHETOR_ENGRAM_TIMEOUT=TIMEOUT)
        settings.enable()
        self.addCleanup(settings.disable)

    async def _make_due(self) -> None:
        await EngramOutbox.objects.aupdate(next_attempt_at=timezone.now() - timedelta(seconds=1))

    async def test_down_slow_then_back(self) -> None:
        await sync_to_async(add_turns)("ergon:e", [("user", "remember me")])
        client = EngramClient()
        try:
            # Down: an error status backs the row off.
            self.engram.mode = "down"
            assert await engram_process_one(client=client) is True
            row = await EngramOutbox.objects.aget()
            assert (row.context_key, row.attempts) == ("ergon:e", 1)
            assert row.next_attempt_at > timezone.now()
            assert row.last_error.startswith("HTTP 503")
            assert await engram_process_one(client=client) is False  # not due yet

            # Slow: past the timeout, the attempt fails without waiting for Engram.
            self.engram.mode = "slow"
            await self._make_due()
            started = time.monotonic()
            assert await engram_process_one(client=client) is True
            assert time.monotonic() - started < self.engram.delay
            row = await EngramOutbox.objects.aget()
            assert row.attempts == 2
            assert row.last_error.startswith("ReadTimeout")
            assert self.engram.stored == {}

            # Back: the mirror catches up and the queue empties.
            self.engram.mode = "up"
            await self._make_due()
            assert await engram_process_one(client=client) is True
            assert await EngramOutbox.objects.aexists() is False
            stored = self.engram.stored["ergon:e"]
            assert stored["context_id"] == "ergon:e"
            assert [m["content"] for m in stored["messages"]] == ["remember me"]
        finally:
            await client.aclose()

    async def test_unreachable_engram_is_retried(self) -> None:
        await sync_to_async(add_turns)("ergon:e", [("user", "x")])
        self.engram.stop()
        client = EngramClient()
        try:
            assert await engram_process_one(client=client) is True
        finally:
            await client.aclose()

        row = await EngramOutbox.objects.aget()
        assert row.attempts == 1
        assert row.last_error.startswith("ConnectError")

    async def test_a_deleted_context_is_deleted_from_engram(self) -> None:
        await sync_to_async(add_turns)("a/b c", [("user", "x")])
        client = EngramClient()
        try:
            await engram_process_one(client=client)
            await sync_to_async(context_delete)(context_id="a/b c")
            await engram_process_one(client=client)
        finally:
            await client.aclose()

        assert self.engram.deleted == ["a/b c"]
        assert self.engram.stored == {}
        assert await EngramOutbox.objects.aexists() is False

    async def test_a_change_during_a_send_keeps_the_context_queued(self) -> None:
        await sync_to_async(add_turns)("ergon:e", [("user", "one")])
        client = EngramClient()
        original = client.store

        async def store_then_change(**kwargs: object) -> None:
            await original(**kwargs)  # type: ignore[arg-type]
            await sync_to_async(add_turns)("ergon:e", [("user", "two")])

        client.store = store_then_change  # type: ignore[method-assign]
        try:
            await engram_process_one(client=client)
            row = await EngramOutbox.objects.aget()
            assert row.version == 2
            client.store = original  # type: ignore[method-assign]
            await engram_process_one(client=client)
        finally:
            await client.aclose()

        assert [m["content"] for m in self.engram.stored["ergon:e"]["messages"]] == ["one", "two"]
        assert await EngramOutbox.objects.aexists() is False


async def _post(client: AsyncClient, message: str) -> float:
    started = time.monotonic()
    response = await client.post(
        "/message",
        json.dumps({"message": message, "context_id": "ergon:slow"}),
        content_type="application/json",
    )
    assert response.status_code == 200
    return time.monotonic() - started


async def _wait_until_mirrored(engram: FakeEngram, messages: int) -> list[str]:
    for _ in range(100):
        stored = engram.stored.get("ergon:slow")
        if stored and len(stored["messages"]) == messages:
            break
        await asyncio.sleep(0.05)
        await EngramOutbox.objects.aupdate(next_attempt_at=timezone.now() - timedelta(seconds=1))
        engram_mirror_kick()
    return [m["content"][:5] for m in engram.stored["ergon:slow"]["messages"]]


@pytest.mark.django_db(transaction=True)
async def test_a_slow_engram_never_slows_a_request_and_the_mirror_catches_up(
    fake_engram: FakeEngram, settings: Any
) -> None:
    # The mirror runs as a background task with its own database connection, so this
    # test commits for real (R22's fallback).
    settings.ENGRAM_URL = fake_engram.url
    settings.RHETOR_ENGRAM_TIMEOUT = TIMEOUT
    fake_engram.delay = 2.0
    client = AsyncClient()
    try:
        await _post(client, "first")  # warms the process up (tokenizer, providers)
        assert await _wait_until_mirrored(fake_engram, 2) == ["first", "[Simu"]
        fake_engram.mode = "slow"

        elapsed = await _post(client, "second")

        assert elapsed < 0.5
        fake_engram.mode = "up"
        assert await _wait_until_mirrored(fake_engram, 4) == ["first", "[Simu", "secon", "[Simu"]
    finally:
        await engram_mirror_stop()


class EngramDisabledTests(TestCase):
    async def test_nothing_is_queued_without_engram_url(self) -> None:
        await sync_to_async(add_turns)("ergon:e", [("user", "x")])

        assert await EngramOutbox.objects.aexists() is False

"""Mirroring contexts to Engram, Tekton's memory service, in the background.

Every change to a context queues it in `EngramOutbox` inside the same transaction (one
row per context, its `version` bumped). A mirror task on the server's event loop drains
the queue: it sends the context's current state to Engram (namespace `rhetor_contexts`,
key = the context id) and deletes the row only if no change came in meanwhile. A failure
(Engram down, slow past RHETOR_ENGRAM_TIMEOUT, an error status) backs the row off
exponentially; the mirror retries until Engram is back. Requests never wait for Engram.

Engram's HTTP API, as the original Rhetor used it:
    POST   {ENGRAM_URL}/memory/{namespace}        {"key", "data", "metadata"}
    DELETE {ENGRAM_URL}/memory/{namespace}/{key}  (key URL-encoded; 404 counts as done)

`manage.py sync_engram_contexts` re-queues every context and drains the queue.
"""

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone

from contexts.models import Context, ContextSummary, EngramOutbox, Message

logger = logging.getLogger("contexts")

NAMESPACE = "rhetor_contexts"
DEFAULT_TIMEOUT = 5.0
MAX_BACKOFF_SECONDS = 300
IDLE_POLL_SECONDS = 10.0
SNAPSHOT_MESSAGES = 500
SNAPSHOT_SUMMARIES = 50
ERROR_TEXT_LIMIT = 500


def engram_enabled() -> bool:
    return bool(getattr(settings, "ENGRAM_URL", ""))


def _timeout() -> float:
    return float(getattr(settings, "RHETOR_ENGRAM_TIMEOUT", DEFAULT_TIMEOUT))


# --- The queue (sync, called inside the services' transactions) ----------------------------


def engram_enqueue(*, context_ids: list[str]) -> None:
    """Queue contexts for mirroring (nothing when ENGRAM_URL is not set). A context
    already queued has its version bumped and becomes due now."""
    if not engram_enabled():
        return
    now = timezone.now()
    for context_id in context_ids:
        bumped = EngramOutbox.objects.filter(context_key=context_id).update(
            version=F("version") + 1, attempts=0, next_attempt_at=now
        )
        if bumped:
            continue
        try:
            with transaction.atomic():
                EngramOutbox.objects.create(context_key=context_id, next_attempt_at=now)
        except IntegrityError:  # queued concurrently
            EngramOutbox.objects.filter(context_key=context_id).update(
                version=F("version") + 1, attempts=0, next_attempt_at=now
            )


def engram_enqueue_all() -> int:
    """Queue every context (a full re-sync). Returns how many were queued."""
    context_ids = list(Context.objects.values_list("context_id", flat=True))
    batch = 500
    for start in range(0, len(context_ids), batch):
        with transaction.atomic():
            engram_enqueue(context_ids=context_ids[start : start + batch])
    return len(context_ids)


@dataclass(frozen=True)
class DueItem:
    pk: int
    context_id: str
    version: int
    attempts: int


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def engram_snapshot(*, context_id: str) -> dict[str, Any] | None:
    """The state of a context sent to Engram: its counters, latest active messages and
    summaries (archived messages stay in Rhetor). None when the context is gone."""
    context = Context.objects.filter(context_id=context_id).first()
    if context is None:
        return None
    messages = list(
        Message.objects.filter(context=context, archived=False).order_by("-seq")[:SNAPSHOT_MESSAGES]
    )
    messages.reverse()
    summaries = list(
        ContextSummary.objects.filter(context=context).order_by("-created_at", "-pk")[
            :SNAPSHOT_SUMMARIES
        ]
    )
    summaries.reverse()
    return {
        "context_id": context.context_id,
        "component": context.component,
        "created_at": _iso(context.created_at),
        "updated_at": _iso(context.updated_at),
        "total_messages": context.message_count,
        "archived_message_count": context.archived_message_count,
        "token_count": context.token_count,
        "metadata": context.metadata,
        "messages": [
            {
                "id": m.seq,
                "role": m.role,
                "content": m.content,
                "timestamp": _iso(m.created_at),
                "tokens": m.tokens,
                "provider": m.provider,
                "model": m.model,
                "metadata": m.metadata,
            }
            for m in messages
        ],
        "summaries": [
            {
                "id": s.pk,
                "kind": s.kind,
                "content": s.content,
                "first_seq": s.first_seq,
                "last_seq": s.last_seq,
                "source": s.source,
                "timestamp": _iso(s.created_at),
            }
            for s in summaries
        ],
    }


def _next_due() -> tuple[DueItem, dict[str, Any] | None] | None:
    row = (
        EngramOutbox.objects.filter(next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "context_key", "version", "attempts")
        .first()
    )
    if row is None:
        return None
    item = DueItem(*row)
    return item, engram_snapshot(context_id=item.context_id)


def _mark_done(*, item: DueItem) -> None:
    # Only if no change arrived while the snapshot was in flight.
    EngramOutbox.objects.filter(pk=item.pk, version=item.version).delete()


def _mark_failed(*, item: DueItem, error: str) -> None:
    attempts = item.attempts + 1
    delay = min(MAX_BACKOFF_SECONDS, 2 ** min(attempts, 16))
    EngramOutbox.objects.filter(pk=item.pk, version=item.version).update(
        attempts=attempts,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error=error[:ERROR_TEXT_LIMIT],
    )


_anext_due = sync_to_async(_next_due)
_amark_done = sync_to_async(_mark_done)
_amark_failed = sync_to_async(_mark_failed)


def _next_wake_seconds() -> float:
    upcoming = (
        EngramOutbox.objects.order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if upcoming is None:
        return IDLE_POLL_SECONDS
    wait = (upcoming - timezone.now()).total_seconds()
    return max(0.05, min(IDLE_POLL_SECONDS, wait))


_anext_wake_seconds = sync_to_async(_next_wake_seconds)


# --- Talking to Engram ---------------------------------------------------------------------


class EngramError(Exception):
    pass


class EngramClient:
    def __init__(self, base_url: str | None = None, timeout: float | None = None) -> None:
        self.base_url = (base_url or settings.ENGRAM_URL).rstrip("/")
        self.http = httpx.AsyncClient(timeout=timeout if timeout is not None else _timeout())

    def _url(self, key: str | None = None) -> str:
        url = f"{self.base_url}/memory/{NAMESPACE}"
        return f"{url}/{quote(key, safe='')}" if key is not None else url

    async def store(self, *, key: str, data: dict[str, Any]) -> None:
        body = {
            "key": key,
            "data": data,
            "metadata": {"component": data.get("component", ""), "source": "rhetor"},
        }
        try:
            response = await self.http.post(self._url(), json=body)
        except httpx.HTTPError as exc:
            raise EngramError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise EngramError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def delete(self, *, key: str) -> None:
        try:
            response = await self.http.delete(self._url(key))
        except httpx.HTTPError as exc:
            raise EngramError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300 and response.status_code != 404:
            raise EngramError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def aclose(self) -> None:
        await self.http.aclose()


async def engram_process_one(*, client: EngramClient) -> bool:
    """Mirror the next due context. Returns whether a due item was handled (sent, or
    failed and backed off), i.e. whether to call again now."""
    due = await _anext_due()
    if due is None:
        return False
    item, snapshot = due
    try:
        if snapshot is None:
            await client.delete(key=item.context_id)
        else:
            await client.store(key=item.context_id, data=snapshot)
    except EngramError as exc:
        if item.attempts == 0:
            logger.warning("Engram mirror of %r failed, will retry: %s", item.context_id, exc)
        await _amark_failed(item=item, error=str(exc))
        return True
    await _amark_done(item=item)
    return True


# --- The background mirror task --------------------------------------------------------------


class _Mirror:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake = asyncio.Event()
        # A fresh context: the task must not inherit the request's thread-sensitive
        # executor (asgiref), which is shut down when that request ends.
        self.task: asyncio.Task[None] = loop.create_task(
            self.run(), name="engram-mirror", context=contextvars.Context()
        )

    async def run(self) -> None:
        client = EngramClient()
        try:
            while True:
                self.wake.clear()
                try:
                    while await engram_process_one(client=client):
                        pass
                    wait = await _anext_wake_seconds()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("Engram mirror step failed")
                    wait = IDLE_POLL_SECONDS
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
        finally:
            await client.aclose()
            # Same context as the steps above, so the same thread: close its connection.
            await sync_to_async(connections.close_all)()


_mirrors: dict[asyncio.AbstractEventLoop, _Mirror] = {}


def engram_mirror_kick() -> None:
    """Wake (or start) the mirror task of the running event loop. From a thread without
    a loop, wake an existing mirror; else the queue waits for the next async change or
    `manage.py sync_engram_contexts`. No-op without ENGRAM_URL."""
    if not engram_enabled():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        for mirror in list(_mirrors.values()):
            if not mirror.task.done() and not mirror.loop.is_closed():
                mirror.loop.call_soon_threadsafe(mirror.wake.set)
        return
    current = _mirrors.get(loop)
    if current is None or current.task.done():
        _mirrors[loop] = _Mirror(loop)
    else:
        current.wake.set()


async def engram_mirror_stop() -> None:
    """Stop the mirror task of the running loop (shutdown, tests)."""
    loop = asyncio.get_running_loop()
    mirror = _mirrors.pop(loop, None)
    if mirror is None:
        return
    mirror.task.cancel()
    await asyncio.wait({mirror.task}, timeout=5)

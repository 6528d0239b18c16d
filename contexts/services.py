"""Writes to conversations: appending, real token counts, compaction (archive + summary),
on-demand summaries, deletion and pruning. Imports live in `contexts.importing`, the
Engram mirror in `contexts.engram`."""

import asyncio
import contextvars
import hashlib
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from contexts.errors import (
    CONTEXT_EXISTS,
    CONTEXT_NOT_FOUND,
    ContextAlreadyExists,
    ContextNotFound,
)
from contexts.models import Context, ContextSummary, Message
from contexts.summaries import (
    SUMMARY_MAX_TOKENS,
    GeneratedSummary,
    Turn,
    agenerate_summary,
    extractive_summary,
)
from contexts.windowing import item_cost
from rhetor_site.errors import InvalidInput
from rhetor_site.tokens import count_tokens

logger = logging.getLogger("contexts")

# Compaction archives down to this share of `keep_tokens`, so that archive batches (and
# summary calls) come every few exchanges rather than after every one.
COMPACT_LOW_WATER = 0.75
# At most this many archived turns are read to summarise one batch (the first and the
# last halves); a larger batch (an import) is summarised from its two ends.
SUMMARY_SOURCE_TURNS = 400


@dataclass(frozen=True)
class NewMessage:
    role: str
    content: str
    tokens: int = 0
    provider: str = ""
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # "provider" when `tokens` is the provider's own count (e.g. a reply's output_tokens).
    token_source: str = Message.TokenSource.ESTIMATE


COMPONENT_MAX_LENGTH = Context._meta.get_field("component").max_length or 100
COMPONENT_TOO_LONG = (
    "context_id: the component before the ':' may be at most {max} characters (got {got})"
)


def component_of(context_id: str) -> str:
    """The component a context belongs to by convention: the part before the colon."""
    head, sep, _ = context_id.partition(":")
    if len(head) > COMPONENT_MAX_LENGTH and sep:
        raise InvalidInput(
            COMPONENT_TOO_LONG.format(max=COMPONENT_MAX_LENGTH, got=len(head)), field="context_id"
        )
    return head if sep else ""


def _context_get_or_create(*, context_id: str, component: str) -> Context:
    try:
        with transaction.atomic():
            context, _ = Context.objects.get_or_create(
                context_id=context_id,
                defaults={"component": component, "metadata": {"component": component}},
            )
    except IntegrityError:  # created concurrently by another request
        context = Context.objects.get(context_id=context_id)
    return context


@transaction.atomic
def context_append_messages(
    *,
    context_id: str,
    component: str | None,
    messages: list[NewMessage],
    request_id: uuid.UUID | None = None,
) -> list[Message]:
    """Append messages to a context (created on first write) in one transaction.

    The per-context sequence is advanced with one conditional UPDATE, so concurrent
    appends to the same context never collide on `seq`. A message without a token count
    is counted offline. With a `request_id`, appending is idempotent: when the request's
    messages are already stored (a retry after a COMMIT whose reply was lost), they are
    returned and nothing is written.
    """
    if not messages:
        return []
    if request_id is not None:
        stored = list(Message.objects.filter(context__context_id=context_id, request_id=request_id))
        if stored:
            return stored
    component = component or component_of(context_id)
    context = _context_get_or_create(context_id=context_id, component=component)
    now = timezone.now()
    count = len(messages)
    tokens = [m.tokens or count_tokens(m.content) for m in messages]
    Context.objects.filter(pk=context.pk).update(
        message_count=F("message_count") + count,
        token_count=F("token_count") + sum(tokens),
        updated_at=now,
    )
    end = Context.objects.values_list("message_count", flat=True).get(pk=context.pk)
    start = end - count
    rows = [
        Message(
            context=context,
            seq=start + offset,
            role=message.role,
            content=message.content,
            tokens=tokens[offset],
            token_source=message.token_source if message.tokens else Message.TokenSource.ESTIMATE,
            provider=message.provider,
            model=message.model,
            metadata=message.metadata,
            created_at=now,
            request_id=request_id,
        )
        for offset, message in enumerate(messages)
    ]
    created = Message.objects.bulk_create(rows)
    _mirror(context_id)
    return created


acontext_append_messages = sync_to_async(context_append_messages)


@transaction.atomic
def context_message_tokens_set(*, context_id: str, seq: int, tokens: int) -> bool:
    """Record the provider's real token count of a stored message (windowing uses it from
    then on). Returns False when there is no such message. Idempotent."""
    row = (
        Message.objects.filter(context__context_id=context_id, seq=seq)
        .values_list("pk", "context_id", "tokens", "archived")
        .first()
    )
    if row is None:
        return False
    pk, context_pk, old_tokens, archived = row
    Message.objects.filter(pk=pk).update(tokens=tokens, token_source=Message.TokenSource.PROVIDER)
    if not archived and tokens != old_tokens:
        Context.objects.filter(pk=context_pk).update(
            token_count=F("token_count") + (tokens - old_tokens)
        )
    return True


acontext_message_tokens_set = sync_to_async(context_message_tokens_set)


# --- Compaction: archive what fell out of the window, summarise it ---------------------------


@dataclass(frozen=True)
class ArchiveBatch:
    context_id: str
    summary_pk: int
    first_seq: int
    last_seq: int
    previous_summary: str | None
    turns: tuple[Turn, ...]


class _LostRace(Exception):
    """Another compaction archived (some of) the same messages first."""


def _archive_boundary(rows: list[tuple[int, str, int]], keep_cost: int) -> int | None:
    """Given active non-system (seq, role, tokens) rows newest first, the seq of the
    oldest message to keep; None to keep everything. What is kept fits `keep_cost` and
    starts with a user turn."""
    used = 0
    kept: list[tuple[int, str]] = []
    for seq, role, tokens in rows:
        cost = item_cost(tokens)
        if used + cost > keep_cost:
            break
        kept.append((seq, role))
        used += cost
    if len(kept) == len(rows):
        return None
    while kept and kept[-1][1] == "assistant":  # kept[-1] is the oldest kept
        kept.pop()
    return kept[-1][0] if kept else rows[0][0] + 1


def _batch_turns(context_pk: int, boundary: int) -> tuple[Turn, ...]:
    """The turns of an archive batch to summarise: all of them, or for a very large batch
    the first and last SUMMARY_SOURCE_TURNS / 2."""
    half = SUMMARY_SOURCE_TURNS // 2
    head: list[Turn] = []
    tail: deque[Turn] = deque(maxlen=half)
    rows = (
        Message.objects.filter(context_id=context_pk, archived=False, seq__lt=boundary)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("seq")
        .values_list("role", "content")
    )
    for role, content in rows.iterator(chunk_size=500):
        if len(head) < half:
            head.append(Turn(role, content))
        else:
            tail.append(Turn(role, content))
    return (*head, *tail)


def context_archive_overflow(
    *, context_id: str, keep_tokens: int, low_water: float = COMPACT_LOW_WATER
) -> ArchiveBatch | None:
    """Archive the oldest active turns of a context once its active history costs more
    than `keep_tokens`, down to `keep_tokens * low_water`. One transaction; the batch gets
    an extractive summary at once (rolled forward from the previous one), which the
    caller may replace with a model's. None when nothing was archived (within the budget,
    unknown context, or another compaction won the race). System messages stay active.
    """
    try:
        with transaction.atomic():
            return _archive_overflow(
                context_id=context_id, keep_tokens=keep_tokens, low_water=low_water
            )
    except (_LostRace, IntegrityError):
        return None


def _archive_overflow(
    *, context_id: str, keep_tokens: int, low_water: float
) -> ArchiveBatch | None:
    head = (
        Context.objects.filter(context_id=context_id)
        .values_list(
            "pk",
            "token_count",
            "message_count",
            "archived_message_count",
            "latest_summary__content",
        )
        .first()
    )
    if head is None:
        return None
    context_pk, token_count, total, archived_count, previous = head
    active_cost = token_count + item_cost(0) * (total - archived_count)
    if active_cost <= keep_tokens:
        return None
    rows = list(
        Message.objects.filter(context_id=context_pk, archived=False)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("-seq")
        .values_list("seq", "role", "tokens")
    )
    boundary = _archive_boundary(rows, int(keep_tokens * low_water))
    if boundary is None:
        return None
    archived_rows = [row for row in rows if row[0] < boundary]
    if not archived_rows:
        return None
    first_seq, last_seq = archived_rows[-1][0], archived_rows[0][0]
    turns = _batch_turns(context_pk, boundary)
    content = extractive_summary(previous=previous, turns=turns, max_tokens=SUMMARY_MAX_TOKENS)
    summary = ContextSummary.objects.create(
        context_id=context_pk,
        kind=ContextSummary.Kind.ARCHIVE,
        first_seq=first_seq,
        last_seq=last_seq,
        message_count=len(archived_rows),
        content=content,
        tokens=count_tokens(content),
        source=ContextSummary.Source.EXTRACTIVE,
    )
    archived = (
        Message.objects.filter(context_id=context_pk, archived=False, seq__lt=boundary)
        .exclude(role=Message.Role.SYSTEM)
        .update(archived=True, archive=summary)
    )
    if archived != len(archived_rows):
        raise _LostRace
    Context.objects.filter(pk=context_pk).update(
        archived_message_count=F("archived_message_count") + archived,
        token_count=F("token_count") - sum(row[2] for row in archived_rows),
        summary_count=F("summary_count") + 1,
        latest_summary=summary,
        updated_at=timezone.now(),
    )
    _mirror(context_id)
    return ArchiveBatch(
        context_id=context_id,
        summary_pk=summary.pk,
        first_seq=first_seq,
        last_seq=last_seq,
        previous_summary=previous,
        turns=turns,
    )


acontext_archive_overflow = sync_to_async(context_archive_overflow)


@transaction.atomic
def context_summary_update(*, summary_pk: int, generated: GeneratedSummary) -> None:
    """Replace a summary's text (e.g. the extractive placeholder by the model's)."""
    summary = ContextSummary.objects.select_related("context").filter(pk=summary_pk).first()
    if summary is None:  # the context was deleted meanwhile
        return
    summary.content = generated.content
    summary.tokens = count_tokens(generated.content)
    summary.source = generated.source
    summary.provider = generated.provider
    summary.model = generated.model
    summary.full_clean()
    summary.save()
    _mirror(summary.context.context_id)


acontext_summary_update = sync_to_async(context_summary_update)


async def acontext_compact(
    *, context_id: str, keep_tokens: int, low_water: float = COMPACT_LOW_WATER
) -> ContextSummary | None:
    """Archive the oldest active turns beyond `keep_tokens` (see context_archive_overflow)
    and summarise the batch with the model of the `summarize` route, extractive when no
    model answers. No transaction is open during the model call. Safe to run concurrently
    for one context: a batch is archived once. Returns the batch's summary, or None."""
    batch = await acontext_archive_overflow(
        context_id=context_id, keep_tokens=keep_tokens, low_water=low_water
    )
    if batch is None:
        return None
    generated = await agenerate_summary(
        previous=batch.previous_summary, turns=batch.turns, context_id=context_id
    )
    if generated.source != ContextSummary.Source.EXTRACTIVE:
        await acontext_summary_update(summary_pk=batch.summary_pk, generated=generated)
    await _arequest_mirror()
    return await ContextSummary.objects.aget(pk=batch.summary_pk)


_compacting: dict[str, asyncio.Task[ContextSummary | None]] = {}


async def _compact_logged(*, context_id: str, keep_tokens: int) -> ContextSummary | None:
    try:
        return await acontext_compact(context_id=context_id, keep_tokens=keep_tokens)
    except Exception:
        logger.exception("compaction of %r failed", context_id)
        return None
    finally:
        _compacting.pop(context_id, None)


def context_compact_soon(
    *, context_id: str, keep_tokens: int
) -> asyncio.Task[ContextSummary | None] | None:
    """Run acontext_compact in the background of the running event loop (after an
    exchange): never delays or fails the request, one at a time per context in this
    process, errors logged. The task gets a fresh contextvars context, so it does not
    inherit the request's thread-sensitive executor (asgiref), which dies with the
    request. Returns the task (tests may await it), or None when one is running."""
    running = _compacting.get(context_id)
    if running is not None and not running.done():
        return None
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        _compact_logged(context_id=context_id, keep_tokens=keep_tokens),
        name=f"compact:{context_id}",
        context=contextvars.Context(),
    )
    _compacting[context_id] = task
    return task


# --- On-demand summary (POST /contexts/{id}/summarize) ----------------------------------------


def _summary_inputs(*, context_id: str) -> tuple[Context, tuple[Turn, ...]]:
    context = Context.objects.select_related("latest_summary").filter(context_id=context_id).first()
    if context is None:
        raise ContextNotFound(CONTEXT_NOT_FOUND.format(context_id=context_id))
    recent = list(
        Message.objects.filter(context=context, archived=False)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("-seq")
        .values_list("seq", "role", "content")[:SUMMARY_SOURCE_TURNS]
    )
    recent.reverse()
    return context, tuple(Turn(role, content) for _, role, content in recent)


@transaction.atomic
def _summary_store(*, context: Context, generated: GeneratedSummary, turns: int) -> ContextSummary:
    last_seq = max(context.message_count - 1, 0)
    summary = ContextSummary(
        context=context,
        kind=ContextSummary.Kind.ON_DEMAND,
        first_seq=0,
        last_seq=last_seq,
        message_count=turns,
        content=generated.content,
        tokens=count_tokens(generated.content),
        source=generated.source,
        provider=generated.provider,
        model=generated.model,
    )
    summary.full_clean()
    summary.save()
    Context.objects.filter(pk=context.pk).update(summary_count=F("summary_count") + 1)
    _mirror(context.context_id)
    return summary


async def acontext_summarize(
    *, context_id: str, max_tokens: int = SUMMARY_MAX_TOKENS
) -> ContextSummary:
    """Summarise the whole conversation (the archive summary plus the active turns) now,
    and keep the summary. Raises ContextNotFound."""
    context, turns = await sync_to_async(_summary_inputs)(context_id=context_id)
    previous = context.latest_summary.content if context.latest_summary else None
    generated = await agenerate_summary(
        previous=previous, turns=turns, context_id=context_id, max_tokens=max_tokens
    )
    summary = await sync_to_async(_summary_store)(
        context=context, generated=generated, turns=len(turns)
    )
    await _arequest_mirror()
    return summary


# --- Deletion and pruning ------------------------------------------------------------------------


def context_id_new(*, component: str | None, name: str | None) -> str:
    """A fresh conversation id by the `<component>:<name>` convention, unique by a random
    suffix: `ergon:release-planning-3f9c2a1b`."""
    base = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")[:60] or "conversation"
    return f"{component or 'rhetor'}:{base}-{uuid.uuid4().hex[:8]}"


def context_create(
    *,
    context_id: str | None = None,
    component: str | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Context:
    """Create an empty conversation. Without `context_id` one is made from the component
    and name; an existing id is a 409 (`ContextAlreadyExists`)."""
    if context_id is None:
        context_id = context_id_new(component=component, name=name)
    component = component or component_of(context_id)
    stored = {**(metadata or {}), "component": component}
    if name:
        stored["name"] = name
    try:
        with transaction.atomic():
            context = Context.objects.create(
                context_id=context_id, component=component, metadata=stored
            )
    except IntegrityError as exc:
        raise ContextAlreadyExists(CONTEXT_EXISTS.format(context_id=context_id)) from exc
    _mirror(context_id)
    return context


def context_message_add(
    *, context_id: str, role: str, content: str, metadata: dict[str, Any] | None = None
) -> Message:
    """Append one message to an existing conversation (no model is asked). An unknown
    context is a 404: adding to a mistyped id never creates a second conversation."""
    if not Context.objects.filter(context_id=context_id).exists():
        raise ContextNotFound(CONTEXT_NOT_FOUND.format(context_id=context_id))
    (message,) = context_append_messages(
        context_id=context_id,
        component=None,
        messages=[NewMessage(role, content, metadata=dict(metadata or {}))],
    )
    return message


async def acontext_message_add(
    *, context_id: str, role: str, content: str, metadata: dict[str, Any] | None = None
) -> Message:
    """`context_message_add`, then tell the context's subscribers (like a model reply)."""
    message = await sync_to_async(context_message_add)(
        context_id=context_id, role=role, content=content, metadata=metadata
    )
    await acontext_publish(context_id=context_id, messages=[message])
    return message


@transaction.atomic
def context_delete(*, context_id: str) -> None:
    """Delete a context with its messages and summaries. Raises ContextNotFound."""
    context = Context.objects.filter(context_id=context_id).first()
    if context is None:
        raise ContextNotFound(CONTEXT_NOT_FOUND.format(context_id=context_id))
    # The circular latest_summary link is cleared first so the cascade is one pass.
    Context.objects.filter(pk=context.pk).update(latest_summary=None)
    context.delete()
    _mirror(context_id)


@dataclass(frozen=True)
class PruneResult:
    contexts: int
    messages: int


def context_prune(
    *, older_than: datetime, component: str | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete the contexts not updated since `older_than` (of one component, if given).
    With `dry_run`, only count them. Each context is deleted in its own transaction."""
    stale = Context.objects.filter(updated_at__lt=older_than)
    if component:
        stale = stale.filter(component=component)
    found = list(stale.values_list("context_id", "message_count"))
    result = PruneResult(contexts=len(found), messages=sum(count for _, count in found))
    if dry_run:
        return result
    for context_id, _ in found:
        try:
            context_delete(context_id=context_id)
        except ContextNotFound:  # deleted concurrently
            continue
    return result


# --- Engram mirror hooks ---------------------------------------------------------------


def _mirror(context_id: str) -> None:
    """Queue the context for the Engram mirror (inside the caller's transaction)."""
    from contexts.engram import engram_enqueue

    engram_enqueue(context_ids=[context_id])


async def _arequest_mirror() -> None:
    from contexts.engram import engram_mirror_kick

    engram_mirror_kick()


# --- Live updates -------------------------------------------------------------------------------


def context_group(context_id: str) -> str:
    """The channel-layer group of a context's subscribers. Group names are limited to
    ASCII letters, digits, hyphens, underscores and periods, so the id is hashed."""
    return "context." + hashlib.sha256(context_id.encode()).hexdigest()[:32]


def message_event(context_id: str, message: Message) -> dict[str, Any]:
    return {
        "context": context_id,
        "id": message.seq,
        "role": message.role,
        "content": message.content,
        "provider": message.provider,
        "model": message.model,
        "timestamp": message.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "metadata": message.metadata,
    }


async def acontext_publish(*, context_id: str, messages: list[Message]) -> None:
    """Tell every subscriber of the context (on any process, through the channel layer)
    about appended messages, and wake the Engram mirror. Best effort: a channel layer
    outage never fails a request."""
    engram_mirror_kick_safe()
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    try:
        await layer.group_send(
            context_group(context_id),
            {
                "type": "context.messages",
                "messages": [message_event(context_id, m) for m in messages],
            },
        )
    except Exception:
        logger.warning("could not publish to the subscribers of %r", context_id, exc_info=True)


def engram_mirror_kick_safe() -> None:
    try:
        from contexts.engram import engram_mirror_kick

        engram_mirror_kick()
    except Exception:
        logger.warning("could not wake the Engram mirror", exc_info=True)

"""Writes to conversations."""

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from contexts.models import Context, Message

logger = logging.getLogger("contexts")


@dataclass(frozen=True)
class NewMessage:
    role: str
    content: str
    tokens: int = 0
    provider: str = ""
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def component_of(context_id: str) -> str:
    """The component a context belongs to by convention: the part before the colon."""
    head, sep, _ = context_id.partition(":")
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
    *, context_id: str, component: str | None, messages: list[NewMessage]
) -> list[Message]:
    """Append messages to a context (created on first write) in one transaction.

    The per-context sequence is advanced with one conditional UPDATE, so concurrent
    appends to the same context never collide on `seq`.
    """
    if not messages:
        return []
    component = component or component_of(context_id)
    context = _context_get_or_create(context_id=context_id, component=component)
    now = timezone.now()
    count = len(messages)
    Context.objects.filter(pk=context.pk).update(
        message_count=F("message_count") + count, updated_at=now
    )
    end = Context.objects.values_list("message_count", flat=True).get(pk=context.pk)
    start = end - count
    rows = [
        Message(
            context=context,
            seq=start + offset,
            role=message.role,
            content=message.content,
            tokens=message.tokens,
            provider=message.provider,
            model=message.model,
            metadata=message.metadata,
            created_at=now,
        )
        for offset, message in enumerate(messages)
    ]
    return Message.objects.bulk_create(rows)


acontext_append_messages = sync_to_async(context_append_messages)


# --- Live updates --------------------------------------------------------------------------


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
    about appended messages. Best effort: a channel layer outage never fails a request."""
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

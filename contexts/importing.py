"""Importing the original Rhetor's JSON context files, idempotently.

A file holds one context: {"context_id", "created_at", "updated_at", "messages": [{"id",
"role", "content", "timestamp", "metadata"}], "summaries", "metadata",
"archived_messages"}. Each imported message keeps its original id in
`metadata["tekton_id"]`; importing the same file again adds nothing, and a newer export
of the same context adds only the messages not seen before.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contexts.models import Context, ContextSummary, Message
from contexts.services import _context_get_or_create, _mirror, component_of
from rhetor_site.tokens import count_tokens

ROLES = {"system", "user", "assistant"}
ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant"}


class ImportFormatError(ValueError):
    pass


@dataclass(frozen=True)
class ImportResult:
    context_id: str
    created: bool
    messages_added: int
    archived_added: int
    summaries_added: int
    skipped: int


def parse_timestamp(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except ValueError:
            pass
        parsed = parse_datetime(value.replace("Z", "+00:00"))
        if parsed is None:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _message_key(raw: dict[str, Any]) -> str:
    if raw.get("id") not in (None, ""):
        return str(raw["id"])
    digest = hashlib.sha256(
        f"{raw.get('role')}\x00{raw.get('content')}\x00{raw.get('timestamp')}".encode()
    ).hexdigest()
    return f"sha256:{digest[:32]}"


def _summary_text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, dict):
        for key in ("content", "summary", "text"):
            if isinstance(raw.get(key), str):
                return str(raw[key]).strip()
    return ""


@dataclass(frozen=True)
class _Candidate:
    archived: bool
    position: int
    role: str
    content: str
    created_at: datetime
    metadata: dict[str, Any]


@transaction.atomic
def context_import_tekton(*, data: dict[str, Any]) -> ImportResult:
    """Import one original-Rhetor context. Raises ImportFormatError on a malformed file."""
    if not isinstance(data, dict) or not isinstance(data.get("context_id"), str):
        raise ImportFormatError("not a Rhetor context file: no string 'context_id'")
    context_id = data["context_id"].strip()
    if not context_id or len(context_id) > 512:
        raise ImportFormatError("'context_id' must be 1 to 512 characters")
    messages_in = data.get("messages") or []
    archived_in = data.get("archived_messages") or []
    if not isinstance(messages_in, list) or not isinstance(archived_in, list):
        raise ImportFormatError("'messages' and 'archived_messages' must be lists")
    raw_metadata = data.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    component = str(metadata.get("component") or component_of(context_id))[:100]

    created = not Context.objects.filter(context_id=context_id).exists()
    context = _context_get_or_create(context_id=context_id, component=component)
    if created:
        created_at = parse_timestamp(data.get("created_at"))
        Context.objects.filter(pk=context.pk).update(
            created_at=created_at or timezone.now(),
            metadata={**metadata, "component": component, "imported_from": "tekton"},
        )
    seen = set(
        Message.objects.filter(context=context)
        .exclude(metadata__tekton_id=None)
        .values_list("metadata__tekton_id", flat=True)
    )

    skipped = 0
    candidates: list[_Candidate] = []
    for archived, batch in ((True, archived_in), (False, messages_in)):
        for position, raw in enumerate(batch):
            if not isinstance(raw, dict) or not isinstance(raw.get("content"), str):
                skipped += 1
                continue
            role = str(raw.get("role", "")).lower()
            role = ROLE_ALIASES.get(role, role)
            if role not in ROLES:
                skipped += 1
                continue
            key = _message_key(raw)
            if key in seen:
                continue
            seen.add(key)
            raw_extra = raw.get("metadata")
            extra: dict[str, Any] = raw_extra if isinstance(raw_extra, dict) else {}
            candidates.append(
                _Candidate(
                    archived=archived,
                    position=position,
                    role=role,
                    content=raw["content"],
                    created_at=parse_timestamp(raw.get("timestamp")) or timezone.now(),
                    metadata={**extra, "tekton_id": key},
                )
            )
    # Archived turns come before active ones; each list keeps its order.
    candidates.sort(key=lambda c: (not c.archived, c.position))

    added = len(candidates)
    base = Context.objects.values_list("message_count", flat=True).get(pk=context.pk)
    rows = [
        Message(
            context=context,
            seq=base + offset,
            role=c.role,
            content=c.content,
            tokens=count_tokens(c.content),
            archived=c.archived,
            metadata=c.metadata,
            created_at=c.created_at,
        )
        for offset, c in enumerate(candidates)
    ]
    Message.objects.bulk_create(rows, batch_size=1000)
    archived_rows = [r for r in rows if r.archived]
    summaries_added = 0
    summary_text = "\n\n".join(
        text for text in (_summary_text(s) for s in (data.get("summaries") or [])) if text
    )
    latest_summary = None
    if summary_text and archived_rows:
        latest_summary = ContextSummary.objects.create(
            context=context,
            kind=ContextSummary.Kind.ARCHIVE,
            first_seq=archived_rows[0].seq,
            last_seq=archived_rows[-1].seq,
            message_count=len(archived_rows),
            content=summary_text,
            tokens=count_tokens(summary_text),
            source=ContextSummary.Source.IMPORTED,
        )
        Message.objects.filter(
            context=context,
            archived=True,
            seq__gte=archived_rows[0].seq,
            seq__lte=archived_rows[-1].seq,
        ).update(archive=latest_summary)
        summaries_added = 1
    updated_at = parse_timestamp(data.get("updated_at"))
    changes: dict[str, Any] = {
        "message_count": F("message_count") + added,
        "archived_message_count": F("archived_message_count") + len(archived_rows),
        "token_count": F("token_count") + sum(r.tokens for r in rows if not r.archived),
        "summary_count": F("summary_count") + summaries_added,
    }
    if latest_summary is not None:
        changes["latest_summary"] = latest_summary
    if created:
        changes["updated_at"] = updated_at or timezone.now()
    elif added:
        changes["updated_at"] = max(updated_at or timezone.now(), context.updated_at)
    Context.objects.filter(pk=context.pk).update(**changes)
    if added or created:
        _mirror(context_id)
    return ImportResult(
        context_id=context_id,
        created=created,
        messages_added=added - len(archived_rows),
        archived_added=len(archived_rows),
        summaries_added=summaries_added,
        skipped=skipped,
    )

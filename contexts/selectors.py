"""Reads of conversations, their summaries and the model windows."""

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db.models import Count, Max, Min, Q, QuerySet, Sum

from contexts.models import Context, Message, ModelContextWindow
from contexts.search import search_message_pks

# The most recent active messages loaded to build a request's history; windowing then
# keeps what fits the model. Compaction keeps the active history within a window, so
# this only bounds a context that has not been compacted yet.
HISTORY_LOAD_LIMIT = 500
DEFAULT_CONTEXT_WINDOW = 8192
WINDOW_CACHE_TTL = 30.0  # seconds: an operator's edit reaches every process this fast


def context_history_list(*, context_id: str, limit: int = HISTORY_LOAD_LIMIT) -> list[Message]:
    """The context's latest active (not archived) messages, oldest first. One query; an
    unknown context has no history."""
    recent = list(
        Message.objects.filter(context__context_id=context_id, archived=False)
        .order_by("-seq")
        .only("role", "content", "tokens", "seq")[:limit]
    )
    recent.reverse()
    return recent


acontext_history_list = sync_to_async(context_history_list)


# --- The history of a request ---------------------------------------------------------------


@dataclass(frozen=True)
class HistoryMessage:
    seq: int
    role: str
    content: str
    tokens: int


@dataclass(frozen=True)
class HistoryBundle:
    """What a request needs of a context: its active messages, oldest first, and the
    summary of every archived turn (None when nothing was archived)."""

    messages: tuple[HistoryMessage, ...]
    summary: str | None
    summary_tokens: int = 0

    @property
    def active_tokens(self) -> int:
        return sum(m.tokens for m in self.messages)


EMPTY_HISTORY = HistoryBundle(messages=(), summary=None)


def context_history_for_request(
    *, context_id: str, limit: int = HISTORY_LOAD_LIMIT
) -> HistoryBundle:
    """Active messages (oldest first) and the latest archive summary. At most two queries;
    one for an unknown context (which has no history and is not created)."""
    head = (
        Context.objects.filter(context_id=context_id)
        .values_list("pk", "latest_summary__content", "latest_summary__tokens")
        .first()
    )
    if head is None:
        return EMPTY_HISTORY
    context_pk, summary, summary_tokens = head
    rows = list(
        Message.objects.filter(context_id=context_pk, archived=False)
        .order_by("-seq")
        .values_list("seq", "role", "content", "tokens")[:limit]
    )
    rows.reverse()
    return HistoryBundle(
        messages=tuple(HistoryMessage(*row) for row in rows),
        summary=summary or None,
        summary_tokens=summary_tokens or 0,
    )


acontext_history_for_request = sync_to_async(context_history_for_request)


# --- Model windows ----------------------------------------------------------------------------

_window_cache: dict[tuple[str, str], tuple[int, float]] = {}
_window_lock = threading.Lock()


def _cached_window(provider: str, model: str) -> int | None:
    with _window_lock:
        hit = _window_cache.get((provider, model))
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    return None


def _remember_window(provider: str, model: str, window: int) -> int:
    with _window_lock:
        _window_cache[(provider, model)] = (window, time.monotonic() + WINDOW_CACHE_TTL)
    return window


def context_window_clear_cache() -> None:
    with _window_lock:
        _window_cache.clear()


def _window_lookup(provider: str, model: str, catalogue: int | None) -> int:
    row = (
        ModelContextWindow.objects.filter(provider=provider, model=model)
        .values_list("context_window", flat=True)
        .first()
    )
    if row is None and ":" in model:
        # Ollama tags ("llama3:latest", "mistral:7b") share their family's window.
        row = (
            ModelContextWindow.objects.filter(provider=provider, model=model.split(":", 1)[0])
            .values_list("context_window", flat=True)
            .first()
        )
    return row or catalogue or DEFAULT_CONTEXT_WINDOW


def context_window_for(*, provider: str, model: str, catalogue: int | None = None) -> int:
    """The model's context window in tokens: the operator-editable table, then
    `catalogue` (what the provider's model list says, from the caller), then 8192. Cached
    per process for WINDOW_CACHE_TTL seconds."""
    cached = _cached_window(provider, model)
    if cached is not None:
        return cached
    return _remember_window(provider, model, _window_lookup(provider, model, catalogue))


_awindow_lookup = sync_to_async(_window_lookup)


async def acontext_window_for(*, provider: str, model: str, catalogue: int | None = None) -> int:
    cached = _cached_window(provider, model)
    if cached is not None:
        return cached
    window = await _awindow_lookup(provider, model, catalogue)
    return _remember_window(provider, model, window)


# --- The context API ----------------------------------------------------------------------------


def context_get(*, context_id: str) -> Context | None:
    return Context.objects.select_related("latest_summary").filter(context_id=context_id).first()


def context_list(*, component: str | None = None) -> QuerySet[Context]:
    """Contexts, most recently updated first (the latest summary joined)."""
    contexts = Context.objects.select_related("latest_summary").order_by("-updated_at", "-pk")
    if component:
        contexts = contexts.filter(component=component)
    return contexts


def context_messages_list(*, context: Context, limit: int) -> list[Message]:
    """The context's latest `limit` active messages, oldest first."""
    recent = list(Message.objects.filter(context=context, archived=False).order_by("-seq")[:limit])
    recent.reverse()
    return recent


@dataclass(frozen=True)
class SearchResult:
    message: Message
    score: float


def context_search(*, context: Context, query: str, limit: int) -> list[SearchResult]:
    """Messages of the context (active and archived) matching `query`, most relevant
    first, by the database's full-text index. Two queries."""
    hits = search_message_pks(context_pk=context.pk, query=query, limit=limit)
    if not hits:
        return []
    by_pk = Message.objects.in_bulk([hit.message_pk for hit in hits])
    return [
        SearchResult(message=by_pk[hit.message_pk], score=hit.score)
        for hit in hits
        if hit.message_pk in by_pk
    ]


@dataclass(frozen=True)
class RoleStats:
    messages: int
    tokens: int


@dataclass(frozen=True)
class ContextAnalysis:
    """Counts over a whole conversation (active and archived messages), for
    `POST /contexts/{id}/analyze`."""

    context: Context
    roles: dict[str, RoleStats]
    first_message_at: datetime | None
    last_message_at: datetime | None
    providers: dict[str, int]
    truncated_messages: int
    partial_replies: int

    @property
    def total_tokens(self) -> int:
        return sum(r.tokens for r in self.roles.values())

    @property
    def total_messages(self) -> int:
        return sum(r.messages for r in self.roles.values())


def context_analysis(*, context: Context) -> ContextAnalysis:
    """Per-role message and token counts, the time span, which providers answered and
    how many turns were cut short; three aggregate queries."""
    messages = Message.objects.filter(context=context)
    roles = {
        row["role"]: RoleStats(messages=row["n"], tokens=row["tokens"] or 0)
        for row in messages.order_by().values("role").annotate(n=Count("pk"), tokens=Sum("tokens"))
    }
    span = messages.aggregate(
        first=Min("created_at"),
        last=Max("created_at"),
        truncated=Count("pk", filter=Q(metadata__truncated=True)),
        partial=Count("pk", filter=Q(metadata__partial=True)),
    )
    providers = {
        f"{row['provider']}/{row['model']}": row["n"]
        for row in messages.filter(role="assistant")
        .exclude(provider="")
        .order_by()
        .values("provider", "model")
        .annotate(n=Count("pk"))
    }
    return ContextAnalysis(
        context=context,
        roles=roles,
        first_message_at=span["first"],
        last_message_at=span["last"],
        providers=providers,
        truncated_messages=span["truncated"],
        partial_replies=span["partial"],
    )

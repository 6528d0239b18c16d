"""Conversations (contexts), their messages, archive summaries, model windows and the
Engram mirror queue.

A context is named by any string a client sends (`ergon:default`, ids with slashes or
spaces); it is a value in a column, never a file path. Messages are ordered by `seq`,
a per-context counter advanced atomically in SQL. Messages that fall out of a model's
window are archived (flagged, never deleted); each archive batch has one summary.

Full-text search over `Message.content` lives outside the ORM (migration 0003): an FTS5
table kept in sync by triggers on SQLite, a stored `tsvector` column with a GIN index on
PostgreSQL. A later migration that remakes `contexts_message` on SQLite drops the
triggers: it must run `contexts.search.SQLITE_FTS_TRIGGERS` again.
"""

from django.db import models
from django.utils import timezone

from rhetor_site.db import TimestampedModel


class Context(TimestampedModel):
    context_id = models.CharField(max_length=512, unique=True)
    component = models.CharField(max_length=100, blank=True, db_index=True)
    # Number of messages ever appended (also the next message's seq).
    message_count = models.PositiveBigIntegerField(default=0)
    # Denormalised counters, kept by the services in the same transactions as the rows,
    # so listing 10,000 contexts never aggregates their messages.
    archived_message_count = models.PositiveBigIntegerField(default=0)
    token_count = models.PositiveBigIntegerField(default=0)  # tokens of active messages
    summary_count = models.PositiveIntegerField(default=0)
    # The newest archive summary: it covers every archived turn (summaries roll forward).
    latest_summary = models.ForeignKey(
        "ContextSummary", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["-updated_at"], name="context_recent_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(archived_message_count__lte=models.F("message_count")),
                name="context_archived_lte_total",
            ),
        ]

    def __str__(self) -> str:
        return self.context_id

    @property
    def active_message_count(self) -> int:
        return self.message_count - self.archived_message_count


class ContextSummary(models.Model):
    class Kind(models.TextChoices):
        ARCHIVE = "archive"  # the summary of an archive batch (and all before it)
        ON_DEMAND = "on_demand"  # POST /contexts/{id}/summarize

    class Source(models.TextChoices):
        MODEL = "model"
        EXTRACTIVE = "extractive"
        IMPORTED = "imported"

    context = models.ForeignKey(Context, on_delete=models.CASCADE, related_name="summaries")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ARCHIVE)
    # The archived batch this summary was made for: messages first_seq..last_seq.
    first_seq = models.PositiveBigIntegerField()
    last_seq = models.PositiveBigIntegerField()
    message_count = models.PositiveIntegerField(default=0)
    content = models.TextField()
    tokens = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=16, choices=Source.choices)
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["context", "created_at", "id"]
        verbose_name_plural = "context summaries"
        constraints = [
            # One summary per archive batch: a batch starting at first_seq is archived once.
            models.UniqueConstraint(
                fields=["context", "first_seq"],
                condition=models.Q(kind="archive"),
                name="summary_archive_batch_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(last_seq__gte=models.F("first_seq")),
                name="summary_seq_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.context_id} {self.kind} {self.first_seq}-{self.last_seq}"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class TokenSource(models.TextChoices):
        ESTIMATE = "estimate"  # counted offline (rhetor_site.tokens)
        PROVIDER = "provider"  # reported by the provider that produced or read it

    context = models.ForeignKey(Context, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    # Tokens of `content`: the provider's count when it reported one, else an estimate.
    tokens = models.PositiveIntegerField(default=0)
    token_source = models.CharField(
        max_length=16, choices=TokenSource.choices, default=TokenSource.ESTIMATE
    )
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True)
    archived = models.BooleanField(default=False)
    # The archive batch (its summary) this message was archived in.
    archive = models.ForeignKey(
        ContextSummary,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="archived_messages",
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    # The gateway request whose exchange this message is part of (its usage records carry
    # the same id): a write retried after a lost COMMIT finds it and stores nothing twice.
    request_id = models.UUIDField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["context", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["context", "seq"], name="message_context_seq_unique"),
            models.CheckConstraint(
                condition=models.Q(role__in=["system", "user", "assistant"]),
                name="message_role_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["context", "archived", "-seq"], name="message_active_recent_idx")
        ]

    def __str__(self) -> str:
        return f"{self.context_id}#{self.seq} {self.role}"


class ModelContextWindow(TimestampedModel):
    """How many tokens a model reads (prompt + output). Data, not code: seeded for the
    known models, editable by an operator in the admin."""

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    context_window = models.PositiveIntegerField()

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="model_window_unique"),
            models.CheckConstraint(
                condition=models.Q(context_window__gte=256), name="model_window_min"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}: {self.context_window}"


class EngramOutbox(models.Model):
    """A context whose latest state has not reached Engram yet: one row per context,
    `version` bumped on every change; the mirror deletes the row only if the version it
    sent is still the latest."""

    context_key = models.CharField(max_length=512, unique=True)
    version = models.PositiveBigIntegerField(default=1)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["next_attempt_at", "id"]
        verbose_name_plural = "Engram outbox"

    def __str__(self) -> str:
        return f"{self.context_key} v{self.version}"

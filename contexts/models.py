"""Conversations (contexts) and their messages.

A context is named by any string a client sends (`ergon:default`, ids with slashes or
spaces); it is a value in a column, never a file path. Messages are ordered by `seq`,
a per-context counter advanced atomically in SQL.
"""

from django.db import models

from rhetor_site.db import TimestampedModel


class Context(TimestampedModel):
    context_id = models.CharField(max_length=512, unique=True)
    component = models.CharField(max_length=100, blank=True, db_index=True)
    # Number of messages ever appended (also the next message's seq).
    message_count = models.PositiveBigIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["-updated_at"], name="context_recent_idx")]

    def __str__(self) -> str:
        return self.context_id


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    context = models.ForeignKey(Context, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    # Tokens of `content`: the provider's count when it reported one, else an estimate.
    tokens = models.PositiveIntegerField(default=0)
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True)
    archived = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)

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

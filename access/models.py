"""API keys: who may call Rhetor, with which scopes, as which components.

A key is `rk_<key_id>_<secret>`. Only `key_id` (the visible prefix) and a SHA-256 of
the secret are stored; the secret is shown once, when the key is made. The secret has
256 bits of entropy, so a fast hash is the right one (a slow password hash would only
cost every request time): lookup by `key_id` (unique index), then a constant-time
comparison of the hashes (HOUSE_STYLE R15).
"""

from django.db import models
from django.utils import timezone

# The scopes an operation can require. `messages`: send, stream, chat and use one's own
# contexts; `budget:admin`: limits, policies, resets and the default provider.
SCOPES = (
    "messages",
    "prompts:read",
    "prompts:write",
    "budget:read",
    "budget:admin",
    "contexts:admin",
)


class ApiKey(models.Model):
    key_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    name = models.CharField(max_length=100, help_text="Who holds it, e.g. ergon or alice.")
    scopes = models.JSONField(default=list, blank=True)
    # Empty: the key may act as any component. Else it acts only as these (the first is
    # used when a request names none).
    components = models.JSONField(default=list, blank=True)
    # Per-minute limits; null takes RHETOR_RATE_LIMIT_RPM / _TPM, 0 means unlimited.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def prefix(self) -> str:
        return f"rk_{self.key_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

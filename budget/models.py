"""Budget data: prices, limits, per-window spend counters, reservations (mutable holds) and
the append-only usage ledger.

All money is an integer of nano-USD (`*_nanos`, 10**9 per dollar); prices are nano-USD per
token. Nothing here is a float.
"""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from rhetor_site.db import TimestampedModel


class Period(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class Policy(models.TextChoices):
    IGNORE = "ignore", "Ignore (track only)"
    WARN = "warn", "Warn"
    ENFORCE = "enforce", "Enforce"


class ScopeKind(models.TextChoices):
    ALL = "all", "All providers"
    PROVIDER = "provider", "One provider"
    COMPONENT = "component", "One component"


class PriceUnit(models.TextChoices):
    NANO_USD_PER_TOKEN = "nano_usd_per_token", "nano-USD per token"


ANY_MODEL = "*"


class ModelPrice(models.Model):
    """The price of a model from `effective_from` on; a newer row for the same model
    supersedes it (the history stays). `model == "*"` prices every model of the provider
    that has no row of its own (Ollama and the simulated provider are free)."""

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200, help_text='Model id, or "*" for any model.')
    input_price = models.BigIntegerField(help_text="nano-USD per input token")
    output_price = models.BigIntegerField(help_text="nano-USD per output token")
    unit = models.CharField(
        max_length=32, choices=PriceUnit.choices, default=PriceUnit.NANO_USD_PER_TOKEN
    )
    effective_from = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("provider", "model", "-effective_from")
        constraints = (
            models.UniqueConstraint(
                fields=("provider", "model", "effective_from"), name="budget_price_unique_from"
            ),
            models.CheckConstraint(
                condition=Q(input_price__gte=0) & Q(output_price__gte=0),
                name="budget_price_not_negative",
            ),
        )

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.effective_from:%Y-%m-%d}"


class UnpricedModel(models.Model):
    """A model that was charged without a price of its own (at its provider's highest
    known price). The admin lists these until an operator sets a price."""

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=("provider", "model"), name="budget_unpriced_unique"),
        )

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


class BudgetLimit(TimestampedModel):
    """A spending limit and its policy for one period and one scope. `limit_nanos` None
    means no limit (the row then only carries a policy)."""

    period = models.CharField(max_length=10, choices=Period.choices)
    scope_kind = models.CharField(max_length=10, choices=ScopeKind.choices, default="all")
    scope_value = models.CharField(max_length=100, blank=True, default="")
    limit_nanos = models.BigIntegerField(null=True, blank=True)
    enforcement = models.CharField(max_length=10, choices=Policy.choices, default=Policy.WARN)
    start_date = models.DateField(default=timezone.localdate)

    class Meta:
        ordering = ("period", "scope_kind", "scope_value")
        constraints = (
            models.UniqueConstraint(
                fields=("period", "scope_kind", "scope_value"), name="budget_limit_unique_scope"
            ),
            models.CheckConstraint(
                condition=Q(limit_nanos__isnull=True) | Q(limit_nanos__gte=0),
                name="budget_limit_not_negative",
            ),
            models.CheckConstraint(
                condition=(Q(scope_kind="all") & Q(scope_value=""))
                | (~Q(scope_kind="all") & ~Q(scope_value="")),
                name="budget_limit_scope_value",
            ),
        )

    def __str__(self) -> str:
        return f"{self.period} {self.scope}"

    @property
    def scope(self) -> str:
        return "all" if self.scope_kind == "all" else f"{self.scope_kind}:{self.scope_value}"


class SpendCounter(models.Model):
    """What one scope spent (settled) and holds (reserved, in flight) in one window.

    Only ever changed by the single-statement UPDATEs of `budget.services.counters`. An
    operator's reset moves `baseline_nanos` up to `spent_nanos`; the window's usage is
    `spent - baseline`, and `spent_nanos` always equals the ledger's total for the scope
    and window.
    """

    period = models.CharField(max_length=10, choices=Period.choices)
    scope_kind = models.CharField(max_length=10, choices=ScopeKind.choices)
    scope_value = models.CharField(max_length=100, blank=True, default="")
    window_start = models.DateField()
    spent_nanos = models.BigIntegerField(default=0)
    reserved_nanos = models.BigIntegerField(default=0)
    baseline_nanos = models.BigIntegerField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=("period", "scope_kind", "scope_value", "window_start"),
                name="budget_counter_unique_window",
            ),
            models.CheckConstraint(
                condition=Q(spent_nanos__gte=0)
                & Q(reserved_nanos__gte=0)
                & Q(baseline_nanos__gte=0)
                & Q(baseline_nanos__lte=F("spent_nanos")),
                name="budget_counter_sane",
            ),
        )

    def __str__(self) -> str:
        scope = "all" if self.scope_kind == "all" else f"{self.scope_kind}:{self.scope_value}"
        return f"{self.period} {scope} {self.window_start}"

    @property
    def used_nanos(self) -> int:
        return self.spent_nanos - self.baseline_nanos


class BudgetReservation(models.Model):
    """The hold placed before a request goes upstream (mutable: held -> settled)."""

    class State(models.TextChoices):
        HELD = "held", "Held"
        SETTLED = "settled", "Settled"

    request_id = models.UUIDField()
    attempt = models.PositiveIntegerField(default=1)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    component = models.CharField(max_length=100, blank=True)
    task_type = models.CharField(max_length=100, blank=True)
    context_id = models.CharField(max_length=512, blank=True)  # as contexts.Context
    prompt_version_id = models.BigIntegerField(null=True, blank=True)
    input_tokens = models.PositiveBigIntegerField()
    max_tokens = models.PositiveBigIntegerField()
    reserved_nanos = models.BigIntegerField()
    price = models.ForeignKey(ModelPrice, on_delete=models.PROTECT, related_name="+")
    price_is_fallback = models.BooleanField(default=False)
    is_fallback = models.BooleanField(default=False)
    bypassed = models.BooleanField(default=False)
    # The keys (period, scope kind, scope value, window start) of the SpendCounters the
    # hold was placed on (released from the same rows at settle).
    held_counters = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.HELD)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=("request_id", "attempt"), name="budget_reservation_unique_attempt"
            ),
            models.CheckConstraint(
                condition=Q(reserved_nanos__gte=0), name="budget_reservation_not_negative"
            ),
        )
        indexes = (models.Index(fields=("state", "created_at"), name="budget_resv_state_idx"),)

    def __str__(self) -> str:
        return f"{self.request_id}#{self.attempt} {self.state}"


class UsageRecord(models.Model):
    """One request attempt as charged. Append-only (R7): created by `budget_settle`, never
    updated or deleted by any code path."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"

    class Source(models.TextChoices):
        PROVIDER = "provider", "Reported by the provider"
        PARTIAL = "partial", "Stream cut short (prompt + delivered tokens)"
        ESTIMATE = "estimate", "Estimated"
        NONE = "none", "Nothing reported (not charged)"

    request_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField(default=1)
    reservation = models.OneToOneField(
        BudgetReservation, on_delete=models.PROTECT, related_name="usage_record"
    )
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    component = models.CharField(max_length=100, blank=True)
    task_type = models.CharField(max_length=100, blank=True)
    context_id = models.CharField(max_length=512, blank=True)  # as contexts.Context
    # Ledger rows outlive prompts: no DB constraint, the id stays when a prompt goes.
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_nanos = models.BigIntegerField(default=0)
    reserved_nanos = models.BigIntegerField(default=0)
    price = models.ForeignKey(ModelPrice, on_delete=models.PROTECT, related_name="usage_records")
    price_is_fallback = models.BooleanField(
        default=False, help_text="No price of its own: charged at the provider's highest."
    )
    status = models.CharField(max_length=10, choices=Status.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    is_fallback = models.BooleanField(default=False)
    bypassed = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = (
            models.UniqueConstraint(
                fields=("request_id", "attempt"), name="budget_usage_unique_attempt"
            ),
            models.CheckConstraint(
                condition=Q(cost_nanos__gte=0), name="budget_usage_cost_not_negative"
            ),
        )
        indexes = (
            models.Index(fields=("provider", "created_at"), name="budget_usage_provider_idx"),
            models.Index(fields=("component", "created_at"), name="budget_usage_component_idx"),
            models.Index(fields=("model", "created_at"), name="budget_usage_model_idx"),
        )

    def __str__(self) -> str:
        return f"{self.request_id}#{self.attempt} {self.provider}/{self.model} {self.status}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class BudgetReset(models.Model):
    """Audit row of an operator's reset of a window: the counter's baseline moved from
    `baseline_before` to `spent_nanos`. No usage is deleted."""

    counter = models.ForeignKey(SpendCounter, on_delete=models.PROTECT, related_name="resets")
    period = models.CharField(max_length=10, choices=Period.choices)
    scope_kind = models.CharField(max_length=10, choices=ScopeKind.choices)
    scope_value = models.CharField(max_length=100, blank=True, default="")
    window_start = models.DateField()
    baseline_before = models.BigIntegerField()
    spent_nanos = models.BigIntegerField()
    actor = models.CharField(max_length=150, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"reset {self.period} {self.scope_kind}:{self.scope_value} {self.created_at}"

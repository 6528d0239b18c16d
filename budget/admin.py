"""The budget console: limits and prices editable (through the services), the ledger
read-only with totals and a bounded-cost paginator, and a spend page with charts."""

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from budget import charts, selectors, services
from budget.models import (
    BudgetLimit,
    BudgetReservation,
    BudgetReset,
    ModelPrice,
    SpendCounter,
    UnpricedModel,
    UsageRecord,
)
from budget.policies import PERIODS, AmountError, nanos_from_usd, tier_for, usd
from rhetor_site.errors import RhetorError

# --- Ledger helpers ------------------------------------------------------------------------


class CappedCountPaginator(Paginator[Any]):
    """Counts at most CAP + 1 rows (`SELECT COUNT(*) FROM (... LIMIT CAP+1)`), so a page of
    a ledger of millions of rows costs the same as one of thousands."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if isinstance(qs, QuerySet):
            return qs[: self.CAP + 1].count()
        return len(qs)


class PeriodFilter(admin.SimpleListFilter):
    title = "current window"
    parameter_name = "window"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(p, f"this {p[:-2] if p != 'daily' else 'day'}") for p in PERIODS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in PERIODS:
            start, end = selectors.window_range(period=str(self.value()))
            return queryset.filter(created_at__gte=start, created_at__lt=end)
        return queryset


class _ChoiceFromTableFilter(admin.SimpleListFilter):
    """Filter choices from the small price/counter tables, never a DISTINCT over the ledger."""

    field = ""

    def table_values(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(v, v) for v in sorted(set(self.table_values()))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class ProviderFilter(_ChoiceFromTableFilter):
    title = "provider"
    parameter_name = "provider"
    field = "provider"

    def table_values(self) -> list[str]:
        return list(ModelPrice.objects.values_list("provider", flat=True).distinct())


class ModelFilter(_ChoiceFromTableFilter):
    title = "model"
    parameter_name = "model"
    field = "model"

    def table_values(self) -> list[str]:
        priced = ModelPrice.objects.exclude(model="*").values_list("model", flat=True)
        flagged = UnpricedModel.objects.values_list("model", flat=True)
        return [*priced, *flagged]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """A model, or a price family and its dated releases (claude-3-haiku matches
        claude-3-haiku-20240307, not claude-3-haiku-x)."""
        value = self.value()
        if not value:
            return queryset
        dated = rf"^{re.escape(str(value))}-(\d{{8}}|\d{{4}}-\d{{2}}-\d{{2}}|latest)$"
        return queryset.filter(
            Q(model=value) | (Q(model__startswith=f"{value}-") & Q(model__regex=dated))
        )


class ComponentFilter(_ChoiceFromTableFilter):
    title = "component"
    parameter_name = "component"
    field = "component"

    def table_values(self) -> list[str]:
        return list(
            SpendCounter.objects.filter(scope_kind="component")
            .values_list("scope_value", flat=True)
            .distinct()
        )


class DayFilter(admin.SimpleListFilter):
    """One local day (RHETOR_TIMEZONE): "what did Ergon spend yesterday" is two clicks."""

    title = "day"
    parameter_name = "day"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("today", "today"), ("yesterday", "yesterday")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("today", "yesterday"):
            day = selectors.local_today()
            if self.value() == "yesterday":
                day -= dt.timedelta(days=1)
            start, end = selectors.day_range(day=day)
            return queryset.filter(created_at__gte=start, created_at__lt=end)
        return queryset


class PromptVersionFilter(admin.SimpleListFilter):
    """Choices from the prompt tables (each version as "<prompt> v<n>"), not the ledger."""

    title = "prompt version"
    parameter_name = "prompt_version"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from prompts.models import PromptVersion

        versions = PromptVersion.objects.select_related("prompt").order_by(
            "prompt__slug", "-version"
        )
        return [("none", "(no prompt)")] + [
            (str(v.pk), f"{v.prompt.slug} v{v.version}") for v in versions
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "none":
            return queryset.filter(prompt_version__isnull=True)
        if value and str(value).isdigit():
            return queryset.filter(prompt_version_id=int(value))
        return queryset


def _prompt_version_label(version: Any) -> str:
    return f"{version.prompt.slug} v{version.version}"


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "created_at",
        "provider",
        "model",
        "component",
        "task_type",
        "status",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "source",
        "is_fallback",
        "bypassed",
        "price_flag",
        "latency_ms",
        "context_link",
        "prompt_version_link",
    )
    list_filter = (
        DayFilter,
        PeriodFilter,
        ComponentFilter,
        ProviderFilter,
        ModelFilter,
        PromptVersionFilter,
        "status",
        "source",
    )
    list_select_related = ("price", "prompt_version__prompt")
    raw_id_fields = ("price", "reservation", "prompt_version")
    search_fields = ("=request_id", "=context_id")
    fields = (
        "created_at",
        "request_id",
        "attempt",
        "status",
        "error",
        "provider",
        "model",
        "component",
        "task_type",
        "context_link",
        "prompt_version_link",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "reserved_usd",
        "price",
        "price_is_fallback",
        "source",
        "is_fallback",
        "bypassed",
        "latency_ms",
        "other_attempts",
    )
    readonly_fields = fields
    date_hierarchy = "created_at"
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    change_list_template = "admin/budget/usagerecord/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    @admin.display(description="cost (USD)", ordering="cost_nanos")
    def cost_usd(self, obj: UsageRecord) -> str:
        return usd(obj.cost_nanos)

    @admin.display(description="unpriced", boolean=True)
    def price_flag(self, obj: UsageRecord) -> bool:
        return obj.price_is_fallback

    @admin.display(description="held (USD)")
    def reserved_usd(self, obj: UsageRecord) -> str:
        return usd(obj.reserved_nanos)

    @admin.display(description="context", ordering="context_id")
    def context_link(self, obj: UsageRecord) -> str:
        if not obj.context_id:
            return "-"
        from contexts.models import Context

        if hasattr(obj, "context_pk"):  # looked up for the whole page (changelist_view)
            pk = obj.context_pk
        else:
            pk = Context.objects.filter(context_id=obj.context_id).values_list("pk", flat=True)
            pk = pk.first()
        if pk is None:  # deleted since: the id stays in the ledger
            return obj.context_id
        url = reverse("admin:contexts_context_change", args=[pk])
        return format_html('<a href="{}">{}</a>', url, obj.context_id)

    @admin.display(description="prompt version")
    def prompt_version_link(self, obj: UsageRecord) -> str:
        if obj.prompt_version_id is None:
            return "-"
        version = obj.prompt_version
        if version is None:  # deleted since (no DB constraint): the id stays
            return f"#{obj.prompt_version_id}"
        url = reverse("admin:prompts_promptversion_change", args=[version.pk])
        return format_html('<a href="{}">{}</a>', url, _prompt_version_label(version))

    @admin.display(description="attempts of this request")
    def other_attempts(self, obj: UsageRecord) -> str:
        rows = UsageRecord.objects.filter(request_id=obj.request_id).order_by("attempt")
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">#{} {}/{}: {}</a>',
            (
                (
                    reverse("admin:budget_usagerecord_change", args=[r.pk]),
                    r.attempt,
                    r.provider,
                    r.model,
                    r.status,
                )
                for r in rows
            ),
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            totals = selectors.usage_totals(context["cl"].queryset.order_by())
            context["budget_totals"] = {
                "count": totals.count,
                "input_tokens": totals.input_tokens,
                "output_tokens": totals.output_tokens,
                "cost": usd(totals.cost_nanos),
            }
            context["budget_breakdowns"] = self.breakdowns(context["cl"].queryset)
            self.attach_contexts(context["cl"].result_list)
        return response

    def attach_contexts(self, rows: Any) -> None:
        """One query for the page's context links instead of one per row."""
        from contexts.models import Context

        ids = {r.context_id for r in rows if r.context_id}
        pks = dict(Context.objects.filter(context_id__in=ids).values_list("context_id", "pk"))
        for row in rows:
            row.context_pk = pks.get(row.context_id)

    def breakdowns(self, qs: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
        """The filtered records' totals per model and per prompt version."""
        from prompts.models import PromptVersion

        by_version = selectors.usage_breakdown(qs, field="prompt_version")
        versions = PromptVersion.objects.select_related("prompt").in_bulk(
            [k for k, _ in by_version if k is not None]
        )

        def version_label(pk: int | None) -> str:
            if pk is None:
                return "(no prompt)"
            return _prompt_version_label(versions[pk]) if pk in versions else f"#{pk}"

        return [
            {
                "title": title,
                "rows": [
                    {
                        "label": label(key),
                        "count": t.count,
                        "tokens": t.total_tokens,
                        "cost": usd(t.cost_nanos),
                    }
                    for key, t in rows
                ],
            }
            for title, rows, label in (
                ("By model", selectors.usage_breakdown(qs, field="model"), str),
                ("By prompt version", by_version, version_label),
            )
        ]

    def get_urls(self) -> list[URLPattern]:
        spend = path(
            "spend/",
            self.admin_site.admin_view(self.spend_view),
            name="budget_usagerecord_spend",
        )
        return [spend, *super().get_urls()]

    def spend_view(self, request: HttpRequest) -> HttpResponse:
        days, by_provider = selectors.daily_spend_by(field="provider", days=30)
        _, by_component = selectors.daily_spend_by(field="component", days=30)
        status = selectors.budget_status()
        context = {
            **self.admin_site.each_context(request),
            "title": "Spend",
            "opts": self.model._meta,
            "daily": charts.stacked_daily(days=days, series=by_provider),
            "components": charts.horizontal(values={k: sum(v) for k, v in by_component.items()}),
            "status_rows": [
                {
                    "period": p.period,
                    "window_start": p.window_start,
                    "used": usd(p.usage_nanos),
                    "held": usd(p.reserved_nanos),
                    "limit": "no limit" if p.limit_nanos is None else usd(p.limit_nanos),
                    "percentage": p.percentage,
                    "policy": p.policy,
                }
                for p in (status.daily, status.weekly, status.monthly)
            ],
            "first_day": days[0],
            "last_day": days[-1],
        }
        return TemplateResponse(request, "admin/budget/spend.html", context)


# --- Limits ---------------------------------------------------------------------------------


class BudgetLimitForm(forms.ModelForm):  # type: ignore[type-arg]
    limit_usd = forms.DecimalField(
        label="Limit (USD)",
        required=False,
        min_value=Decimal(0),
        decimal_places=9,
        help_text="Empty: no limit (the scope is tracked, and its policy kept).",
    )

    class Meta:
        model = BudgetLimit
        fields = ("period", "scope_kind", "scope_value", "enforcement")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.limit_nanos is not None:
            self.initial["limit_usd"] = Decimal(usd(self.instance.limit_nanos))

    def clean_limit_usd(self) -> int | None:
        value = self.cleaned_data.get("limit_usd")
        if value is None:
            return None
        try:
            return nanos_from_usd(value)
        except AmountError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(BudgetLimit)
class BudgetLimitAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = BudgetLimitForm
    list_display = ("period", "scope_display", "limit_display", "enforcement", "start_date")
    list_filter = ("period", "scope_kind", "enforcement")
    search_fields = ("scope_value",)
    list_editable = ("enforcement",)
    list_display_links = ("period", "scope_display")

    @admin.display(description="scope")
    def scope_display(self, obj: BudgetLimit) -> str:
        return obj.scope

    @admin.display(description="limit (USD)", ordering="limit_nanos")
    def limit_display(self, obj: BudgetLimit) -> str:
        return "no limit" if obj.limit_nanos is None else usd(obj.limit_nanos)

    def save_model(self, request: HttpRequest, obj: BudgetLimit, form: Any, change: bool) -> None:
        try:
            saved = services.budget_limit_set(
                period=obj.period,
                limit_nanos=form.cleaned_data.get("limit_usd"),
                scope_kind=obj.scope_kind,
                scope_value=obj.scope_value,
                enforcement=obj.enforcement,
            )
        except RhetorError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return
        obj.pk = saved.pk


# --- Prices ------------------------------------------------------------------------------------


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "provider",
        "model",
        "input_per_1m",
        "output_per_1m",
        "tier",
        "effective_from",
        "is_current",
        "source",
    )
    list_filter = ("provider",)
    search_fields = ("provider", "model")
    ordering = ("provider", "model", "-effective_from")
    fields = (
        "provider",
        "model",
        "input_price",
        "output_price",
        "unit",
        "effective_from",
        "source",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: ModelPrice | None = None) -> Any:
        if obj is not None and obj.usage_records.exists():
            # Usage was charged at this price: it is history now. Add a newer row instead.
            return self.fields
        return ("unit",)

    @admin.display(description="input USD / 1M tokens", ordering="input_price")
    def input_per_1m(self, obj: ModelPrice) -> str:
        return usd(obj.input_price * 1_000_000)

    @admin.display(description="output USD / 1M tokens", ordering="output_price")
    def output_per_1m(self, obj: ModelPrice) -> str:
        return usd(obj.output_price * 1_000_000)

    @admin.display(description="tier")
    def tier(self, obj: ModelPrice) -> str:
        return tier_for(input_price=obj.input_price, output_price=obj.output_price)

    @admin.display(description="current", boolean=True)
    def is_current(self, obj: ModelPrice) -> bool:
        quote = selectors.model_price_get(provider=obj.provider, model=obj.model)
        return quote is not None and quote.price.pk == obj.pk

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        try:
            saved = services.model_price_set(
                provider=obj.provider,
                model=obj.model,
                input_price=obj.input_price,
                output_price=obj.output_price,
                effective_from=obj.effective_from,
                source=obj.source,
            )
        except RhetorError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return
        obj.pk = saved.pk


@admin.register(UnpricedModel)
class UnpricedModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Models charged at a fallback price: set a price (Model prices, or `set_price`)."""

    list_display = ("provider", "model", "first_seen_at", "charged_at", "priced_now")
    readonly_fields = ("provider", "model", "first_seen_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="charged at")
    def charged_at(self, obj: UnpricedModel) -> str:
        quote = selectors.model_price_get(provider=obj.provider, model=obj.model)
        if quote is None:
            return "-"
        return f"{quote.price.provider}/{quote.price.model}"

    @admin.display(description="has its own price now", boolean=True)
    def priced_now(self, obj: UnpricedModel) -> bool:
        quote = selectors.model_price_get(provider=obj.provider, model=obj.model)
        return quote is not None and not quote.is_fallback


# --- Audit and internals (read-only) -------------------------------------------------------------


class _ReadOnlyAdmin:
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BudgetReset)
class BudgetResetAdmin(_ReadOnlyAdmin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "created_at",
        "period",
        "scope_kind",
        "scope_value",
        "window_start",
        "moved_usd",
        "actor",
        "note",
    )
    list_filter = ("period", "scope_kind")
    list_select_related = ("counter",)
    raw_id_fields = ("counter",)

    @admin.display(description="no longer counted (USD)")
    def moved_usd(self, obj: BudgetReset) -> str:
        return usd(obj.spent_nanos - obj.baseline_before)


@admin.register(SpendCounter)
class SpendCounterAdmin(_ReadOnlyAdmin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "period",
        "scope_kind",
        "scope_value",
        "window_start",
        "used_usd",
        "reserved_usd",
    )
    list_filter = ("period", "scope_kind")
    ordering = ("-window_start", "period", "scope_kind", "scope_value")

    @admin.display(description="used (USD)")
    def used_usd(self, obj: SpendCounter) -> str:
        return usd(obj.used_nanos)

    @admin.display(description="held (USD)")
    def reserved_usd(self, obj: SpendCounter) -> str:
        return usd(obj.reserved_nanos)


@admin.register(BudgetReservation)
class BudgetReservationAdmin(_ReadOnlyAdmin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "created_at",
        "request_id",
        "attempt",
        "provider",
        "model",
        "state",
        "reserved_usd",
        "bypassed",
    )
    list_filter = ("state", "bypassed", "provider")
    list_select_related = ("price",)
    raw_id_fields = ("price",)
    search_fields = ("=request_id", "=context_id", "model")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description="held (USD)")
    def reserved_usd(self, obj: BudgetReservation) -> str:
        return usd(obj.reserved_nanos)

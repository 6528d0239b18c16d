"""The contexts console: conversations searchable by id and component, their latest
messages and summaries inline and read-only, deletion through the service; model windows
editable (the request path reads them within WINDOW_CACHE_TTL seconds)."""

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from contexts import services
from contexts.errors import ContextNotFound
from contexts.models import Context, ContextSummary, EngramOutbox, Message, ModelContextWindow
from contexts.selectors import context_window_clear_cache

INLINE_MESSAGES = 200


class _LatestMessagesFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """Only the latest INLINE_MESSAGES messages (by seq), so a 100,000-message context
    still renders; the rest are in the Message list, filtered by context."""

    def get_queryset(self) -> QuerySet[Message]:
        queryset: QuerySet[Message] = super().get_queryset()
        floor = max(0, self.instance.message_count - INLINE_MESSAGES)
        return queryset.filter(seq__gte=floor).order_by("seq")


class _ReadOnlyInline:
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(_ReadOnlyInline, admin.TabularInline[Message, Context]):
    model = Message
    formset = _LatestMessagesFormSet
    fields = ("seq", "role", "content", "tokens", "token_source", "model", "archived", "created_at")
    readonly_fields = fields
    ordering = ("seq",)
    verbose_name_plural = f"messages (the latest {INLINE_MESSAGES})"


class SummaryInline(_ReadOnlyInline, admin.TabularInline[ContextSummary, Context]):
    model = ContextSummary
    fk_name = "context"
    fields = ("kind", "first_seq", "last_seq", "message_count", "source", "model", "content")
    readonly_fields = fields
    ordering = ("created_at",)


@admin.action(description="Delete the selected contexts with their messages")
def delete_contexts(modeladmin: "ContextAdmin", request: HttpRequest, queryset: Any) -> None:
    deleted = 0
    for context_id in queryset.values_list("context_id", flat=True):
        try:
            services.context_delete(context_id=context_id)
        except ContextNotFound:
            continue
        deleted += 1
    modeladmin.message_user(request, f"Deleted {deleted} context(s).", messages.SUCCESS)


@admin.register(Context)
class ContextAdmin(admin.ModelAdmin[Context]):
    list_display = (
        "context_id",
        "component",
        "active_messages",
        "archived_message_count",
        "summary_count",
        "token_count",
        "updated_at",
        "usage_link",
    )
    list_filter = ("component",)
    search_fields = ("context_id", "component")
    ordering = ("-updated_at",)
    date_hierarchy = "updated_at"
    show_full_result_count = False
    list_select_related = ("latest_summary",)
    raw_id_fields = ("latest_summary",)
    readonly_fields = (
        "context_id",
        "component",
        "message_count",
        "archived_message_count",
        "token_count",
        "summary_count",
        "latest_summary_text",
        "usage_link",
        "metadata",
        "created_at",
        "updated_at",
    )
    exclude = ("latest_summary",)
    inlines = (SummaryInline, MessageInline)
    actions = (delete_contexts,)

    @admin.display(description="active messages")
    def active_messages(self, obj: Context) -> int:
        return obj.active_message_count

    @admin.display(description="usage")
    def usage_link(self, obj: Context) -> str:
        url = reverse("admin:budget_usagerecord_changelist")
        return format_html(
            '<a href="{}?{}">usage ledger</a>', url, urlencode({"context_id": obj.context_id})
        )

    @admin.display(description="latest summary")
    def latest_summary_text(self, obj: Context) -> str:
        return obj.latest_summary.content if obj.latest_summary else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a conversation is viewed, never edited

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletion goes through the service
        return actions

    def delete_model(self, request: HttpRequest, obj: Context) -> None:
        services.context_delete(context_id=obj.context_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Context]) -> None:
        for context_id in queryset.values_list("context_id", flat=True):
            try:
                services.context_delete(context_id=context_id)
            except ContextNotFound:
                continue


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin[Message]):
    list_display = ("context", "seq", "role", "tokens", "model", "archived", "created_at")
    list_filter = ("role", "archived")
    search_fields = ("context__context_id",)
    list_select_related = ("context",)
    raw_id_fields = ("context", "archive")
    show_full_result_count = False
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelContextWindow)
class ModelContextWindowAdmin(admin.ModelAdmin[ModelContextWindow]):
    list_display = ("provider", "model", "context_window", "updated_at")
    list_editable = ("context_window",)
    list_filter = ("provider",)
    search_fields = ("provider", "model")
    ordering = ("provider", "model")

    def save_model(
        self, request: HttpRequest, obj: ModelContextWindow, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        context_window_clear_cache()


@admin.register(EngramOutbox)
class EngramOutboxAdmin(admin.ModelAdmin[EngramOutbox]):
    list_display = ("context_key", "version", "attempts", "next_attempt_at", "last_error")
    search_fields = ("context_key",)
    ordering = ("next_attempt_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""The llm app's console: task routes (edited through the services, which validate them
against the provider catalogues and make every worker reload), the default model, and the
dashboard as the admin's front page (llm.dashboard)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from llm import services
from llm.models import DefaultModel, TaskRoute
from llm.providers import PROVIDER_ORDER
from llm.routes import Target
from llm.selectors import default_model_get

admin.site.index_template = "admin/rhetor_index.html"
admin.site.site_header = "Rhetor operator console"
admin.site.site_title = "Rhetor"
admin.site.index_title = "Dashboard"

FALLBACK_FORMAT = "One provider/model per line, tried in order, e.g. openai/gpt-4o."


def parse_fallback_chain(text: str) -> list[Target]:
    targets = []
    for number, line in enumerate(text.replace(",", "\n").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        provider, sep, model = line.partition("/")
        if not sep or not provider.strip() or not model.strip():
            raise ValidationError(f"Line {number} ({line!r}): expected provider/model.")
        targets.append(Target(provider.strip(), model.strip()))
    return targets


class TaskRouteForm(forms.ModelForm[TaskRoute]):
    provider = forms.ChoiceField(choices=[(p, p) for p in PROVIDER_ORDER])
    fallbacks = forms.CharField(
        label="Fallback chain",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 50}),
        help_text=FALLBACK_FORMAT,
    )

    class Meta:
        model = TaskRoute
        fields = (
            "name",
            "provider",
            "model",
            "temperature",
            "max_tokens",
            "fallbacks",
            "lower_max_tokens",
            "description",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["fallbacks"] = "\n".join(
                f"{f['provider']}/{f['model']}" for f in self.instance.fallbacks
            )

    def clean_fallbacks(self) -> list[dict[str, str]]:
        chain = parse_fallback_chain(self.cleaned_data.get("fallbacks") or "")
        return [{"provider": t.provider, "model": t.model} for t in chain]


@admin.register(TaskRoute)
class TaskRouteAdmin(admin.ModelAdmin[TaskRoute]):
    form = TaskRouteForm
    list_display = (
        "name",
        "target",
        "temperature",
        "max_tokens",
        "fallback_chain",
        "lower_max_tokens",
        "updated_at",
    )
    list_filter = ("provider", "lower_max_tokens")
    search_fields = ("name", "model", "description")
    ordering = ("name",)
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: TaskRoute | None = None) -> Any:
        if obj is not None and obj.name == "default":
            return ("name", "default_model_note", *self.readonly_fields)
        if obj is not None:  # a route's name is what requests look it up by
            return ("name", *self.readonly_fields)
        return self.readonly_fields

    @admin.display(description="POST /provider choice")
    def default_model_note(self, obj: TaskRoute) -> str:
        chosen = default_model_get()
        if chosen is None:
            return "none: this route's model serves the requests no other route claims"
        return (
            f"{chosen}: it answers the requests this route would, while its provider is "
            "available (delete it under Default models to use this route's model)"
        )

    @admin.display(description="provider/model", ordering="provider")
    def target(self, obj: TaskRoute) -> str:
        return f"{obj.provider}/{obj.model}"

    @admin.display(description="fallback chain")
    def fallback_chain(self, obj: TaskRoute) -> str:
        return " → ".join(f"{f['provider']}/{f['model']}" for f in obj.fallbacks) or "-"

    def has_delete_permission(self, request: HttpRequest, obj: TaskRoute | None = None) -> bool:
        if obj is not None and obj.name == "default":
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: TaskRoute, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "provider": data["provider"],
            "model": data["model"],
            "temperature": data.get("temperature"),
            "max_tokens": data.get("max_tokens"),
            "fallbacks": [Target(f["provider"], f["model"]) for f in data["fallbacks"]],
            "lower_max_tokens": data.get("lower_max_tokens", False),
            "description": data.get("description", ""),
        }
        try:
            if change:
                saved = services.task_route_update(route=TaskRoute.objects.get(pk=obj.pk), **fields)
            else:
                saved = services.task_route_create(name=data["name"], **fields)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), level=messages.ERROR)
            return
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: TaskRoute) -> None:
        try:
            services.task_route_delete(route=obj)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), level=messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TaskRoute]) -> None:
        for route in queryset:
            self.delete_model(request, route)


@admin.register(DefaultModel)
class DefaultModelAdmin(admin.ModelAdmin[DefaultModel]):
    """The POST /provider choice: it serves the `default` route while it is set and its
    provider is available (change it with POST /provider, or delete it here)."""

    list_display = ("provider", "model", "updated_at")
    readonly_fields = ("provider", "model", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: DefaultModel) -> None:
        services.default_model_delete()  # every worker's route table drops it

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DefaultModel]) -> None:
        services.default_model_delete()

"""API keys in the operator console. The secret is shown once, on the page that follows
"Save" of a new key, and stored only as a hash; lists and forms show the prefix only."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from access import services
from access.errors import ApiKeyInvalid
from access.keycache import forget_key
from access.models import SCOPES, ApiKey


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES], widget=forms.CheckboxSelectMultiple
    )
    components = forms.CharField(
        required=False,
        help_text="Comma separated, e.g. ergon. Empty: the key may act as any component.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "components", "requests_per_minute", "tokens_per_minute"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["components"] = ", ".join(self.instance.components or [])

    def clean_components(self) -> list[str]:
        try:
            return services.components_parse(self.cleaned_data.get("components") or "")
        except ApiKeyInvalid as exc:
            raise forms.ValidationError(exc.message) from exc


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    form = ApiKeyForm
    list_display = [
        "name",
        "prefix_display",
        "scopes_display",
        "components_display",
        "created_at",
        "last_used_at",
        "status_display",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_id"]
    readonly_fields = ["prefix_display", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    @admin.display(description="prefix")
    def prefix_display(self, obj: ApiKey) -> str:
        return obj.prefix if obj.pk else "(made when you save)"

    @admin.display(description="scopes")
    def scopes_display(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes or [])

    @admin.display(description="components")
    def components_display(self, obj: ApiKey) -> str:
        return ", ".join(obj.components or []) or "any"

    @admin.display(description="status")
    def status_display(self, obj: ApiKey) -> str:
        return "revoked" if obj.revoked_at else "active"

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the row keeps who had access and when

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            forget_key(obj.key_id)
            return
        created = services.api_key_create(
            name=obj.name,
            scopes=form.cleaned_data["scopes"],
            components=form.cleaned_data["components"],
            requests_per_minute=obj.requests_per_minute,
            tokens_per_minute=obj.tokens_per_minute,
            created_by=request.user.get_username(),
        )
        obj.pk = created.key.pk
        obj.key_id = created.key.key_id
        request._rhetor_new_token = created.token  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        token = getattr(request, "_rhetor_new_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "key": obj,
            "token": token,
            "opts": self.opts,
        }
        response = TemplateResponse(request, "admin/access/apikey_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        for key in keys:
            forget_key(key.key_id)
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)

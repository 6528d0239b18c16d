"""The operator's prompt editor.

Templates and prompts are edited as a whole: the content sits in a large monospace
editor, and saving creates a new version through the services (with a change note). The
version history is inline and read-only, with a diff between any two versions, a render
preview and, for prompts, "make this version active" and one-click rollback.
Versions themselves are never edited (R7, R16).

The editor is written once, for any versioned text (`VersionedForm`, `VersionHistoryInline`,
`VersionedAdmin`, `AppendOnlyVersionAdmin`); the template and prompt admins add their own
fields and say which services save them.
"""

from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from prompts import selectors, services
from prompts.comparison import diff_line_kind, unified_diff
from prompts.errors import ContentInvalid
from prompts.models import (
    Engine,
    Personality,
    Prompt,
    PromptActivation,
    PromptVersion,
    Template,
    TemplateVersion,
    TextVersion,
    VersionedText,
    spec_list,
)
from prompts.rendering import normalize_variables, render
from rhetor_site.errors import RhetorError

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups
    from django_stubs_ext import WithAnnotations

EDITOR_ATTRS = {
    "rows": 24,
    "class": "vLargeTextField rhetor-editor",
    "style": "font-family: ui-monospace, Menlo, Consolas, monospace; width: 95%;",
    "spellcheck": "false",
}
VARIABLES_HELP = (
    'Optional declarations, e.g. {"topic": {"type": "string", "required": true}, '
    '"limit": {"type": "integer", "default": 3}}. Names used in the content and not '
    "declared are required. Types: string, integer, number, boolean, list, object, any."
)


def _actor(request: HttpRequest) -> str:
    return request.user.get_username() or "admin"


def _dollars(nanos: int | None) -> str:
    return f"${Decimal(nanos or 0) / Decimal(10**9):.6f}"


def _new_version(request: HttpRequest, data: dict[str, Any]) -> services.NewVersion:
    """The version an editor or Add form describes, written by the operator."""
    return {
        "content": data["content"],
        "variables": data["variables"],
        "engine": data["engine"],
        "created_by": _actor(request),
        "change_note": data["change_note"],
    }


# --- Versioned texts (the editor both admins share) ---------------------------------------


class VersionedForm(forms.ModelForm):  # type: ignore[type-arg]
    """Adds the fields of the next version to a template or prompt form."""

    content = forms.CharField(widget=forms.Textarea(attrs=EDITOR_ATTRS), strip=False)
    engine = forms.ChoiceField(choices=Engine.choices, initial=Engine.SIMPLE)
    variables = forms.JSONField(required=False, help_text=VARIABLES_HELP)
    change_note = forms.CharField(
        max_length=500, required=False, help_text="What changed and why (kept with the version)."
    )

    def latest_version(self) -> TextVersion | None:
        text: VersionedText = self.instance
        return text.versions.order_by("-version").first()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "slug" in self.fields:
            self.fields["slug"].required = False
        latest = self.latest_version() if self.instance.pk else None
        if latest is not None:
            self.fields["content"].initial = latest.content
            self.fields["engine"].initial = latest.engine
            implicit = {"type": "any", "required": True, "default": None, "description": ""}
            declared = [
                spec
                for spec in spec_list(latest.variables)
                if {k: v for k, v in spec.items() if k != "name"} != implicit
            ]
            self.fields["variables"].initial = declared or None
            self.fields["content"].help_text = (
                f"Editing creates version {latest.version + 1}; version {latest.version} is "
                "the latest."
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "content" in data and "engine" in data:
            try:
                normalize_variables(
                    content=data["content"], engine=data["engine"], declared=data.get("variables")
                )
            except ContentInvalid as exc:
                self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data

    def version_changed(self) -> bool:
        latest = self.latest_version()
        if latest is None:
            return True
        return (
            self.cleaned_data["content"] != latest.content
            or self.cleaned_data["engine"] != latest.engine
            or "variables" in self.changed_data
        )


class VersionAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """The Add form of a version admin; each kind's Meta names its text's field first."""

    content = forms.CharField(widget=forms.Textarea(attrs=EDITOR_ATTRS), strip=False)
    variables = forms.JSONField(required=False, help_text=VARIABLES_HELP)


class PreviewForm(forms.Form):
    version = forms.TypedChoiceField(coerce=int, required=False)
    variables = forms.JSONField(required=False, initial=dict, help_text="Sample values (JSON).")
    content = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={**EDITOR_ATTRS, "rows": 12}),
        help_text="Leave empty to preview the chosen version; or paste unsaved text to try it.",
    )
    engine = forms.ChoiceField(choices=Engine.choices, initial=Engine.SIMPLE)


class VersionHistoryInline(admin.TabularInline):  # type: ignore[type-arg]
    """Read-only history of versions, newest first. Each kind lists its columns (tuples:
    the same names serve as `fields` and `readonly_fields`) and its `actions` column."""

    extra = 0
    can_delete = False
    verbose_name_plural = "version history (read-only; edit the content above to add one)"
    show_change_link = False
    ordering = ["-version"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related(self.model.owner_field)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Excerpt")
    def excerpt(self, version: TextVersion) -> str:
        text = version.content.strip().replace("\n", " ")
        return text[:80] + ("…" if len(text) > 80 else "")


class VersionedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The editor of a versioned text: saves through the services, and adds the diff and
    preview views. A kind says how its text is created and updated (`text_create`,
    `text_update`) and how the editor's content becomes a version (`version_save`)."""

    change_form_template = "admin/prompts/versioned_change_form.html"
    search_fields = ["slug", "name", "description"]

    def text_create(self, data: dict[str, Any], first: services.NewVersion) -> VersionedText:
        raise NotImplementedError

    def text_update(self, obj: Any) -> None:
        """Save `obj`'s own fields, which the form has already set on it."""
        raise NotImplementedError

    def version_save(self, request: HttpRequest, obj: Any, form: Any) -> None:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new text is created with its version 1; an existing one gets its own fields
        saved, then the editor's version. A refused save is reported to the operator."""
        data = form.cleaned_data
        try:
            if change:
                self.text_update(obj)
                self.version_save(request, obj, form)
                return
            created = self.text_create(data, _new_version(request, data))
        except RhetorError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk, obj.slug = created.pk, created.slug
        obj._state.adding = False

    def versions(self, obj: Any) -> list[Any]:
        return list(obj.versions.order_by("-version"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["slug"] if obj is not None else []

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Versions and activations cannot be deleted on their own, but they go with the
        # template or prompt they belong to.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        owned = {
            str(m._meta.verbose_name) for m in (TemplateVersion, PromptVersion, PromptActivation)
        }
        return deleted, counts, perms_needed - owned, protected

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/diff/", view(self.diff_view), name=f"{name}_diff"),
            path("<path:object_id>/preview/", view(self.preview_view), name=f"{name}_preview"),
            *self.extra_urls(),
            *super().get_urls(),
        ]

    def extra_urls(self) -> list[URLPattern]:
        return []

    def _object_or_404(self, request: HttpRequest, object_id: str) -> Any:
        obj = get_object_or_404(self.model, pk=object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._object_or_404(request, object_id)
        versions = {v.version: v for v in self.versions(obj)}
        numbers = sorted(versions)

        def pick(key: str, fallback: int) -> int:
            try:
                value = int(request.GET.get(key, fallback))
            except ValueError:
                value = fallback
            return value if value in versions else fallback

        b = pick("b", numbers[-1])
        a = pick("a", max((n for n in numbers if n < b), default=b))
        lines = unified_diff(
            versions[a].content,
            versions[b].content,
            label_before=f"{obj.slug} v{a}",
            label_after=f"{obj.slug} v{b}",
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": f"Compare versions of {obj.slug}",
            "numbers": numbers,
            "a": a,
            "b": b,
            "version_a": versions[a],
            "version_b": versions[b],
            "lines": [(diff_line_kind(line), line) for line in lines],
            "identical": versions[a].content == versions[b].content,
            "activate_url": self.activate_url(obj, b),
        }
        return TemplateResponse(request, "admin/prompts/diff.html", context)

    def activate_url(self, obj: Any, version: int) -> str | None:
        return None

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._object_or_404(request, object_id)
        versions = self.versions(obj)
        current = self.current_version(obj)
        form = PreviewForm(
            request.POST or None,
            initial={"version": current.version, "variables": {}, "engine": current.engine},
        )
        version_field = cast(forms.TypedChoiceField, form.fields["version"])  # see PreviewForm
        version_field.choices = [(v.version, f"v{v.version}") for v in versions]
        result: str | None = None
        error: dict[str, Any] | None = None
        if form.is_valid():
            by_number = {v.version: v for v in versions}
            chosen = by_number.get(form.cleaned_data["version"] or current.version, current)
            values = form.cleaned_data["variables"] or {}
            try:
                if not isinstance(values, dict):
                    raise ContentInvalid("Sample variables must be a JSON object.", field="vars")
                if form.cleaned_data["content"]:
                    result = render(
                        content=form.cleaned_data["content"],
                        engine=form.cleaned_data["engine"],
                        values=values,
                    )
                else:
                    result = render(
                        content=chosen.content,
                        engine=chosen.engine,
                        variables=chosen.variables,
                        values=values,
                    )
            except RhetorError as exc:
                error = exc.as_body()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": f"Preview {obj.slug}",
            "form": form,
            "result": result,
            "error": error,
            "variables": spec_list(current.variables),
        }
        return TemplateResponse(request, "admin/prompts/preview.html", context)

    def current_version(self, obj: Any) -> Any:
        return obj.versions.order_by("-version").first()


class AppendOnlyVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Existing versions are read-only; Add goes through the kind's version service
    (`version_create`) with its `add_form`."""

    list_display = ["__str__", "version", "engine", "created_at", "created_by", "change_note"]
    date_hierarchy = "created_at"
    add_fields: ClassVar["_FieldGroups"] = ["content", "engine", "variables", "change_note"]
    add_form: type[VersionAddForm]

    def version_create(self, data: dict[str, Any], fields: services.NewVersion) -> TextVersion:
        raise NotImplementedError

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return [f.name for f in self.model._meta.fields]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> "_FieldGroups":
        if obj is None:
            return self.add_fields
        return [f.name for f in self.model._meta.fields if f.name != "id"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Any]]:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            created = self.version_create(data, _new_version(request, data))
        except RhetorError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = created.pk
        obj._state.adding = False


# --- Templates ---------------------------------------------------------------------------


class TemplateForm(VersionedForm):
    class Meta:
        model = Template
        fields = ["slug", "name", "category", "description", "tags"]


class TemplateVersionInline(VersionHistoryInline):
    model = TemplateVersion
    fields = readonly_fields = (
        "version",
        "created_at",
        "created_by",
        "change_note",
        "excerpt",
        "actions",
    )

    @admin.display(description="Compare")
    def actions(self, version: TemplateVersion) -> str:
        diff = reverse("admin:prompts_template_diff", args=[version.template_id])
        return format_html(
            '<a href="{}?a={}&amp;b={}">diff with previous</a>',
            diff,
            max(version.version - 1, 1),
            version.version,
        )


@admin.register(Template)
class TemplateAdmin(VersionedAdmin):
    form = TemplateForm
    list_display = ["slug", "name", "category", "version_total", "updated_at"]
    list_filter = ["category"]
    inlines = [TemplateVersionInline]

    @admin.display(description="Versions")
    def version_total(self, obj: Template) -> int:
        return obj.versions.count()

    def delete_model(self, request: HttpRequest, obj: Template) -> None:
        services.template_delete(template=obj)

    def text_create(self, data: dict[str, Any], first: services.NewVersion) -> Template:
        return services.template_create(
            template_id=data["slug"] or None,
            name=data["name"],
            category=data["category"],
            description=data["description"],
            tags=data["tags"],
            **first,
        )

    def text_update(self, obj: Template) -> None:
        services.template_update(template=obj)

    def version_save(self, request: HttpRequest, obj: Template, form: Any) -> None:
        if form.version_changed():
            version = services.template_version_create(
                template=obj, **_new_version(request, form.cleaned_data)
            )
            self.message_user(request, f"Saved version {version.version}.", messages.SUCCESS)


class TemplateVersionAddForm(VersionAddForm):
    class Meta:
        model = TemplateVersion
        fields = ["template", "content", "engine", "variables", "change_note"]


@admin.register(TemplateVersion)
class TemplateVersionAdmin(AppendOnlyVersionAdmin):
    list_select_related = ["template"]
    raw_id_fields = ["template"]
    list_filter = ["template__category"]
    add_fields = ["template", *AppendOnlyVersionAdmin.add_fields]
    add_form = TemplateVersionAddForm

    def version_create(self, data: dict[str, Any], fields: services.NewVersion) -> TextVersion:
        return services.template_version_create(template=data["template"], **fields)


# --- Prompts -----------------------------------------------------------------------------


class PromptForm(VersionedForm):
    activate = forms.BooleanField(
        required=False,
        help_text="Make the new version active now. Leave unticked to review the diff first.",
    )

    class Meta:
        model = Prompt
        fields = [
            "slug",
            "name",
            "component",
            "task_type",
            "description",
            "tags",
            "is_default",
            "parent",
            "personality",
        ]


class PromptVersionInline(VersionHistoryInline):
    model = PromptVersion
    fields = readonly_fields = (
        "version",
        "status",
        "created_at",
        "created_by",
        "change_note",
        "excerpt",
        "usage",
        "actions",
    )
    fk_name = "prompt"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromptVersion]:
        return selectors.prompt_version_usage_annotate(super().get_queryset(request))

    @admin.display(description="Status")
    def status(self, version: PromptVersion) -> str:
        return "ACTIVE" if version.prompt.active_version_id == version.pk else ""

    @admin.display(description="Usage (requests / tokens / cost)")
    def usage(self, version: PromptVersion) -> str:
        if not hasattr(version, "usage_requests"):
            return "—"
        # get_queryset's prompt_version_usage_annotate adds the four usage columns together.
        annotated = cast("WithAnnotations[PromptVersion, selectors.PromptVersionUsage]", version)
        tokens = annotated.usage_input_tokens + annotated.usage_output_tokens
        text = f"{annotated.usage_requests} / {tokens} / {_dollars(annotated.usage_cost_nanos)}"
        if not annotated.usage_requests:
            return text
        ledger = reverse("admin:budget_usagerecord_changelist")
        return format_html('<a href="{}?prompt_version={}">{}</a>', ledger, version.pk, text)

    @admin.display(description="Actions")
    def actions(self, version: PromptVersion) -> str:
        prompt = version.prompt
        diff = reverse("admin:prompts_prompt_diff", args=[prompt.pk])
        active = prompt.active_version.version if prompt.active_version else version.version
        links = format_html(
            '<a href="{}?a={}&amp;b={}">diff with active</a>', diff, active, version.version
        )
        if prompt.active_version_id == version.pk:
            return links
        activate = reverse("admin:prompts_prompt_activate", args=[prompt.pk, version.version])
        # A submit button with formaction posts the change form's CSRF token to the
        # activation view: one click, no nested form.
        return format_html(
            '{} <button type="submit" class="button" formaction="{}" formmethod="post" '
            'name="_activate" formnovalidate>Make this version active</button>',
            links,
            activate,
        )


@admin.register(Prompt)
class PromptAdmin(VersionedAdmin):
    form = PromptForm
    list_display = [
        "slug",
        "name",
        "component",
        "task_type",
        "is_default",
        "active_number",
        "updated_at",
    ]
    list_filter = ["component", "is_default"]
    list_select_related = ["active_version", "parent"]
    raw_id_fields = ["parent"]
    search_fields = ["slug", "name", "component", "description"]
    inlines = [PromptVersionInline]

    def has_delete_permission(self, request: HttpRequest, obj: Prompt | None = None) -> bool:
        # A component's default prompt stays (requests rely on it); see prompt_delete.
        if obj is not None and obj.is_default:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Prompt) -> None:
        services.prompt_delete(prompt=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> None:
        kept = []
        for prompt in queryset:
            try:
                services.prompt_delete(prompt=prompt)
            except RhetorError:
                kept.append(prompt.slug)
        if kept:
            self.message_user(
                request,
                f"Kept {', '.join(kept)}: a component's default prompt cannot be deleted.",
                messages.WARNING,
            )

    @admin.display(description="Active version")
    def active_number(self, obj: Prompt) -> str:
        return f"v{obj.active_version.version}" if obj.active_version else "—"

    def extra_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/versions/<int:version>/activate/",
                view(require_POST(self.activate_view)),
                name="prompts_prompt_activate",
            ),
            path(
                "<path:object_id>/rollback/",
                view(require_POST(self.rollback_view)),
                name="prompts_prompt_rollback",
            ),
        ]

    def current_version(self, obj: Prompt) -> PromptVersion:
        return obj.active_version or obj.versions.order_by("-version").first()  # type: ignore[return-value]

    def activate_url(self, obj: Prompt, version: int) -> str | None:
        if obj.active_version and obj.active_version.version == version:
            return None
        return reverse("admin:prompts_prompt_activate", args=[obj.pk, version])

    def _change_url(self, obj: Prompt) -> str:
        return reverse("admin:prompts_prompt_change", args=[obj.pk])

    def activate_view(self, request: HttpRequest, object_id: str, version: int) -> HttpResponse:
        prompt = get_object_or_404(Prompt, pk=object_id)
        if not self.has_change_permission(request, prompt):
            raise PermissionDenied
        row = get_object_or_404(PromptVersion, prompt=prompt, version=version)
        services.prompt_version_activate(prompt=prompt, version=row, activated_by=_actor(request))
        self.message_user(
            request, f"Version {version} of {prompt.slug} is now active.", messages.SUCCESS
        )
        return HttpResponseRedirect(self._change_url(prompt))

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        prompt = get_object_or_404(Prompt.objects.select_related("active_version"), pk=object_id)
        if not self.has_change_permission(request, prompt):
            raise PermissionDenied
        try:
            services.prompt_rollback(prompt=prompt, activated_by=_actor(request))
        except RhetorError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            active = prompt.active_version.version if prompt.active_version else "?"
            self.message_user(
                request, f"Rolled back {prompt.slug} to version {active}.", messages.SUCCESS
            )
        return HttpResponseRedirect(self._change_url(prompt))

    def text_create(self, data: dict[str, Any], first: services.NewVersion) -> Prompt:
        return services.prompt_create(
            prompt_id=data["slug"] or None,
            name=data["name"],
            component=data["component"],
            task_type=data["task_type"],
            description=data["description"],
            tags=data["tags"],
            is_default=data["is_default"],
            parent=data["parent"],
            personality=data["personality"],
            **first,
        )

    def text_update(self, obj: Prompt) -> None:
        services.prompt_update(prompt=obj)

    def version_save(self, request: HttpRequest, obj: Prompt, form: Any) -> None:
        """A changed content becomes a version, active if the operator ticked
        "activate"; ticked without a change, the latest version is activated."""
        data = form.cleaned_data
        if form.version_changed():
            version = services.prompt_version_create(
                prompt=obj, activate=data["activate"], **_new_version(request, data)
            )
            state = "active" if data["activate"] else "not active yet"
            self.message_user(
                request, f"Saved version {version.version} ({state}).", messages.SUCCESS
            )
        elif data["activate"]:
            latest = obj.versions.order_by("-version").first()
            if latest is not None:
                services.prompt_version_activate(
                    prompt=obj, version=latest, activated_by=_actor(request)
                )


class PromptVersionAddForm(VersionAddForm):
    activate = forms.BooleanField(required=False)

    class Meta:
        model = PromptVersion
        fields = ["prompt", "content", "engine", "variables", "change_note"]


@admin.register(PromptVersion)
class PromptVersionAdmin(AppendOnlyVersionAdmin):
    list_select_related = ["prompt"]
    raw_id_fields = ["prompt"]
    list_filter = ["prompt__component"]
    add_fields = ["prompt", *AppendOnlyVersionAdmin.add_fields, "activate"]
    add_form = PromptVersionAddForm

    def version_create(self, data: dict[str, Any], fields: services.NewVersion) -> TextVersion:
        return services.prompt_version_create(
            prompt=data["prompt"], activate=data["activate"], **fields
        )


@admin.register(PromptActivation)
class PromptActivationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The ledger of pointer moves: read-only."""

    list_display = ["prompt", "version", "previous_version", "activated_by", "created_at", "note"]
    list_select_related = ["prompt", "version", "previous_version"]
    raw_id_fields = ["prompt", "version", "previous_version"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Personalities -----------------------------------------------------------------------


@admin.register(Personality)
class PersonalityAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "tone", "updated_at"]
    search_fields = ["name", "tone", "description"]

"""Reads of the prompts app, including the message path's system-prompt resolution."""

import json
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.db.models import (
    BooleanField,
    Case,
    Count,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from prompts.errors import (
    PROMPT_NOT_FOUND,
    PROMPT_VERSION_NOT_FOUND,
    TEMPLATE_NOT_FOUND,
    TEMPLATE_VERSION_NOT_FOUND,
    PromptNotFound,
    PromptVersionNotFound,
    TemplateNotFound,
    TemplateVersionNotFound,
)
from prompts.models import Personality, Prompt, PromptActivation, PromptVersion, Template
from prompts.models import TemplateVersion as TemplateVersionModel
from prompts.rendering import render


@dataclass(frozen=True)
class ResolvedPrompt:
    """The system prompt a request uses: which prompt and version, and the rendered text."""

    prompt_id: str
    version_id: int  # PromptVersion pk (what usage records point at)
    version: int
    text: str


def _tag_filter(tag: str) -> Q:
    # JSON lists stored as text on SQLite: match the quoted element (works on Postgres too).
    return Q(tags__icontains=json.dumps(tag))


# --- Templates ---------------------------------------------------------------------------


def template_list(*, category: str | None = None, tag: str | None = None) -> QuerySet[Template]:
    qs = Template.objects.annotate(
        version_count=Count("versions"), last_updated=Max("versions__created_at")
    ).order_by("category", "name")
    if category:
        qs = qs.filter(category=category)
    if tag:
        qs = qs.filter(_tag_filter(tag))
    return qs


def template_get(*, template_id: str) -> Template:
    template = (
        Template.objects.annotate(
            version_count=Count("versions"), last_updated=Max("versions__created_at")
        )
        .filter(slug=template_id)
        .first()
    )
    if template is None:
        raise TemplateNotFound(TEMPLATE_NOT_FOUND.format(template_id=template_id))
    return template


def template_version_list(*, template: Template) -> QuerySet[TemplateVersionModel]:
    return template.versions.order_by("-version")


def template_version_get(
    *, template: Template, version_id: int | None = None, version: int | None = None
) -> TemplateVersionModel:
    """A version by pk (`version_id`) or number (`version`); the latest without either."""
    qs = template.versions.all()
    if version_id is not None:
        row = qs.filter(pk=version_id).first()
    elif version is not None:
        row = qs.filter(version=version).first()
    else:
        row = qs.order_by("-version").first()
    if row is None:
        raise TemplateVersionNotFound(
            TEMPLATE_VERSION_NOT_FOUND.format(
                template_id=template.slug, version=version_id or version
            )
        )
    return row


# --- Prompts -----------------------------------------------------------------------------


def prompt_list(*, component: str | None = None, tag: str | None = None) -> QuerySet[Prompt]:
    qs = (
        Prompt.objects.select_related("parent", "active_version")
        .annotate(version_count=Count("versions"), last_updated=Max("versions__created_at"))
        .order_by("component", "name")
    )
    if component:
        qs = qs.filter(component=component)
    if tag:
        qs = qs.filter(_tag_filter(tag))
    return qs


def prompt_get(*, prompt_id: str) -> Prompt:
    prompt = (
        Prompt.objects.select_related("parent", "active_version", "personality")
        .annotate(version_count=Count("versions"), last_updated=Max("versions__created_at"))
        .filter(slug=prompt_id)
        .first()
    )
    if prompt is None:
        raise PromptNotFound(PROMPT_NOT_FOUND.format(prompt_id=prompt_id), prompt_id=prompt_id)
    return prompt


def prompt_version_get(
    *, prompt: Prompt, version_id: int | None = None, version: int | None = None
) -> PromptVersion:
    """A version by pk (`version_id`) or number (`version`); the active one without."""
    if version_id is None and version is None and prompt.active_version is not None:
        return prompt.active_version
    qs = prompt.versions.all()
    if version_id is not None:
        row = qs.filter(pk=version_id).first()
    elif version is not None:
        row = qs.filter(version=version).first()
    else:
        row = qs.order_by("-version").first()
    if row is None:
        raise PromptVersionNotFound(
            PROMPT_VERSION_NOT_FOUND.format(prompt_id=prompt.slug, version=version_id or version)
        )
    return row


def _usage_model() -> Any:
    """budget.UsageRecord when the budget app has it (it points at PromptVersion)."""
    try:
        model = apps.get_model("budget", "UsageRecord")
    except LookupError:
        return None
    names = {f.name for f in model._meta.get_fields()}
    needed = {"prompt_version", "input_tokens", "output_tokens", "cost_nanos"}
    return model if needed <= names else None


def prompt_version_usage_annotate(qs: QuerySet[PromptVersion]) -> QuerySet[PromptVersion]:
    """Add `usage_requests`, `usage_input_tokens`, `usage_output_tokens` and
    `usage_cost_nanos` per version from budget usage records, when that model exists."""
    usage = _usage_model()
    if usage is None:
        return qs
    for alias, expression in (
        ("usage_requests", Count("pk")),
        ("usage_input_tokens", Sum("input_tokens")),
        ("usage_output_tokens", Sum("output_tokens")),
        ("usage_cost_nanos", Sum("cost_nanos")),
    ):
        sub = (
            usage.objects.filter(prompt_version=OuterRef("pk"))
            .order_by()
            .values("prompt_version")
            .annotate(v=expression)
            .values("v")
        )
        qs = qs.annotate(**{alias: Coalesce(Subquery(sub), Value(0))})
    return qs


def prompt_version_list(*, prompt: Prompt, with_usage: bool = False) -> QuerySet[PromptVersion]:
    """Newest first, annotated with `is_active` (and usage, see above, on request)."""
    qs = prompt.versions.annotate(
        is_active=Case(
            When(pk=prompt.active_version_id or 0, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    ).order_by("-version")
    return prompt_version_usage_annotate(qs) if with_usage else qs


def prompt_activation_list(*, prompt: Prompt) -> QuerySet[PromptActivation]:
    return prompt.activations.select_related("version", "previous_version")


def personality_list() -> QuerySet[Personality]:
    return Personality.objects.all()


# --- The message path --------------------------------------------------------------------


def personality_text(personality: Personality) -> str:
    """The personality section appended to a system prompt (plain text, not rendered)."""
    lines = [f"Personality: {personality.name}"]
    if personality.tone:
        lines.append(f"Tone: {personality.tone}")
    if personality.traits:
        lines.append("Traits: " + ", ".join(str(t) for t in personality.traits))
    if personality.description:
        lines.append(personality.description)
    if personality.examples:
        lines.append("Examples of how you speak:")
        lines.extend(f"- {e}" for e in personality.examples)
    return "\n".join(lines)


def prompt_version_text(
    *,
    version: PromptVersion,
    personality: Personality | None = None,
    variables: dict[str, object] | None = None,
) -> str:
    """A prompt version rendered strictly, plus the prompt's personality section."""
    text = render(
        content=version.content,
        engine=version.engine,
        variables=version.variables,
        values=variables,
    )
    if personality is not None:
        text = f"{text}\n\n{personality_text(personality)}"
    return text


def system_prompt_resolve(
    *,
    prompt_id: str | None,
    component: str | None,
    task_type: str | None,
    variables: dict[str, object] | None,
) -> ResolvedPrompt | None:
    """The system prompt for a request, in at most one query.

    With `prompt_id`: that prompt's active version (`PromptNotFound` if unknown). Without:
    the component's prompt for `task_type` if one exists, else its default prompt, else
    None. The text is rendered strictly with `variables` (`TemplateVariablesMissing`)."""
    qs = Prompt.objects.select_related("active_version", "personality")
    if prompt_id:
        prompt = qs.filter(slug=prompt_id).first()
        if prompt is None:
            raise PromptNotFound(PROMPT_NOT_FOUND.format(prompt_id=prompt_id), prompt_id=prompt_id)
    elif component:
        match = Q(is_default=True)
        if task_type:
            match |= Q(task_type=task_type)
        prompt = (
            qs.filter(match, component=component, active_version__isnull=False)
            .annotate(
                rank=Case(
                    When(task_type=task_type or "", task_type__gt="", then=Value(0)),
                    default=Value(1),
                    output_field=IntegerField(),
                )
            )
            .order_by("rank", "-is_default", "-updated_at", "pk")
            .first()
        )
    else:
        return None
    if prompt is None or prompt.active_version is None:
        return None
    version = prompt.active_version
    return ResolvedPrompt(
        prompt_id=prompt.slug,
        version_id=version.pk,
        version=version.version,
        text=prompt_version_text(
            version=version, personality=prompt.personality, variables=variables
        ),
    )


asystem_prompt_resolve = sync_to_async(system_prompt_resolve)

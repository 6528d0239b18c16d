"""Reads of the prompts app, including the message path's system-prompt resolution.

The core reads any versioned text (`models.VersionedText`): a list or one text with its
version stats, one of its versions, a version rendered strictly. The template and prompt
selectors narrow them to their model and raise their own not-found errors; a prompt's
default version is its active one, a template's its latest."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

from asgiref.sync import sync_to_async
from django.apps import apps
from django.db.models import (
    BooleanField,
    Case,
    Count,
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
    PERSONALITY_NOT_FOUND,
    PROMPT_NOT_FOUND,
    PROMPT_VERSION_NOT_FOUND,
    TEMPLATE_NOT_FOUND,
    TEMPLATE_VERSION_NOT_FOUND,
    ContentInvalid,
    PersonalityNotFound,
    PromptNotFound,
    PromptVersionNotFound,
    TemplateNotFound,
    TemplateVersionNotFound,
)
from prompts.models import (
    Personality,
    Prompt,
    PromptVersion,
    Template,
    TemplateVersion,
    TextVersion,
    VersionedText,
)
from prompts.rendering import render

_Text = TypeVar("_Text", bound=VersionedText)
_Version = TypeVar("_Version", bound=TextVersion)


@dataclass(frozen=True)
class ResolvedPrompt:
    """The system prompt a request uses: which prompt and version, and the rendered text."""

    prompt_id: str
    version_id: int  # PromptVersion pk (what usage records point at)
    version: int
    text: str


# --- Versioned texts (the core) ----------------------------------------------------------


def _tag_filter(tag: str) -> Q:
    # JSON lists stored as text on SQLite: match the quoted element (works on Postgres too).
    return Q(tags__icontains=json.dumps(tag))


def text_list(
    *, texts: QuerySet[_Text], tag: str | None = None, **matching: str | None
) -> QuerySet[_Text]:
    """`texts` annotated with `version_count` and `last_updated` (their newest version's
    date), narrowed to `tag` and to the given (non-empty) field values."""
    stats = {"version_count": Count("versions"), "last_updated": Max("versions__created_at")}
    texts = texts.annotate(**stats).filter(**{k: v for k, v in matching.items() if v})
    return texts.filter(_tag_filter(tag)) if tag else texts


def text_get(*, texts: QuerySet[_Text], text_id: str) -> _Text | None:
    """The text whose public id (slug) is `text_id`, with its version stats, or None."""
    return text_list(texts=texts).filter(slug=text_id).first()


def text_version_get(
    *, versions: QuerySet[_Version], version_id: int | None = None, version: int | None = None
) -> _Version | None:
    """One of `versions` by pk (`version_id`) or number (`version`); the latest without
    either; None when there is no such version."""
    if version_id is not None:
        return versions.filter(pk=version_id).first()
    if version is not None:
        return versions.filter(version=version).first()
    return versions.order_by("-version").first()


def text_version_render(*, version: TextVersion, values: Mapping[str, object] | None) -> str:
    """The version's content rendered strictly with `values`, checked against the
    version's own variable declarations (`TemplateVariablesMissing` lists every missing
    name, `TemplateVariablesInvalid` every value of the wrong type)."""
    return render(
        content=version.content,
        engine=version.engine,
        variables=version.variables,
        values=values,
    )


# --- Templates ---------------------------------------------------------------------------


def template_list(*, category: str | None = None, tag: str | None = None) -> QuerySet[Template]:
    return text_list(
        texts=Template.objects.order_by("category", "name"), tag=tag, category=category
    )


def template_get(*, template_id: str) -> Template:
    template = text_get(texts=Template.objects.all(), text_id=template_id)
    if template is None:
        raise TemplateNotFound(TEMPLATE_NOT_FOUND.format(template_id=template_id))
    return template


def template_version_list(*, template: Template) -> QuerySet[TemplateVersion]:
    return template.versions.order_by("-version")


def template_version_get(
    *, template: Template, version_id: int | None = None, version: int | None = None
) -> TemplateVersion:
    """A version by pk (`version_id`) or number (`version`); the latest without either."""
    row = text_version_get(versions=template.versions.all(), version_id=version_id, version=version)
    if row is None:
        raise TemplateVersionNotFound(
            TEMPLATE_VERSION_NOT_FOUND.format(
                template_id=template.slug, version=version_id or version
            )
        )
    return row


# --- Prompts -----------------------------------------------------------------------------


def prompt_list(*, component: str | None = None, tag: str | None = None) -> QuerySet[Prompt]:
    return text_list(
        texts=Prompt.objects.select_related("parent", "active_version").order_by(
            "component", "name"
        ),
        tag=tag,
        component=component,
    )


def prompt_get(*, prompt_id: str) -> Prompt:
    prompts = Prompt.objects.select_related("parent", "active_version", "personality")
    prompt = text_get(texts=prompts, text_id=prompt_id)
    if prompt is None:
        raise PromptNotFound(PROMPT_NOT_FOUND.format(prompt_id=prompt_id), prompt_id=prompt_id)
    return prompt


def prompt_version_get(
    *, prompt: Prompt, version_id: int | None = None, version: int | None = None
) -> PromptVersion:
    """A version by pk (`version_id`) or number (`version`); the active one without."""
    if version_id is None and version is None and prompt.active_version is not None:
        return prompt.active_version
    row = text_version_get(versions=prompt.versions.all(), version_id=version_id, version=version)
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


class PromptVersionUsage(TypedDict):
    """The columns prompt_version_usage_annotate adds (as `WithAnnotations[PromptVersion,
    PromptVersionUsage]`)."""

    usage_requests: int
    usage_input_tokens: int
    usage_output_tokens: int
    usage_cost_nanos: int


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


def personality_list() -> QuerySet[Personality]:
    return Personality.objects.annotate(prompt_count=Count("prompts")).order_by("name")


def personality_get(*, personality_id: str | int) -> Personality:
    """A personality by id (its number) or by its unique name."""
    key = str(personality_id).strip()
    match = Q(name=key)
    if key.isdigit() and len(key) < 19:
        match |= Q(pk=int(key))
    personality = (
        Personality.objects.annotate(prompt_count=Count("prompts"))
        .filter(match)
        .order_by("pk")
        .first()
    )
    if personality is None:
        raise PersonalityNotFound(PERSONALITY_NOT_FOUND.format(personality_id=key))
    return personality


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
    text = text_version_render(version=version, values=variables)
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
    prompt = _request_prompt(prompt_id=prompt_id, component=component, task_type=task_type)
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


def _request_prompt(
    *, prompt_id: str | None, component: str | None, task_type: str | None
) -> Prompt | None:
    """The prompt a request uses (see `system_prompt_resolve`), with its active version
    and personality loaded, in one query."""
    qs = Prompt.objects.select_related("active_version", "personality")
    if prompt_id:
        prompt = qs.filter(slug=prompt_id).first()
        if prompt is None:
            raise PromptNotFound(PROMPT_NOT_FOUND.format(prompt_id=prompt_id), prompt_id=prompt_id)
        return prompt
    if component:
        match = Q(is_default=True)
        if task_type:
            match |= Q(task_type=task_type)
        # The candidates are few (a component's default and its task prompts): ranked
        # here rather than by an annotated query, which cost more to compile than to run.
        candidates = list(qs.filter(match, component=component, active_version__isnull=False))
        if not candidates:
            return None
        return min(
            candidates,
            key=lambda p: (
                0 if task_type and p.task_type == task_type else 1,
                not p.is_default,
                -p.updated_at.timestamp(),
                p.pk,
            ),
        )
    return None


asystem_prompt_resolve = sync_to_async(system_prompt_resolve)


# --- Prompt generation -----------------------------------------------------------------

GENERATE_FORMATS = ("instruction", "chat")
NO_COMPONENT_OPENER = "You are an assistant working inside Tekton, a multi-AI system."
COMPONENT_OPENER = "You are {title}, a component of Tekton, a multi-AI system."


@dataclass(frozen=True)
class GeneratedPrompt:
    """A system prompt composed for a task (`prompt_generate`).

    `prompt` is the whole text for the `instruction` format; for `chat`, `system` and
    `messages` hold the system prompt and the task as the user's turn."""

    prompt: str
    system: str
    messages: list[dict[str, str]]
    format: str
    component: str | None
    task: str
    prompt_id: str | None
    prompt_version: int | None
    personality: Personality | None
    sections: list[str]


def _context_lines(context: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in context.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append(f"- {key}: {text}")
    return lines


def prompt_generate(
    *,
    task: str,
    component: str | None = None,
    task_type: str | None = None,
    prompt_id: str | None = None,
    personality_id: str | int | None = None,
    context: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    format: str = "instruction",
) -> GeneratedPrompt:
    """Compose a system prompt for `task`, as the message path would brief the model.

    The base is the prompt a request for `component` / `task_type` uses (or `prompt_id`),
    rendered strictly with `variables` plus the string entries of `context`
    (`TemplateVariablesMissing` names what is still missing); without one, a plain
    opener naming the component. Then the personality (the explicit one, else the
    prompt's own), the task, and the context as a list of facts. `chat` keeps the task
    out of the system prompt and returns it as the user's turn."""
    if format not in GENERATE_FORMATS:
        raise ContentInvalid(
            f"format must be one of {', '.join(GENERATE_FORMATS)} (got {format!r})",
            field="format",
        )
    context = dict(context or {})
    personality = personality_get(personality_id=personality_id) if personality_id else None
    base = _request_prompt(prompt_id=prompt_id, component=component, task_type=task_type)
    component = component or (base.component if base else None)
    sections: list[str] = []
    version = base.active_version if base else None
    if base is not None and version is not None:
        values = {k: v for k, v in context.items() if isinstance(v, str)}
        values.update(variables or {})
        used = set(version.variable_names)
        sections.append(
            text_version_render(
                version=version, values={k: v for k, v in values.items() if k in used}
            )
        )
        personality = personality or base.personality
    elif component:
        sections.append(COMPONENT_OPENER.format(title=component.replace("_", " ").title()))
    else:
        sections.append(NO_COMPONENT_OPENER)
    if personality is not None:
        sections.append(personality_text(personality))
    if context:
        sections.append("Context:\n" + "\n".join(_context_lines(context)))
    task_section = f"Task:\n{task.strip()}"
    if format == "chat":
        system = "\n\n".join(sections)
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": task.strip()},
        ]
        prompt = system
    else:
        sections.append(task_section)
        system = prompt = "\n\n".join(sections)
        messages = []
    return GeneratedPrompt(
        prompt=prompt,
        system=system,
        messages=messages,
        format=format,
        component=component,
        task=task,
        prompt_id=base.slug if base and version else None,
        prompt_version=version.version if version else None,
        personality=personality,
        sections=sections,
    )

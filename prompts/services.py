"""Writes of the prompts app. Every change goes through here: the API, the admin and the
management commands call these functions and nothing else writes.

Versions are only ever created; the active-version pointer of a prompt moves only through
`prompt_version_activate` / `prompt_rollback`, each move recorded in `PromptActivation`.
"""

import re
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Max
from django.utils import timezone

from prompts.errors import (
    NOTHING_TO_ROLL_BACK,
    PERSONALITY_EXISTS,
    PROMPT_EXISTS,
    PROMPT_IN_USE,
    ContentInvalid,
    NothingToRollBack,
    PersonalityAlreadyExists,
    PromptAlreadyExists,
    PromptInUse,
    PromptVersionNotFound,
)
from prompts.models import (
    Engine,
    Personality,
    Prompt,
    PromptActivation,
    PromptVersion,
    Template,
    TemplateVersion,
    spec_list,
)
from prompts.rendering import extract_variables, normalize_variables

UNSET: Any = object()


def slug_from_name(name: str) -> str:
    """`"Code Review v2"` -> `"code_review_v2"` (the original Rhetor's ids use underscores)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:100] or "untitled"


def _unique_slug(model: type[Template] | type[Prompt], base: str) -> str:
    taken = set(model.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    if base not in taken:
        return base
    n = 1
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def _clean(obj: models.Model, *, exclude: list[str] | None = None) -> None:
    """full_clean, with Django's ValidationError turned into the API's 422 shape."""
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            field, errors = next(iter(exc.error_dict.items()))
            message = "; ".join(m for e in errors for m in e.messages)
            raise ContentInvalid(message, field=field) from exc
        raise ContentInvalid("; ".join(exc.messages), field="body") from exc


def _next_version(versions: models.QuerySet[Any]) -> int:
    return (versions.aggregate(n=Max("version"))["n"] or 0) + 1


def _carry_declarations(
    previous: TemplateVersion | PromptVersion | None, declared: object, *, content: str, engine: str
) -> object:
    """With no declarations given, a new version keeps the previous version's typed
    declarations for the names its content still uses."""
    if declared is not None or previous is None:
        return declared
    used = set(extract_variables(content=content, engine=engine))
    return [spec for spec in spec_list(previous.variables) if spec["name"] in used]


# --- Templates ---------------------------------------------------------------------------


@transaction.atomic
def template_create(
    *,
    name: str,
    content: str,
    category: str = Template.Category.GENERAL,
    description: str = "",
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    variables: object = None,
    engine: str = Engine.SIMPLE,
    created_by: str = "",
    change_note: str = "",
    template_id: str | None = None,
) -> Template:
    """Create a template and its version 1. The id is a slug of the name, made unique
    with a numeric suffix (as the original Rhetor did) unless `template_id` is given."""
    slug = template_id or _unique_slug(Template, slug_from_name(name))
    template = Template(
        slug=slug, name=name, category=category, description=description, tags=tags or []
    )
    _clean(template)
    template.save()
    template_version_create(
        template=template,
        content=content,
        metadata=metadata,
        variables=variables,
        engine=engine,
        created_by=created_by,
        change_note=change_note or "Initial version",
    )
    return template


def _version_fill_and_save(
    row: TemplateVersion | PromptVersion,
    *,
    versions: models.QuerySet[Any],
    content: str,
    metadata: dict[str, Any] | None,
    variables: object,
    engine: str | None,
    created_by: str,
    change_note: str,
    version: int | None,
    created_at: datetime | None,
) -> None:
    """The one way a template or prompt version is made: the next number, the engine and
    variable declarations carried from the previous version, validated, then inserted."""
    previous = versions.order_by("-version").first()
    row.engine = engine or (previous.engine if previous else Engine.SIMPLE)
    row.version = version or _next_version(versions)
    row.content = content
    row.variables = normalize_variables(
        content=content,
        engine=row.engine,
        declared=_carry_declarations(previous, variables, content=content, engine=row.engine),
    )
    row.metadata = metadata or {}
    row.created_by = created_by
    row.change_note = change_note
    row.created_at = created_at or timezone.now()
    _clean(row)
    row.save()


@transaction.atomic
def template_version_create(
    *,
    template: Template,
    content: str,
    metadata: dict[str, Any] | None = None,
    variables: object = None,
    engine: str | None = None,
    created_by: str = "",
    change_note: str = "",
    version: int | None = None,
    created_at: datetime | None = None,
) -> TemplateVersion:
    """Add a version. Engine and variable declarations default to the previous version's.
    `version` / `created_at` are for imports that preserve history."""
    Template.objects.select_for_update().filter(pk=template.pk).exists()
    row = TemplateVersion(template=template)
    _version_fill_and_save(
        row,
        versions=template.versions.all(),
        content=content,
        metadata=metadata,
        variables=variables,
        engine=engine,
        created_by=created_by,
        change_note=change_note,
        version=version,
        created_at=created_at,
    )
    Template.objects.filter(pk=template.pk).update(updated_at=timezone.now())
    return row


def template_update(
    *,
    template: Template,
    name: str | None = None,
    category: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
) -> Template:
    """Change a template's own fields (never its versions)."""
    if name is not None:
        template.name = name
    if category is not None:
        template.category = category
    if description is not None:
        template.description = description
    if tags is not None:
        template.tags = tags
    _clean(template)
    template.save()
    return template


def template_delete(*, template: Template) -> None:
    template.delete()


# --- Prompts -----------------------------------------------------------------------------


@transaction.atomic
def prompt_create(
    *,
    name: str,
    component: str,
    content: str,
    task_type: str = "",
    description: str = "",
    tags: list[str] | None = None,
    is_default: bool = False,
    parent: Prompt | None = None,
    personality: Personality | None = None,
    metadata: dict[str, Any] | None = None,
    variables: object = None,
    engine: str = Engine.SIMPLE,
    created_by: str = "",
    change_note: str = "",
    prompt_id: str | None = None,
) -> Prompt:
    """Create a prompt with version 1 active. A new default takes over from the
    component's previous default."""
    if prompt_id:
        if Prompt.objects.filter(slug=prompt_id).exists():
            raise PromptAlreadyExists(PROMPT_EXISTS.format(prompt_id=prompt_id), field="prompt_id")
        slug = prompt_id
    else:
        slug = _unique_slug(Prompt, slug_from_name(name))
    if is_default:
        Prompt.objects.filter(component=component, is_default=True).update(is_default=False)
    prompt = Prompt(
        slug=slug,
        name=name,
        component=component,
        task_type=task_type,
        description=description,
        tags=tags or [],
        is_default=is_default,
        parent=parent,
        personality=personality,
    )
    _clean(prompt)
    prompt.save()
    prompt_version_create(
        prompt=prompt,
        content=content,
        metadata=metadata,
        variables=variables,
        engine=engine,
        created_by=created_by,
        change_note=change_note or "Initial version",
        activate=True,
    )
    return prompt


@transaction.atomic
def prompt_update(
    *,
    prompt: Prompt,
    name: str | None = None,
    component: str | None = None,
    task_type: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    is_default: bool | None = None,
    parent: Prompt | None = UNSET,
    personality: Personality | None = UNSET,
) -> Prompt:
    """Change a prompt's own fields (never its versions)."""
    for field, value in (
        ("name", name),
        ("component", component),
        ("task_type", task_type),
        ("description", description),
        ("tags", tags),
        ("is_default", is_default),
    ):
        if value is not None:
            setattr(prompt, field, value)
    if parent is not UNSET:
        prompt.parent = parent
    if personality is not UNSET:
        prompt.personality = personality
    if prompt.is_default:
        Prompt.objects.filter(component=prompt.component, is_default=True).exclude(
            pk=prompt.pk
        ).update(is_default=False)
    _clean(prompt, exclude=["active_version"])
    prompt.save()
    return prompt


@transaction.atomic
def prompt_version_create(
    *,
    prompt: Prompt,
    content: str,
    metadata: dict[str, Any] | None = None,
    variables: object = None,
    engine: str | None = None,
    created_by: str = "",
    change_note: str = "",
    activate: bool = False,
    version: int | None = None,
    created_at: datetime | None = None,
) -> PromptVersion:
    """Add a version; it becomes active only with `activate=True` (the API's PUT does;
    the admin lets the operator look at the diff first)."""
    Prompt.objects.select_for_update().filter(pk=prompt.pk).exists()
    row = PromptVersion(prompt=prompt)
    _version_fill_and_save(
        row,
        versions=prompt.versions.all(),
        content=content,
        metadata=metadata,
        variables=variables,
        engine=engine,
        created_by=created_by,
        change_note=change_note,
        version=version,
        created_at=created_at,
    )
    if activate:
        prompt_version_activate(
            prompt=prompt, version=row, activated_by=created_by, note=change_note
        )
    else:
        Prompt.objects.filter(pk=prompt.pk).update(updated_at=timezone.now())
    return row


@transaction.atomic
def prompt_version_activate(
    *, prompt: Prompt, version: PromptVersion, activated_by: str = "", note: str = ""
) -> PromptActivation | None:
    """Move the prompt's active-version pointer to `version` and record who and when.
    Activating the already-active version changes nothing and returns None."""
    if version.prompt_id != prompt.pk:
        raise PromptVersionNotFound(
            f"Version {version.pk} does not belong to prompt '{prompt.slug}'",
            prompt_id=prompt.slug,
        )
    current = (
        Prompt.objects.select_for_update()
        .filter(pk=prompt.pk)
        .values_list("active_version_id", flat=True)
        .first()
    )
    if current == version.pk:
        prompt.active_version = version
        return None
    Prompt.objects.filter(pk=prompt.pk).update(active_version=version, updated_at=timezone.now())
    prompt.active_version = version
    return PromptActivation.objects.create(
        prompt=prompt,
        version=version,
        previous_version_id=current,
        activated_by=activated_by,
        note=note,
    )


@transaction.atomic
def prompt_rollback(*, prompt: Prompt, activated_by: str = "") -> PromptActivation:
    """Move the pointer back to the version that was active before the current one."""
    last = prompt.activations.filter(version_id=prompt.active_version_id).first()
    if last is None or last.previous_version is None:
        raise NothingToRollBack(NOTHING_TO_ROLL_BACK.format(prompt_id=prompt.slug))
    target = last.previous_version
    activation = prompt_version_activate(
        prompt=prompt,
        version=target,
        activated_by=activated_by,
        note=f"Rolled back from version {last.version.version} to {target.version}",
    )
    assert activation is not None  # noqa: S101 - target differs from the current version
    return activation


def prompt_delete(*, prompt: Prompt) -> None:
    """Delete a prompt and its versions. A component's default prompt is kept (requests
    rely on it): make another prompt the default first."""
    if prompt.is_default:
        raise PromptInUse(
            PROMPT_IN_USE.format(
                prompt_id=prompt.slug,
                reason=f"it is the default prompt of '{prompt.component}'; "
                "make another prompt the default first",
            )
        )
    try:
        prompt.delete()
    except (models.ProtectedError, models.RestrictedError) as exc:
        raise PromptInUse(
            PROMPT_IN_USE.format(prompt_id=prompt.slug, reason="usage records reference it")
        ) from exc


# --- Personalities ---------------------------------------------------------------------


def personality_traits_normalize(traits: object) -> list[str]:
    """Traits as a list of short strings. The original client sends an object of
    trait -> value (`{"curious": true, "verbosity": "low"}`): a true flag keeps the trait's
    name, a false one drops it, any other value becomes `"name: value"`."""
    if traits is None:
        return []
    if isinstance(traits, dict):
        out = []
        for name, value in traits.items():
            if value is True:
                out.append(str(name))
            elif value is not False and value is not None and value != "":
                out.append(f"{name}: {value}")
        return out
    if isinstance(traits, list | tuple):
        return [str(t) for t in traits if str(t).strip()]
    raise ContentInvalid("traits must be a list of strings or an object", field="traits")


def personality_examples_normalize(examples: object) -> list[str]:
    """Examples as phrasings. An example interaction (`{"input", "output"}` or
    `{"user", "assistant"}`) becomes `"<input> -> <output>"`."""
    if examples is None:
        return []
    if not isinstance(examples, list | tuple):
        raise ContentInvalid("examples must be a list", field="examples")
    out = []
    for example in examples:
        if isinstance(example, dict):
            said = example.get("input", example.get("user"))
            reply = example.get("output", example.get("assistant", example.get("response")))
            if said is not None and reply is not None:
                out.append(f"{said} -> {reply}")
            else:
                out.append("; ".join(f"{k}: {v}" for k, v in example.items()))
        elif str(example).strip():
            out.append(str(example))
    return out


def personality_create(
    *,
    name: str,
    traits: object = None,
    tone: str = "",
    description: str = "",
    examples: object = None,
) -> Personality:
    """Create a personality; a name is unique (409 `personality_exists`)."""
    if Personality.objects.filter(name=name).exists():
        raise PersonalityAlreadyExists(PERSONALITY_EXISTS.format(name=name), field="name")
    personality = Personality(
        name=name,
        traits=personality_traits_normalize(traits),
        tone=tone,
        description=description,
        examples=personality_examples_normalize(examples),
    )
    _clean(personality)
    personality.save()
    return personality


# Async twins for async callers (tests, consumers); the transaction runs in the sync thread.
aprompt_version_create = sync_to_async(prompt_version_create)
aprompt_version_activate = sync_to_async(prompt_version_activate)
aprompt_rollback = sync_to_async(prompt_rollback)

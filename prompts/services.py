"""Writes of the prompts app. Every change goes through here: the API, the admin and the
management commands call these functions and nothing else writes.

Templates and prompts are both versioned texts (`models.VersionedText`). The core below
writes any versioned text: its own fields, and new versions, which are only ever created
(`text_version_create`). The template and prompt sections add only what is theirs; for a
prompt that is the active-version pointer, moved only through `prompt_version_activate` /
`prompt_rollback` (each move recorded in `PromptActivation`), the one default prompt of a
component, and the rule that a default prompt is not deleted.
"""

import re
from datetime import datetime
from typing import Any, Required, TypedDict, TypeVar, Unpack

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import models, transaction
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
    TextVersion,
    VersionedText,
    spec_list,
)
from prompts.rendering import extract_variables, normalize_variables

UNSET: Any = object()

_Version = TypeVar("_Version", bound=TextVersion)


# --- Versioned texts (the core) ----------------------------------------------------------


class NewVersion(TypedDict, total=False):
    """The fields of a new version, as the version services take them (`**fields`)."""

    content: Required[str]
    metadata: dict[str, Any] | None
    variables: object  # declarations as given: a list of names, specs, or name -> spec
    engine: str | None  # None: the previous version's engine (simple for a first one)
    created_by: str
    change_note: str
    version: int | None  # number and date are for imports that preserve history
    created_at: datetime | None


def slug_from_name(name: str) -> str:
    """`"Code Review v2"` -> `"code_review_v2"` (the original Rhetor's ids use underscores)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:100] or "untitled"


def _unique_slug(model: type[VersionedText], name: str) -> str:
    """The name's slug, made unique with a numeric suffix (as the original Rhetor did)."""
    base = slug_from_name(name)
    taken = set(model._default_manager.filter(slug__startswith=base).values_list("slug", flat=True))
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


def _fields_set(text: VersionedText, **values: object) -> None:
    """Set a text's own fields; a None value leaves its field as it is."""
    for field, value in values.items():
        if value is not None:
            setattr(text, field, value)


def _first_version(fields: NewVersion) -> NewVersion:
    """The fields of a new text's version 1: noted "Initial version" unless given a note."""
    return {**fields, "change_note": fields.get("change_note") or "Initial version"}


def _carry_declarations(
    previous: TextVersion | None, declared: object, *, content: str, engine: str
) -> object:
    """With no declarations given, a new version keeps the previous version's typed
    declarations for the names its content still uses."""
    if declared is not None or previous is None:
        return declared
    used = set(extract_variables(content=content, engine=engine))
    return [spec for spec in spec_list(previous.variables) if spec["name"] in used]


@transaction.atomic
def text_version_create(
    *, text: VersionedText, version_model: type[_Version], **fields: Unpack[NewVersion]
) -> _Version:
    """The one way a version is made: the next number, the engine and variable
    declarations carried from the previous version, validated, then inserted; the text is
    marked updated. The text's row is locked so that concurrent edits number in turn."""
    type(text)._default_manager.select_for_update().filter(pk=text.pk).exists()
    previous = text.versions.order_by("-version").first()
    content = fields["content"]
    engine = fields.get("engine") or (previous.engine if previous else Engine.SIMPLE)
    row = version_model(
        **{version_model.owner_field: text},
        version=fields.get("version") or (previous.version + 1 if previous else 1),
        content=content,
        engine=engine,
        variables=normalize_variables(
            content=content,
            engine=engine,
            declared=_carry_declarations(
                previous, fields.get("variables"), content=content, engine=engine
            ),
        ),
        metadata=fields.get("metadata") or {},
        created_by=fields.get("created_by", ""),
        change_note=fields.get("change_note", ""),
        created_at=fields.get("created_at") or timezone.now(),
    )
    _clean(row)
    row.save()
    type(text)._default_manager.filter(pk=text.pk).update(updated_at=timezone.now())
    return row


# --- Templates ---------------------------------------------------------------------------


@transaction.atomic
def template_create(
    *,
    name: str,
    category: str = Template.Category.GENERAL,
    description: str = "",
    tags: list[str] | None = None,
    template_id: str | None = None,
    **first: Unpack[NewVersion],
) -> Template:
    """Create a template and its version 1 (`first`). The id is a slug of the name, made
    unique, unless `template_id` is given."""
    template = Template(
        slug=template_id or _unique_slug(Template, name),
        name=name,
        category=category,
        description=description,
        tags=tags or [],
    )
    _clean(template)
    template.save()
    template_version_create(template=template, **_first_version(first))
    return template


def template_version_create(*, template: Template, **fields: Unpack[NewVersion]) -> TemplateVersion:
    """Add a version; engine and variable declarations default to the previous version's.
    The latest version is the one a template renders by default."""
    return text_version_create(text=template, version_model=TemplateVersion, **fields)


def template_update(
    *,
    template: Template,
    name: str | None = None,
    category: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
) -> Template:
    """Change a template's own fields (never its versions)."""
    _fields_set(template, name=name, category=category, description=description, tags=tags)
    _clean(template)
    template.save()
    return template


def template_delete(*, template: Template) -> None:
    template.delete()


# --- Prompts -----------------------------------------------------------------------------


def _prompt_default_take_over(*, component: str, slug: str) -> None:
    """Prompt `slug` becomes the component's default: the previous default steps down."""
    Prompt.objects.filter(component=component, is_default=True).exclude(slug=slug).update(
        is_default=False
    )


@transaction.atomic
def prompt_create(
    *,
    name: str,
    component: str,
    task_type: str = "",
    description: str = "",
    tags: list[str] | None = None,
    is_default: bool = False,
    parent: Prompt | None = None,
    personality: Personality | None = None,
    prompt_id: str | None = None,
    **first: Unpack[NewVersion],
) -> Prompt:
    """Create a prompt with its version 1 (`first`) active. The id is a slug of the name,
    made unique, unless `prompt_id` is given (and then must be free). A new default takes
    over from the component's previous default."""
    if prompt_id and Prompt.objects.filter(slug=prompt_id).exists():
        raise PromptAlreadyExists(PROMPT_EXISTS.format(prompt_id=prompt_id), field="prompt_id")
    prompt = Prompt(
        slug=prompt_id or _unique_slug(Prompt, name),
        name=name,
        component=component,
        task_type=task_type,
        description=description,
        tags=tags or [],
        is_default=is_default,
        parent=parent,
        personality=personality,
    )
    if is_default:
        _prompt_default_take_over(component=component, slug=prompt.slug)
    _clean(prompt)
    prompt.save()
    prompt_version_create(prompt=prompt, activate=True, **_first_version(first))
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
    _fields_set(
        prompt,
        name=name,
        component=component,
        task_type=task_type,
        description=description,
        tags=tags,
        is_default=is_default,
    )
    if parent is not UNSET:
        prompt.parent = parent
    if personality is not UNSET:
        prompt.personality = personality
    if prompt.is_default:
        _prompt_default_take_over(component=prompt.component, slug=prompt.slug)
    _clean(prompt, exclude=["active_version"])
    prompt.save()
    return prompt


@transaction.atomic
def prompt_version_create(
    *, prompt: Prompt, activate: bool = False, **fields: Unpack[NewVersion]
) -> PromptVersion:
    """Add a version; it becomes active only with `activate=True` (the API's PUT does;
    the admin lets the operator look at the diff first)."""
    row = text_version_create(text=prompt, version_model=PromptVersion, **fields)
    if activate:
        prompt_version_activate(
            prompt=prompt, version=row, activated_by=row.created_by, note=row.change_note
        )
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

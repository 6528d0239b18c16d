"""Template and prompt endpoints (TEKTON_CONTRACT.md, "Templates and prompts").

Fixed paths (`/templates/render`) are declared before the `{id}` paths so they are
matched first. `POST /prompts/compare` runs models, so it is a door of the gateway and
lives in llm/api.py (added to the API before this router, so it is matched first too).
"""

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.responses import Status

from access.auth import PROMPTS, PROMPTS_READ, components_allowed, request_principal
from prompts import selectors, services
from prompts.comparison import text_metrics
from prompts.errors import ContentInvalid
from prompts.models import (
    Personality,
    Prompt,
    PromptVersion,
    Template,
    TemplateVersion,
    TextVersion,
    VersionedText,
)
from prompts.schemas import (
    DeletedOut,
    ErrorOut,
    NewVersionIn,
    PersonalityCreateIn,
    PersonalityListOut,
    PersonalityOut,
    PromptActivateIn,
    PromptActivationOut,
    PromptCreateIn,
    PromptDetailOut,
    PromptGenerateIn,
    PromptGenerateOut,
    PromptListOut,
    PromptRollbackIn,
    PromptUpdateIn,
    PromptVersionsOut,
    TemplateCreateIn,
    TemplateDetailOut,
    TemplateListOut,
    TemplateRenderIn,
    TemplateRenderOut,
    TemplateUpdateIn,
    TemplateVersionsOut,
)

# GET needs prompts:read, every other method prompts:write (reads sent by POST say so).
router = Router(tags=["prompts"], auth=PROMPTS)

E400 = {400: ErrorOut}
E404 = {404: ErrorOut}
E409 = {409: ErrorOut}
E422 = {422: ErrorOut}


def _actor(request: HttpRequest) -> str:
    auth = getattr(request, "auth", None)
    if auth is None or auth is True or getattr(auth, "is_anonymous", False):
        return "api"
    return str(getattr(auth, "name", None) or auth)


class TemplateFilters(Schema):
    category: str | None = None
    tag: str | None = None


class PromptFilters(Schema):
    component: str | None = None
    tag: str | None = None


class VersionQuery(Schema):
    version_id: int | None = None
    version: int | None = None


# --- Output shaping ----------------------------------------------------------------------


def _new_version(
    request: HttpRequest, payload: TemplateCreateIn | PromptCreateIn | NewVersionIn
) -> services.NewVersion:
    """The version a create or update body adds."""
    return {
        "content": payload.content,
        "metadata": payload.metadata,
        "variables": payload.variables,
        "engine": payload.engine,
        "created_by": _actor(request),
        "change_note": payload.change_note,
    }


def _version_out(v: TextVersion, **extra: Any) -> dict[str, Any]:
    return {
        "version_id": v.pk,
        "version": v.version,
        "content": v.content,
        "engine": v.engine,
        "variables": v.variable_names,
        "variable_specs": v.variable_specs,
        "metadata": v.metadata,
        "created_by": v.created_by,
        "created_at": v.created_at,
        "change_note": v.change_note,
        **extra,
    }


def _text_out(text: VersionedText) -> dict[str, Any]:
    """What every template and prompt summary shows (selectors annotate the counts)."""
    return {
        "name": text.name,
        "description": text.description,
        "tags": text.tags,
        "version_count": getattr(text, "version_count", 0),
        "last_updated": getattr(text, "last_updated", None) or text.updated_at,
    }


def _text_detail(
    summary: dict[str, Any],
    chosen: TextVersion,
    versions: list[dict[str, Any]],
    **chosen_extra: Any,
) -> dict[str, Any]:
    """A summary with the chosen version's content and all versions, newest first."""
    return {
        **summary,
        "version_count": len(versions),
        "content": chosen.content,
        "variables": chosen.variable_names,
        "version": chosen.version,
        "version_id": chosen.pk,
        "current_version": _version_out(chosen, **chosen_extra),
        "versions": versions,
    }


def _template_out(t: Template, current: TemplateVersion | None) -> dict[str, Any]:
    return {
        **_text_out(t),
        "template_id": t.slug,
        "category": t.category,
        "variables": current.variable_names if current else [],
    }


def _template_detail(t: Template, chosen: TemplateVersion) -> dict[str, Any]:
    versions = [_version_out(v) for v in selectors.template_version_list(template=t)]
    return _text_detail(_template_out(t, chosen), chosen, versions)


def _prompt_out(p: Prompt) -> dict[str, Any]:
    active = p.active_version
    return {
        **_text_out(p),
        "prompt_id": p.slug,
        "component": p.component,
        "task_type": p.task_type,
        "is_default": p.is_default,
        "parent_id": p.parent.slug if p.parent_id and p.parent else None,
        "active_version": active.version if active else None,
        "active_version_id": active.pk if active else None,
    }


def _prompt_versions(p: Prompt) -> list[dict[str, Any]]:
    return [
        _version_out(v, is_active=v.is_active)  # type: ignore[attr-defined]
        for v in selectors.prompt_version_list(prompt=p)
    ]


def _prompt_detail(p: Prompt, chosen: PromptVersion) -> dict[str, Any]:
    is_active = chosen.pk == p.active_version_id
    return _text_detail(_prompt_out(p), chosen, _prompt_versions(p), is_active=is_active)


# --- Templates ---------------------------------------------------------------------------


@router.get("/templates", response=TemplateListOut)
def template_list(request: HttpRequest, filters: Query[TemplateFilters]) -> dict[str, Any]:
    templates = list(selectors.template_list(category=filters.category, tag=filters.tag))
    latest = {
        v.template_id: v
        for v in TemplateVersion.objects.filter(template__in=templates).order_by("version")
    }
    return {
        "count": len(templates),
        "templates": [_template_out(t, latest.get(t.pk)) for t in templates],
    }


@router.post("/templates", response={201: TemplateDetailOut, **E422})
def template_create(request: HttpRequest, payload: TemplateCreateIn) -> Status[dict[str, Any]]:
    template = services.template_create(
        name=payload.name,
        category=payload.category,
        description=payload.description,
        tags=payload.tags,
        **_new_version(request, payload),
    )
    template = selectors.template_get(template_id=template.slug)
    chosen = selectors.template_version_get(template=template)
    return Status(201, _template_detail(template, chosen))


@router.post(
    "/templates/render", response={200: TemplateRenderOut, **E400, **E404}, auth=PROMPTS_READ
)
def template_render(request: HttpRequest, payload: TemplateRenderIn) -> dict[str, Any]:
    template = selectors.template_get(template_id=payload.template_id)
    version = selectors.template_version_get(
        template=template, version_id=payload.version_id, version=payload.version
    )
    text = selectors.text_version_render(version=version, values=payload.variables)
    return {
        "template_id": template.slug,
        "version_id": version.pk,
        "version": version.version,
        "rendered_content": text,
    }


@router.get("/templates/{template_id}", response={200: TemplateDetailOut, **E404})
def template_get(
    request: HttpRequest, template_id: str, query: Query[VersionQuery]
) -> dict[str, Any]:
    template = selectors.template_get(template_id=template_id)
    chosen = selectors.template_version_get(
        template=template, version_id=query.version_id, version=query.version
    )
    return _template_detail(template, chosen)


@router.put("/templates/{template_id}", response={200: TemplateDetailOut, **E404, **E422})
def template_update(
    request: HttpRequest, template_id: str, payload: TemplateUpdateIn
) -> dict[str, Any]:
    template = selectors.template_get(template_id=template_id)
    services.template_update(
        template=template,
        name=payload.name,
        category=payload.category,
        description=payload.description,
        tags=payload.tags,
    )
    version = services.template_version_create(template=template, **_new_version(request, payload))
    return _template_detail(selectors.template_get(template_id=template.slug), version)


@router.delete("/templates/{template_id}", response={200: DeletedOut, **E404})
def template_delete(request: HttpRequest, template_id: str) -> dict[str, Any]:
    template = selectors.template_get(template_id=template_id)
    services.template_delete(template=template)
    return {"success": True, "id": template_id}


@router.get("/templates/{template_id}/versions", response={200: TemplateVersionsOut, **E404})
def template_version_list(request: HttpRequest, template_id: str) -> dict[str, Any]:
    template = selectors.template_get(template_id=template_id)
    versions = [_version_out(v) for v in selectors.template_version_list(template=template)]
    return {"template_id": template.slug, "count": len(versions), "versions": versions}


# --- Prompts -----------------------------------------------------------------------------


@router.get("/prompts", response=PromptListOut)
def prompt_list(request: HttpRequest, filters: Query[PromptFilters]) -> dict[str, Any]:
    prompts = [
        _prompt_out(p) for p in selectors.prompt_list(component=filters.component, tag=filters.tag)
    ]
    return {"count": len(prompts), "prompts": prompts}


@router.post("/prompts", response={201: PromptDetailOut, **E404, **E409, **E422})
def prompt_create(request: HttpRequest, payload: PromptCreateIn) -> Status[dict[str, Any]]:
    components_allowed(request_principal(request), payload.component)  # pinned keys: own only
    parent = selectors.prompt_get(prompt_id=payload.parent_id) if payload.parent_id else None
    prompt = services.prompt_create(
        name=payload.name,
        component=payload.component,
        task_type=payload.task_type,
        description=payload.description,
        tags=payload.tags,
        is_default=payload.is_default,
        parent=parent,
        prompt_id=payload.prompt_id,
        **_new_version(request, payload),
    )
    prompt = selectors.prompt_get(prompt_id=prompt.slug)
    return Status(201, _prompt_detail(prompt, selectors.prompt_version_get(prompt=prompt)))


# --- Prompt generation and personalities -------------------------------------------------


@router.post(
    "/prompts/generate",
    response={200: PromptGenerateOut, **E400, **E404, **E422},
    auth=PROMPTS_READ,
)
def prompt_generate(request: HttpRequest, payload: PromptGenerateIn) -> dict[str, Any]:
    """Compose a system prompt for a task: the component's prompt (rendered with
    `variables` and the string entries of `context`), a personality, the context and
    the task. `format: "chat"` returns the task as the user's turn in `messages`."""
    generated = selectors.prompt_generate(
        task=payload.task,
        component=payload.component,
        task_type=payload.task_type,
        prompt_id=payload.prompt_id,
        personality_id=payload.personality_id,
        context=payload.context,
        variables=payload.variables,
        format=payload.format,
    )
    metrics = text_metrics(generated.prompt)
    personality = generated.personality
    return {
        "prompt": generated.prompt,
        "system_prompt": generated.system,
        "messages": generated.messages,
        "format": generated.format,
        "task": generated.task,
        "component": generated.component,
        "prompt_id": generated.prompt_id,
        "prompt_version": generated.prompt_version,
        "personality_id": personality.pk if personality else None,
        "personality": personality.name if personality else None,
        "sections": generated.sections,
        "length": metrics.length,
        "tokens": metrics.tokens,
    }


def _personality_out(p: Personality) -> dict[str, Any]:
    return {
        "personality_id": p.pk,
        "name": p.name,
        "traits": [str(t) for t in p.traits or []],
        "tone": p.tone,
        "description": p.description,
        "examples": [str(e) for e in p.examples or []],
        # Annotated by the selectors; a personality just created has no prompts yet.
        "prompt_count": getattr(p, "prompt_count", 0),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


@router.get("/personalities", response=PersonalityListOut)
def personality_list(request: HttpRequest) -> dict[str, Any]:
    personalities = [_personality_out(p) for p in selectors.personality_list()]
    return {"count": len(personalities), "personalities": personalities}


@router.post("/personalities", response={201: PersonalityOut, **E409, **E422})
def personality_create(
    request: HttpRequest, payload: PersonalityCreateIn
) -> Status[dict[str, Any]]:
    personality = services.personality_create(
        name=payload.name,
        traits=payload.traits,
        tone=payload.tone,
        description=payload.description,
        examples=payload.examples,
    )
    return Status(201, _personality_out(personality))


@router.get("/personalities/{personality_id}", response={200: PersonalityOut, **E404})
def personality_get(request: HttpRequest, personality_id: str) -> dict[str, Any]:
    """A personality by its number or its name."""
    return _personality_out(selectors.personality_get(personality_id=personality_id))


@router.get("/prompts/{prompt_id}", response={200: PromptDetailOut, **E404})
def prompt_get(request: HttpRequest, prompt_id: str, query: Query[VersionQuery]) -> dict[str, Any]:
    prompt = selectors.prompt_get(prompt_id=prompt_id)
    chosen = selectors.prompt_version_get(
        prompt=prompt, version_id=query.version_id, version=query.version
    )
    return _prompt_detail(prompt, chosen)


@router.put("/prompts/{prompt_id}", response={200: PromptDetailOut, **E404, **E422})
def prompt_update(request: HttpRequest, prompt_id: str, payload: PromptUpdateIn) -> dict[str, Any]:
    """Adds a version (active unless `activate` is false) and updates the given fields."""
    prompt = selectors.prompt_get(prompt_id=prompt_id)
    components_allowed(request_principal(request), prompt.component)  # pinned: own only
    services.prompt_update(
        prompt=prompt,
        name=payload.name,
        description=payload.description,
        tags=payload.tags,
        is_default=payload.is_default,
    )
    version = services.prompt_version_create(
        prompt=prompt, activate=payload.activate, **_new_version(request, payload)
    )
    return _prompt_detail(selectors.prompt_get(prompt_id=prompt.slug), version)


@router.delete("/prompts/{prompt_id}", response={200: DeletedOut, **E404, **E409})
def prompt_delete(request: HttpRequest, prompt_id: str) -> dict[str, Any]:
    prompt = selectors.prompt_get(prompt_id=prompt_id)
    components_allowed(request_principal(request), prompt.component)  # pinned: own only
    services.prompt_delete(prompt=prompt)
    return {"success": True, "id": prompt_id}


@router.get("/prompts/{prompt_id}/versions", response={200: PromptVersionsOut, **E404})
def prompt_version_list(request: HttpRequest, prompt_id: str) -> dict[str, Any]:
    prompt = selectors.prompt_get(prompt_id=prompt_id)
    versions = _prompt_versions(prompt)
    return {
        "prompt_id": prompt.slug,
        "active_version": prompt.active_version.version if prompt.active_version else None,
        "count": len(versions),
        "versions": versions,
    }


def _activation_out(prompt: Prompt, changed: bool, activation: Any) -> dict[str, Any]:
    active = prompt.active_version
    assert active is not None  # noqa: S101 - activation always sets it
    return {
        "prompt_id": prompt.slug,
        "active_version": active.version,
        "active_version_id": active.pk,
        "previous_version": (
            activation.previous_version.version
            if activation and activation.previous_version
            else None
        ),
        "activated_by": activation.activated_by if activation else "",
        "activated_at": activation.created_at if activation else None,
        "changed": changed,
    }


@router.post("/prompts/{prompt_id}/activate", response={200: PromptActivationOut, **E404, **E422})
def prompt_version_activate(
    request: HttpRequest, prompt_id: str, payload: PromptActivateIn
) -> dict[str, Any]:
    """Point the prompt at a version (by number `version` or pk `version_id`)."""
    if payload.version is None and payload.version_id is None:
        raise ContentInvalid("Give the `version` (number) to activate.", field="version")
    prompt = selectors.prompt_get(prompt_id=prompt_id)
    components_allowed(request_principal(request), prompt.component)  # pinned: own only
    version = selectors.prompt_version_get(
        prompt=prompt, version_id=payload.version_id, version=payload.version
    )
    activation = services.prompt_version_activate(
        prompt=prompt, version=version, activated_by=_actor(request), note=payload.note
    )
    return _activation_out(prompt, activation is not None, activation)


@router.post("/prompts/{prompt_id}/rollback", response={200: PromptActivationOut, **E404, **E409})
def prompt_rollback(
    request: HttpRequest, prompt_id: str, payload: PromptRollbackIn | None = None
) -> dict[str, Any]:
    """Move the pointer back to the version active before the current one."""
    prompt = selectors.prompt_get(prompt_id=prompt_id)
    components_allowed(request_principal(request), prompt.component)  # pinned: own only
    activation = services.prompt_rollback(prompt=prompt, activated_by=_actor(request))
    return _activation_out(prompt, True, activation)

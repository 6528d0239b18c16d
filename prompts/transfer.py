"""Import and export of templates, prompts and personalities (YAML or JSON).

`prompts_export` / `prompts_import` round-trip Rhetor's own format with every version
(numbers, authors, dates, notes) and the active pointer; importing the same file twice
changes nothing. `tekton_prompts_import` reads the original Rhetor's files:
`prompts/<prompt_id>.yaml` and `templates/<category>/<template_id>.yaml`.

Existing versions are never rewritten: a file whose version N differs from the stored
version N is refused (`ImportConflict`) and nothing is imported.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone

from prompts.errors import ContentInvalid
from prompts.models import (
    Engine,
    Personality,
    Prompt,
    PromptVersion,
    Template,
    TextVersion,
    VersionedText,
)
from prompts.rendering import extract_variables
from prompts.services import (
    _clean,
    _prompt_default_take_over,
    prompt_version_activate,
    text_version_create,
)
from rhetor_site.errors import RhetorError

FORMAT = "rhetor-prompts/1"
TEKTON_ID_KEY = "tekton_version_id"


class ImportConflict(RhetorError):
    status = 409
    code = "import_conflict"


class ImportFormatError(RhetorError):
    status = 400
    code = "import_format_error"


@dataclass
class ImportSummary:
    templates_created: int = 0
    prompts_created: int = 0
    personalities_created: int = 0
    versions_created: int = 0
    versions_unchanged: int = 0
    activations: int = 0
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"{self.templates_created} templates, {self.prompts_created} prompts, "
            f"{self.personalities_created} personalities created; "
            f"{self.versions_created} versions added, {self.versions_unchanged} unchanged; "
            f"{self.activations} activations"
        )
        if self.skipped:
            text += f"; skipped: {', '.join(self.skipped)}"
        return text


# --- Files -------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dump(data: dict[str, Any], path: Path) -> None:
    """Write YAML for .yaml/.yml, JSON otherwise."""
    if path.suffix.lower() in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    path.write_text(text, encoding="utf-8")


def load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ImportFormatError(f"{path}: not valid {path.suffix.lstrip('.')}: {exc}") from exc


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


# --- Export ------------------------------------------------------------------------------


def _version_data(v: TextVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "content": v.content,
        "engine": v.engine,
        "variables": v.variables,
        "metadata": v.metadata,
        "created_by": v.created_by,
        "created_at": v.created_at.isoformat(),
        "change_note": v.change_note,
    }


def prompts_export() -> dict[str, Any]:
    """Everything, in Rhetor's format: a plain dict ready for YAML or JSON."""
    templates = Template.objects.prefetch_related("versions").order_by("slug")
    prompts = Prompt.objects.select_related("parent", "personality", "active_version")
    return {
        "format": FORMAT,
        "exported_at": timezone.now().isoformat(),
        "personalities": [
            {
                "name": p.name,
                "traits": p.traits,
                "tone": p.tone,
                "description": p.description,
                "examples": p.examples,
            }
            for p in Personality.objects.order_by("name")
        ],
        "templates": [
            {
                "template_id": t.slug,
                "name": t.name,
                "category": t.category,
                "description": t.description,
                "tags": t.tags,
                "versions": [
                    _version_data(v) for v in sorted(t.versions.all(), key=lambda v: v.version)
                ],
            }
            for t in templates
        ],
        "prompts": [
            {
                "prompt_id": p.slug,
                "name": p.name,
                "component": p.component,
                "task_type": p.task_type,
                "description": p.description,
                "tags": p.tags,
                "is_default": p.is_default,
                "parent_id": p.parent.slug if p.parent else None,
                "personality": p.personality.name if p.personality else None,
                "active_version": p.active_version.version if p.active_version else None,
                "versions": [
                    _version_data(v) for v in sorted(p.versions.all(), key=lambda v: v.version)
                ],
            }
            for p in prompts.prefetch_related("versions").order_by("slug")
        ],
    }


# --- Import (Rhetor format) ---------------------------------------------------------------


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry or entry[key] in (None, ""):
        raise ImportFormatError(f"{where}: '{key}' is required")
    return entry[key]


def _merge_versions(
    *,
    owner: VersionedText,
    versions: list[dict[str, Any]],
    where: str,
    summary: ImportSummary,
) -> None:
    existing = {v.version: v for v in owner.versions.all()}
    for entry in sorted(versions, key=lambda e: int(_require(e, "version", where))):
        number = int(entry["version"])
        content = _require(entry, "content", f"{where} v{number}")
        engine = entry.get("engine") or Engine.SIMPLE
        stored = existing.get(number)
        if stored is not None:
            if stored.content != content or stored.engine != engine:
                raise ImportConflict(
                    f"{where}: version {number} differs from the stored version {number}; "
                    "versions are immutable, so nothing was imported."
                )
            summary.versions_unchanged += 1
            continue
        text_version_create(
            text=owner,
            version_model=owner.versions.model,
            content=content,
            metadata=entry.get("metadata") or {},
            variables=entry.get("variables") or None,
            engine=engine,
            created_by=entry.get("created_by") or "",
            change_note=entry.get("change_note") or "",
            version=number,
            created_at=_when(entry.get("created_at")),
        )
        summary.versions_created += 1


def _upsert(model: type[VersionedText], slug: str, fields: dict[str, Any]) -> bool:
    """Create or update the row's own fields; True when created."""
    obj = model._default_manager.filter(slug=slug).first()
    created = obj is None
    if obj is None:
        obj = model(slug=slug)
    changed = created
    for name, value in fields.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    if changed:
        if model is Prompt and fields.get("is_default"):
            _prompt_default_take_over(component=fields["component"], slug=slug)
        _clean(obj, exclude=["active_version"])
        obj.save()
    return created


@transaction.atomic
def prompts_import(*, data: Any) -> ImportSummary:
    """Import Rhetor's export format; idempotent."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportFormatError(f"Not a Rhetor prompt export (expected format '{FORMAT}').")
    summary = ImportSummary()
    for entry in data.get("personalities") or []:
        name = _require(entry, "name", "personality")
        values = {k: entry[k] for k in ("traits", "tone", "description", "examples") if k in entry}
        personality, created = Personality.objects.get_or_create(name=name, defaults=values)
        summary.personalities_created += int(created)
        if not created and any(getattr(personality, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(personality, k, v)
            _clean(personality)
            personality.save()
    for entry in data.get("templates") or []:
        slug = _require(entry, "template_id", "template")
        created = _upsert(
            Template,
            slug,
            {
                "name": _require(entry, "name", slug),
                "category": entry.get("category") or Template.Category.GENERAL,
                "description": entry.get("description") or "",
                "tags": entry.get("tags") or [],
            },
        )
        summary.templates_created += int(created)
        template = Template.objects.get(slug=slug)
        _merge_versions(
            owner=template, versions=entry.get("versions") or [], where=slug, summary=summary
        )
    entries = data.get("prompts") or []
    for entry in entries:
        slug = _require(entry, "prompt_id", "prompt")
        personality_name = entry.get("personality")
        created = _upsert(
            Prompt,
            slug,
            {
                "name": _require(entry, "name", slug),
                "component": _require(entry, "component", slug),
                "task_type": entry.get("task_type") or "",
                "description": entry.get("description") or "",
                "tags": entry.get("tags") or [],
                "is_default": bool(entry.get("is_default")),
                "personality": (
                    Personality.objects.get(name=personality_name) if personality_name else None
                ),
            },
        )
        summary.prompts_created += int(created)
        prompt = Prompt.objects.select_related("active_version").get(slug=slug)
        _merge_versions(
            owner=prompt, versions=entry.get("versions") or [], where=slug, summary=summary
        )
        _point(prompt, entry.get("active_version"), summary)
    _link_parents(entries, summary)
    return summary


def _point(prompt: Prompt, number: Any, summary: ImportSummary) -> None:
    """Move the pointer to the file's active version (or the latest if none is named).
    `number` is the file's `active_version` value as parsed, hence `Any`."""
    prompt.refresh_from_db(fields=["active_version"])
    qs = prompt.versions.all()
    target = qs.filter(version=int(number)).first() if number else qs.order_by("-version").first()
    if target is None or prompt.active_version_id == target.pk:
        return
    prompt_version_activate(prompt=prompt, version=target, activated_by="import", note="Imported")
    summary.activations += 1


def _link_parents(entries: list[dict[str, Any]], summary: ImportSummary) -> None:
    for entry in entries:
        parent_id = entry.get("parent_id")
        if not parent_id:
            continue
        parent = Prompt.objects.filter(slug=parent_id).first()
        if parent is None:
            summary.skipped.append(f"{entry['prompt_id']}: unknown parent '{parent_id}'")
            continue
        Prompt.objects.filter(slug=entry["prompt_id"]).exclude(parent=parent).update(parent=parent)


# --- Import (the original Rhetor's files) -------------------------------------------------


def _engine_for(content: str) -> str:
    """The original rendered templates with Jinja2; keep the simple engine when the text
    only uses `{{ name }}`, and the sandbox when it needs more."""
    try:
        extract_variables(content=content, engine=Engine.SIMPLE)
    except ContentInvalid:
        return Engine.JINJA
    return Engine.JINJA if "{%" in content else Engine.SIMPLE


def _tekton_versions(data: dict[str, Any]) -> list[dict[str, Any]]:
    versions = data.get("versions")
    if not versions:
        current = data.get("current_version")
        versions = [current] if current else []
    return [v for v in versions if isinstance(v, dict) and "content" in v]


def _tekton_merge(
    *, owner: VersionedText, versions: list[dict[str, Any]], summary: ImportSummary
) -> TextVersion | None:
    """Append the file's versions not yet imported (matched by the original version_id,
    kept in the version's metadata); return the row of the file's current (last) one."""
    seen = {
        v.metadata.get(TEKTON_ID_KEY): v
        for v in owner.versions.all()
        if isinstance(v.metadata, dict) and v.metadata.get(TEKTON_ID_KEY)
    }
    last = None
    for entry in versions:
        original_id = str(entry.get("version_id") or "")
        if original_id and original_id in seen:
            summary.versions_unchanged += 1
            last = seen[original_id]
            continue
        meta = dict(entry.get("metadata") or {})
        content = str(entry["content"])
        last = text_version_create(
            text=owner,
            version_model=owner.versions.model,
            content=content,
            metadata={**meta, TEKTON_ID_KEY: original_id} if original_id else meta,
            engine=_engine_for(content),
            created_by=str(meta.get("created_by") or "tekton import"),
            change_note=str(meta.get("note") or "Imported from the original Rhetor"),
            created_at=_when(entry.get("created_at")),
            variables={},
        )
        summary.versions_created += 1
    return last


@transaction.atomic
def tekton_prompts_import(*, root: Path) -> ImportSummary:
    """Import `root/prompts/*.yaml` and `root/templates/<category>/*.yaml`; idempotent."""
    summary = ImportSummary()
    prompt_files = sorted((root / "prompts").glob("*.yaml"))
    template_files = sorted((root / "templates").glob("*/*.yaml"))
    if not prompt_files and not template_files:
        raise ImportFormatError(
            f"{root}: no prompts/<prompt_id>.yaml or templates/<category>/<id>.yaml files"
        )
    for path in template_files:
        data = load(path)
        if not isinstance(data, dict):
            summary.skipped.append(f"{path.name}: not a mapping")
            continue
        slug = str(data.get("template_id") or path.stem)
        category = str(data.get("category") or path.parent.name)
        if category not in Template.Category.values:
            category = Template.Category.GENERAL
        summary.templates_created += int(
            _upsert(
                Template,
                slug,
                {
                    "name": str(data.get("name") or slug),
                    "category": category,
                    "description": str(data.get("description") or ""),
                    "tags": list(data.get("tags") or []),
                },
            )
        )
        try:
            _tekton_merge(
                owner=Template.objects.get(slug=slug),
                versions=_tekton_versions(data),
                summary=summary,
            )
        except ContentInvalid as exc:
            raise ImportFormatError(f"{path}: {exc.message}") from exc
    entries: list[dict[str, Any]] = []
    for path in prompt_files:
        data = load(path)
        if not isinstance(data, dict) or not data.get("component"):
            summary.skipped.append(f"{path.name}: no component")
            continue
        slug = str(data.get("prompt_id") or path.stem)
        entries.append({"prompt_id": slug, "parent_id": data.get("parent_id")})
        summary.prompts_created += int(
            _upsert(
                Prompt,
                slug,
                {
                    "name": str(data.get("name") or slug),
                    "component": str(data["component"]),
                    "description": str(data.get("description") or ""),
                    "tags": list(data.get("tags") or []),
                    "is_default": bool(data.get("is_default")),
                },
            )
        )
        prompt = Prompt.objects.get(slug=slug)
        added_before = summary.versions_created
        try:
            current = _tekton_merge(owner=prompt, versions=_tekton_versions(data), summary=summary)
        except ContentInvalid as exc:
            raise ImportFormatError(f"{path}: {exc.message}") from exc
        # Only new versions move the pointer: a re-import never undoes an operator's
        # later activation or rollback.
        new_versions = summary.versions_created > added_before
        # The owner is a Prompt, so its merged current version is a PromptVersion.
        if (
            isinstance(current, PromptVersion)
            and new_versions
            and prompt.active_version_id != current.pk
        ):
            prompt_version_activate(
                prompt=prompt, version=current, activated_by="tekton import", note="Imported"
            )
            summary.activations += 1
    _link_parents(entries, summary)
    return summary

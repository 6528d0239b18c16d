"""export_prompts / import_prompts / import_tekton_prompts, and the default prompts that the
data migration creates."""

import io
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from prompts import services
from prompts.models import (
    Engine,
    Personality,
    Prompt,
    PromptActivation,
    PromptVersion,
    Template,
    TemplateVersion,
)

COMPONENTS = [
    "engram",
    "hermes",
    "prometheus",
    "ergon",
    "rhetor",
    "telos",
    "sophia",
    "athena",
    "synthesis",
    "harmonia",
    "metis",
    "apollo",
    "budget",
    "terma",
    "hephaestus",
]

# What the original Rhetor's PromptRegistry.save_prompt wrote (yaml.dump of to_dict()).
TEKTON_PROMPT = """\
prompt_id: ergon_reviewer
name: Ergon Reviewer
component: ergon
description: Reviews agent output
tags:
- review
is_default: false
parent_id: ergon_base
current_version:
  content: Review the work of {{ agent }} carefully.
  version_id: 5b1c0000-0000-4000-8000-000000000002
  created_at: '2025-04-20T10:00:00.000000'
  metadata:
    note: stricter
  component: ergon
versions:
- content: Review the work of {{ agent }}.
  version_id: 5b1c0000-0000-4000-8000-000000000001
  created_at: '2025-04-19T09:00:00.000000'
  metadata:
    created_by: user
  component: ergon
- content: Review the work of {{ agent }} carefully.
  version_id: 5b1c0000-0000-4000-8000-000000000002
  created_at: '2025-04-20T10:00:00.000000'
  metadata:
    note: stricter
  component: ergon
"""
TEKTON_BASE = """\
prompt_id: ergon_base
name: Ergon Base
component: ergon
description: ''
tags: []
is_default: false
parent_id: null
current_version:
  content: You are Ergon.
  version_id: aa000000-0000-4000-8000-000000000001
  created_at: '2025-04-18T08:00:00'
  metadata: {}
  component: ergon
versions:
- content: You are Ergon.
  version_id: aa000000-0000-4000-8000-000000000001
  created_at: '2025-04-18T08:00:00'
  metadata: {}
  component: ergon
"""
TEKTON_TEMPLATE = """\
template_id: code_task
name: Code Task
description: A coding task
category: task
variables:
- language
- items
tags:
- code
current_version:
  content: 'Write {{ language }}:{% for i in items %} {{ i }}{% endfor %}'
  version_id: cc000000-0000-4000-8000-000000000001
  created_at: '2025-04-18T08:00:00'
  metadata:
    created_by: user
versions:
- content: 'Write {{ language }}:{% for i in items %} {{ i }}{% endfor %}'
  version_id: cc000000-0000-4000-8000-000000000001
  created_at: '2025-04-18T08:00:00'
  metadata:
    created_by: user
"""


@pytest.fixture
def tekton_dir(tmp_path: Path) -> Path:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "templates" / "task").mkdir(parents=True)
    (tmp_path / "prompts" / "ergon_reviewer.yaml").write_text(TEKTON_PROMPT)
    (tmp_path / "prompts" / "ergon_base.yaml").write_text(TEKTON_BASE)
    (tmp_path / "templates" / "task" / "code_task.yaml").write_text(TEKTON_TEMPLATE)
    return tmp_path


def _run(name: str, *args: object) -> str:
    out = io.StringIO()
    call_command(name, *[str(a) for a in args], stdout=out)
    return out.getvalue()


def _snapshot() -> list[tuple[object, ...]]:
    return [
        *PromptVersion.objects.order_by("pk").values_list("pk", "prompt__slug", "version"),
        *TemplateVersion.objects.order_by("pk").values_list("pk", "template__slug", "version"),
        *Prompt.objects.order_by("pk").values_list("slug", "active_version_id", "parent_id"),
        *PromptActivation.objects.order_by("pk").values_list("pk"),
    ]


# --- The data migration -------------------------------------------------------------------


def test_every_component_has_its_default_prompt(db) -> None:
    defaults = Prompt.objects.filter(is_default=True).select_related("active_version")

    assert sorted(p.slug for p in defaults) == sorted(f"{c}_default" for c in COMPONENTS)
    assert len(defaults) == 15
    for prompt in defaults:
        assert prompt.component == prompt.slug.removesuffix("_default")
        assert prompt.active_version.version == 1
        assert prompt.active_version.content.startswith("You are ")
        assert prompt.active_version.variables == {}
    texts = {p.active_version.content for p in defaults}
    assert len(texts) == 15  # each written for its component's role


# --- Export / import ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_export_then_import_into_an_empty_database_preserves_versions(
    db, tmp_path: Path, suffix: str, reviewer: Prompt, greeting: Template
) -> None:
    personality = services.personality_create(name="Calm", traits=["patient"], tone="warm")
    services.prompt_update(prompt=reviewer, personality=personality, parent=None)
    v2 = services.prompt_version_create(
        prompt=reviewer, content="v2 {{ language }}", change_note="second", created_by="op"
    )
    services.template_version_create(
        template=greeting, content="Hi {{ name }}", variables={"name": {"type": "string"}}
    )
    path = tmp_path / f"export{suffix}"

    exported = _run("export_prompts", path)
    data = (yaml.safe_load if suffix == ".yaml" else json.loads)(path.read_text())
    Prompt.objects.all().delete()
    Template.objects.all().delete()
    Personality.objects.all().delete()
    imported = _run("import_prompts", path)

    assert exported.startswith("Exported 1 templates, 16 prompts and 19 versions to ")
    assert data["format"] == "rhetor-prompts/1"
    assert "16 prompts" in imported
    prompt = Prompt.objects.get(slug="code_reviewer")
    assert prompt.personality.name == "Calm"
    assert prompt.active_version.version == 1
    restored = prompt.versions.get(version=2)
    assert (restored.content, restored.change_note, restored.created_by) == (
        v2.content,
        "second",
        "op",
    )
    assert restored.created_at == v2.created_at
    assert list(greeting_versions()) == [
        (2, "Hi {{ name }}", "string"),
        (1, "Hello {{ name }}, welcome to {{ place }}.", "any"),
    ]


def greeting_versions() -> list[tuple[int, str, str]]:
    return [
        (v.version, v.content, v.variable_specs["name"]["type"])
        for v in TemplateVersion.objects.filter(template__slug="greeting").order_by("-version")
    ]


def test_import_is_idempotent(db, tmp_path: Path, reviewer: Prompt) -> None:
    path = tmp_path / "all.yaml"
    _run("export_prompts", path)
    before = _snapshot()

    output = _run("import_prompts", path)

    assert _snapshot() == before
    assert "0 templates, 0 prompts, 0 personalities created; 0 versions added" in output


def test_import_refuses_to_rewrite_a_stored_version(db, tmp_path: Path, reviewer) -> None:
    path = tmp_path / "all.json"
    _run("export_prompts", path)
    data = json.loads(path.read_text())
    entry = next(p for p in data["prompts"] if p["prompt_id"] == "code_reviewer")
    entry["versions"][0]["content"] = "tampered"
    entry["versions"].append({**entry["versions"][0], "version": 2, "content": "new"})
    path.write_text(json.dumps(data))
    before = _snapshot()

    with pytest.raises(CommandError, match="version 1 differs from the stored version 1"):
        _run("import_prompts", path)

    assert _snapshot() == before


def test_import_rejects_a_file_of_another_format(db, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"prompts": []}')

    with pytest.raises(CommandError, match="Not a Rhetor prompt export"):
        _run("import_prompts", path)


# --- The original Rhetor's files ----------------------------------------------------------


def test_import_tekton_prompts_reads_the_original_format(db, tekton_dir: Path) -> None:
    output = _run("import_tekton_prompts", tekton_dir)

    assert "1 templates, 2 prompts" in output
    reviewer = Prompt.objects.get(slug="ergon_reviewer")
    assert (reviewer.name, reviewer.component, reviewer.tags) == (
        "Ergon Reviewer",
        "ergon",
        ["review"],
    )
    assert reviewer.parent.slug == "ergon_base"
    versions = list(reviewer.versions.order_by("version"))
    assert [(v.version, v.content) for v in versions] == [
        (1, "Review the work of {{ agent }}."),
        (2, "Review the work of {{ agent }} carefully."),
    ]
    assert versions[1].change_note == "stricter"
    assert versions[1].metadata["tekton_version_id"] == "5b1c0000-0000-4000-8000-000000000002"
    assert versions[1].created_at.isoformat() == "2025-04-20T10:00:00+00:00"
    assert reviewer.active_version == versions[1]
    template = Template.objects.get(slug="code_task")
    latest = template.versions.get()
    assert (template.category, latest.engine) == ("task", Engine.JINJA)
    assert latest.variable_names == ["language", "items"]


def test_import_tekton_prompts_twice_changes_nothing(db, tekton_dir: Path) -> None:
    _run("import_tekton_prompts", tekton_dir)
    before = _snapshot()

    output = _run("import_tekton_prompts", tekton_dir)

    assert _snapshot() == before
    assert "0 versions added, 4 unchanged" in output


def test_import_tekton_prompts_needs_the_original_layout(db, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"no prompts/<prompt_id>\.yaml"):
        _run("import_tekton_prompts", tmp_path)

    assert Prompt.objects.count() == 15

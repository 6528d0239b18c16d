"""Services: versions are appended, never rewritten; the pointer moves with a record."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from prompts import services
from prompts.errors import (
    ContentInvalid,
    NothingToRollBack,
    PromptAlreadyExists,
    VersionImmutable,
)
from prompts.models import Prompt, PromptActivation, PromptVersion, Template, TemplateVersion


def test_template_id_is_a_slug_of_the_name_made_unique(db) -> None:
    first = services.template_create(name="Code Review: Python!", content="x")
    second = services.template_create(name="Code review python", content="y")

    assert first.slug == "code_review_python"
    assert second.slug == "code_review_python_1"


def test_editing_a_template_appends_a_version(greeting: Template) -> None:
    version = services.template_version_create(
        template=greeting, content="Hi {{ name }}", created_by="op", change_note="shorter"
    )

    assert version.version == 2
    assert list(greeting.versions.values_list("version", "content")) == [
        (2, "Hi {{ name }}"),
        (1, "Hello {{ name }}, welcome to {{ place }}."),
    ]
    assert version.variable_names == ["name"]


def test_new_version_keeps_typed_declarations_for_names_it_still_uses(db) -> None:
    template = services.template_create(
        name="t",
        content="{{ n }} {{ gone }}",
        variables={"n": {"type": "integer", "default": 2}, "gone": {"type": "string"}},
    )

    version = services.template_version_create(template=template, content="n={{ n }}")

    assert version.variables == [
        {"name": "n", "type": "integer", "required": False, "default": 2, "description": ""}
    ]


def test_invalid_content_creates_no_version(greeting: Template) -> None:
    with pytest.raises(ContentInvalid):
        services.template_version_create(template=greeting, content="{{ bad.name }}")

    assert greeting.versions.count() == 1


def test_saving_an_existing_version_is_refused(reviewer: Prompt) -> None:
    version = reviewer.versions.get()
    version.content = "rewritten"

    with pytest.raises(VersionImmutable):
        version.save()

    assert PromptVersion.objects.get(pk=version.pk).content == "You review {{ language }} code."


@pytest.mark.parametrize("_case", ["_prompt_versions", "_template_versions", "_activations"])
def test_queryset_update_of_append_only_rows_is_refused(_case: str, reviewer, greeting) -> None:
    model = {
        "_prompt_versions": PromptVersion,
        "_template_versions": TemplateVersion,
        "_activations": PromptActivation,
    }[_case]
    before = list(model.objects.values())

    with pytest.raises(VersionImmutable):
        model.objects.all().update(created_at=None)

    assert list(model.objects.values()) == before


def test_prompt_create_makes_version_one_active_with_a_record(db) -> None:
    prompt = services.prompt_create(
        name="Planner", component="prometheus", content="Plan.", created_by="op"
    )

    assert prompt.slug == "planner"
    assert prompt.active_version.version == 1
    activation = PromptActivation.objects.get(prompt=prompt)
    assert activation.version_id == prompt.active_version_id
    assert activation.previous_version_id is None
    assert activation.activated_by == "op"


def test_explicit_prompt_id_must_be_free(reviewer: Prompt) -> None:
    with pytest.raises(PromptAlreadyExists):
        services.prompt_create(name="x", component="ergon", content="x", prompt_id="code_reviewer")

    assert Prompt.objects.filter(name="x").exists() is False


def test_a_new_default_takes_over_from_the_components_previous_default(db) -> None:
    prompt = services.prompt_create(
        name="Ergon v2", component="ergon", content="New.", is_default=True
    )

    assert list(Prompt.objects.filter(component="ergon", is_default=True)) == [prompt]
    assert Prompt.objects.get(slug="ergon_default").is_default is False


def test_new_version_is_not_active_until_activated(reviewer: Prompt) -> None:
    v1 = reviewer.active_version
    v2 = services.prompt_version_create(prompt=reviewer, content="v2 {{ language }}")

    reviewer.refresh_from_db()
    assert reviewer.active_version == v1

    activation = services.prompt_version_activate(prompt=reviewer, version=v2, activated_by="op")

    reviewer.refresh_from_db()
    assert reviewer.active_version == v2
    assert (activation.version, activation.previous_version) == (v2, v1)


def test_activating_the_active_version_records_nothing(reviewer: Prompt) -> None:
    result = services.prompt_version_activate(prompt=reviewer, version=reviewer.active_version)

    assert result is None
    assert reviewer.activations.count() == 1


def test_rollback_moves_the_pointer_back_and_records_who(reviewer: Prompt) -> None:
    v1 = reviewer.active_version
    services.prompt_version_create(prompt=reviewer, content="v2 {{ language }}", activate=True)
    reviewer.refresh_from_db()

    activation = services.prompt_rollback(prompt=reviewer, activated_by="op")

    reviewer.refresh_from_db()
    assert reviewer.active_version == v1
    assert activation.activated_by == "op"
    assert activation.note == "Rolled back from version 2 to 1"
    assert reviewer.versions.count() == 2


def test_rollback_without_history_is_refused(reviewer: Prompt) -> None:
    with pytest.raises(NothingToRollBack):
        services.prompt_rollback(prompt=reviewer)

    assert reviewer.activations.count() == 1


def test_no_service_ever_updates_a_version_row(db, greeting: Template) -> None:
    with CaptureQueriesContext(connection) as queries:
        prompt = services.prompt_create(name="p", component="ergon", content="a {{ x }}")
        v2 = services.prompt_version_create(prompt=prompt, content="b {{ x }}", activate=True)
        services.prompt_rollback(prompt=prompt)
        services.prompt_version_activate(prompt=prompt, version=v2)
        services.prompt_update(prompt=prompt, name="renamed", is_default=True)
        services.template_version_create(template=greeting, content="c")
        services.template_update(template=greeting, name="renamed")

    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert updates
    assert [sql for sql in updates if "version" in sql.split("SET")[0]] == []
    assert [sql for sql in updates if "activation" in sql.split("SET")[0]] == []

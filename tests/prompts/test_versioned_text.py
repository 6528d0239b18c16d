"""The versioned-text core: templates and prompts number, carry, read and render their
versions alike (each test runs for both kinds)."""

import pytest

from prompts import selectors, services
from prompts.errors import ContentInvalid, TemplateVariablesMissing
from prompts.models import Prompt, Template, TextVersion, VersionedText

KINDS = ["_template", "_prompt"]
MODELS = {"_template": Template, "_prompt": Prompt}


def make(kind: str, **first: object) -> VersionedText:
    if kind == "_template":
        return services.template_create(name="Doc", **first)
    return services.prompt_create(name="Doc", component="ergon", **first)


def add(text: VersionedText, **fields: object) -> TextVersion:
    if isinstance(text, Template):
        return services.template_version_create(template=text, **fields)
    assert isinstance(text, Prompt)
    return services.prompt_version_create(prompt=text, **fields)


@pytest.mark.parametrize("_case", KINDS)
def test_versions_number_in_turn_and_keep_engine_and_declarations(_case: str, db) -> None:
    text = make(
        _case,
        content="{{ n }}{% if x %}!{% endif %}",
        engine="jinja",
        variables={"n": {"type": "integer", "default": 2}},
    )

    second = add(text, content="n={{ n }}", created_by="op")

    assert list(text.versions.values_list("version", flat=True)) == [2, 1]
    assert (second.engine, second.created_by, str(second)) == ("jinja", "op", "doc v2")
    assert second.variable_specs == {
        "n": {"type": "integer", "required": False, "default": 2, "description": ""}
    }
    assert text.versions.get(version=1).change_note == "Initial version"


@pytest.mark.parametrize("_case", KINDS)
def test_invalid_content_adds_no_version(_case: str, db) -> None:
    text = make(_case, content="ok")

    with pytest.raises(ContentInvalid):
        add(text, content="{{ a.b }}")

    assert text.versions.count() == 1


@pytest.mark.parametrize("_case", KINDS)
def test_a_version_by_pk_by_number_or_the_latest(_case: str, db) -> None:
    text = make(_case, content="one")
    two = add(text, content="two")
    versions = text.versions.all()

    assert selectors.text_version_get(versions=versions, version=1).content == "one"
    assert selectors.text_version_get(versions=versions, version_id=two.pk) == two
    assert selectors.text_version_get(versions=versions) == two
    assert selectors.text_version_get(versions=versions, version=3) is None


@pytest.mark.parametrize("_case", KINDS)
def test_list_and_get_carry_the_version_stats(_case: str, db) -> None:
    model = MODELS[_case]
    text = make(_case, content="one", tags=["core"])
    two = add(text, content="two")

    listed = selectors.text_list(texts=model.objects.all(), tag="core")
    got = selectors.text_get(texts=model.objects.all(), text_id="doc")

    assert [(t.slug, t.version_count) for t in listed] == [("doc", 2)]
    assert got is not None
    assert (got.version_count, got.last_updated) == (2, two.created_at)
    assert selectors.text_get(texts=model.objects.all(), text_id="nope") is None


@pytest.mark.parametrize("_case", KINDS)
def test_rendering_is_strict_for_every_kind(_case: str, db) -> None:
    version = make(_case, content="{{ a }} and {{ b }}").versions.get()

    rendered = selectors.text_version_render(version=version, values={"a": 1, "b": "two"})
    with pytest.raises(TemplateVariablesMissing) as caught:
        selectors.text_version_render(version=version, values={})

    assert rendered == "1 and two"
    assert caught.value.missing == ["a", "b"]

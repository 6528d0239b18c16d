"""The one rendering engine: strict, single-pass, no escaping, no code execution."""

import pytest

from prompts.errors import (
    ContentInvalid,
    TemplateRenderError,
    TemplateVariablesInvalid,
    TemplateVariablesMissing,
)
from prompts.models import Engine
from prompts.rendering import extract_variables, normalize_variables, render


def test_substitutes_every_occurrence_with_or_without_spaces() -> None:
    text = render(content="{{ a }}-{{a}}-{{  b  }}", values={"a": "x", "b": "y"})

    assert text == "x-x-y"


def test_missing_variables_are_all_listed_in_content_order() -> None:
    with pytest.raises(TemplateVariablesMissing) as caught:
        render(content="{{ zeta }} {{ alpha }} {{ given }} {{ zeta }}", values={"given": 1})

    assert caught.value.missing == ["zeta", "alpha"]
    assert caught.value.status == 400
    assert caught.value.as_body() == {
        "error": "Missing template variables: zeta, alpha",
        "code": "template_variables_missing",
        "missing": ["zeta", "alpha"],
    }


def test_none_counts_as_missing_instead_of_a_blank() -> None:
    with pytest.raises(TemplateVariablesMissing) as caught:
        render(content="Hello {{ name }}", values={"name": None})

    assert caught.value.missing == ["name"]


def test_values_are_never_re_parsed() -> None:
    text = render(
        content="User says: {{ message }} / {{ secret }}",
        values={"message": "{{secret}} and {{ secret }}", "secret": "s3cr3t"},
    )

    assert text == "User says: {{secret}} and {{ secret }} / s3cr3t"


def test_values_are_not_html_escaped() -> None:
    text = render(content="{{ code }}", values={"code": "<b>a & b</b> \"q\" 'r'"})

    assert text == "<b>a & b</b> \"q\" 'r'"


@pytest.mark.parametrize(
    ("_case", "value", "expected"),
    [
        ("_integer", 3, "3"),
        ("_boolean", True, "true"),
        ("_list", ["a", 1], '["a", 1]'),
        ("_object", {"k": "é"}, '{"k": "é"}'),
    ],
)
def test_non_string_values_are_inserted_as_json(_case: str, value: object, expected: str) -> None:
    assert render(content="{{ v }}", values={"v": value}) == expected


def test_format_and_attribute_syntax_are_literal_text_not_code() -> None:
    text = render(content="{0.__class__} {x} {{ name }}", values={"name": "n"})

    assert text == "{0.__class__} {x} n"


def test_malformed_placeholder_is_refused_when_saving() -> None:
    with pytest.raises(ContentInvalid) as caught:
        extract_variables(content="Hi {{ user.name }}")

    assert caught.value.details["field"] == "content"
    assert "{{ user.name }}" in caught.value.message


def test_declared_types_defaults_and_required_flags_are_checked() -> None:
    variables = normalize_variables(
        content="{{ topic }} x{{ limit }} {{ tone }}",
        declared={
            "topic": {"type": "string"},
            "limit": {"type": "integer", "default": 3},
            "tone": {"type": "string", "required": False},
        },
    )

    assert (
        render(
            content="{{ topic }} x{{ limit }} {{ tone }}",
            variables=variables,
            values={"topic": "AI"},
        )
        == "AI x3 "
    )
    with pytest.raises(TemplateVariablesInvalid) as caught:
        render(
            content="{{ topic }} x{{ limit }} {{ tone }}",
            variables=variables,
            values={"topic": 5, "limit": "many"},
        )
    assert caught.value.invalid == [
        {"name": "topic", "message": "expected string"},
        {"name": "limit", "message": "expected integer"},
    ]


def test_undeclared_names_are_required_and_accept_any_type() -> None:
    variables = normalize_variables(content="{{ a }}", declared=None)

    assert variables == [
        {"name": "a", "type": "any", "required": True, "default": None, "description": ""}
    ]


@pytest.mark.parametrize(
    ("_case", "declared"),
    [
        ("_bad_name", ["1abc"]),
        ("_bad_type", {"a": {"type": "float"}}),
        ("_bad_key", {"a": {"kind": "string"}}),
        ("_default_of_wrong_type", {"a": {"type": "integer", "default": "x"}}),
    ],
)
def test_bad_declarations_are_refused_naming_the_field(_case: str, declared: object) -> None:
    with pytest.raises(ContentInvalid) as caught:
        normalize_variables(content="{{ a }}", declared=declared)

    assert caught.value.details["field"] == "variables"


def test_jinja_engine_offers_conditionals_and_loops() -> None:
    content = "{% if items %}{% for i in items %}- {{ i }}\n{% endfor %}{% endif %}{{ who }}"

    text = render(content=content, engine=Engine.JINJA, values={"items": ["a", "b"], "who": "me"})

    assert text == "- a\n- b\nme"


def test_jinja_engine_reports_every_missing_variable() -> None:
    with pytest.raises(TemplateVariablesMissing) as caught:
        render(content="{{ b }}{% for x in a %}{{ x }}{% endfor %}", engine=Engine.JINJA)

    assert caught.value.missing == ["b", "a"]


def test_jinja_engine_does_not_escape_and_does_not_re_parse() -> None:
    text = render(content="{{ v }}", engine=Engine.JINJA, values={"v": "<i>{{ secret }}</i>"})

    assert text == "<i>{{ secret }}</i>"


@pytest.mark.parametrize(
    ("_case", "content", "values"),
    [
        ("_dunder", "{{ v.__class__.__mro__ }}", {"v": "x"}),
        ("_mutation", "{{ v.append(1) }}", {"v": [1]}),
        ("_undefined_attribute", "{{ v.missing }}", {"v": {}}),
    ],
)
def test_jinja_sandbox_refuses_unsafe_or_undefined_access(
    _case: str, content: str, values: dict[str, object]
) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(content=content, engine=Engine.JINJA, values=values)

    assert caught.value.code == "template_render_error"


def test_jinja_syntax_errors_are_refused_when_saving() -> None:
    with pytest.raises(ContentInvalid) as caught:
        extract_variables(content="{% if x %}unclosed", engine=Engine.JINJA)

    assert caught.value.details["field"] == "content"
    assert caught.value.message.startswith("Template syntax error on line 1")

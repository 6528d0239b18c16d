"""The one rendering engine, used by the API, the admin preview and the message path.

Two engines, chosen per version:

- `simple`: `{{ name }}` substitution in a single pass. Values are inserted as plain text
  and never re-parsed (a value containing `{{secret}}` stays literal), nothing is
  HTML-escaped and nothing is executed.
- `jinja`: Jinja2's `ImmutableSandboxedEnvironment` with `StrictUndefined`, for operators
  who need conditionals and loops. Never plain Jinja2, `str.format` or f-strings on
  operator content.

Both are strict: every missing variable is reported at once (`TemplateVariablesMissing`).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from prompts.errors import (
    ContentInvalid,
    TemplateRenderError,
    TemplateVariablesInvalid,
    TemplateVariablesMissing,
)
from prompts.models import Engine, spec_list

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ANY_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

VARIABLE_TYPES = ("string", "integer", "number", "boolean", "list", "object", "any")
SPEC_KEYS = {"type", "required", "default", "description"}

MALFORMED_PLACEHOLDER = (
    "Malformed placeholder {placeholder}: use {{{{ name }}}} with a letter or underscore "
    "followed by letters, digits or underscores."
)
JINJA_SYNTAX = "Template syntax error on line {line}: {message}"
BAD_VARIABLE_NAME = "'{name}' is not a valid variable name."
BAD_VARIABLE_TYPE = "'{name}' has unknown type '{type}'; use one of: {types}."
BAD_VARIABLE_SPEC = "'{name}' must be an object with keys among: {keys}."
BAD_DEFAULT = "the default of '{name}' is not a {type}."
BAD_VARIABLES = "Variables must be a list of names or an object of name -> declaration."

_jinja = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


@dataclass(frozen=True)
class VariableSpec:
    name: str
    type: str = "any"
    required: bool = True
    default: Any = None
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "description": self.description,
        }


# --- Validation (when a version is saved) ------------------------------------------------


def extract_variables(*, content: str, engine: str = Engine.SIMPLE) -> list[str]:
    """The variable names the content uses, in order of first appearance. Raises
    `ContentInvalid` (field `content`) for malformed placeholders or Jinja syntax."""
    if engine == Engine.JINJA:
        try:
            ast = _jinja.parse(content)
        except TemplateSyntaxError as exc:
            raise ContentInvalid(
                JINJA_SYNTAX.format(line=exc.lineno, message=exc.message), field="content"
            ) from exc
        found = meta.find_undeclared_variables(ast)
        # find_undeclared_variables returns a set; order by first textual occurrence.
        return sorted(found, key=lambda n: (_first_index(content, n), n))
    for match in ANY_BRACES.finditer(content):
        if not NAME.match(match.group(1).strip()):
            raise ContentInvalid(
                MALFORMED_PLACEHOLDER.format(placeholder=match.group(0)), field="content"
            )
    names: list[str] = []
    for match in PLACEHOLDER.finditer(content):
        if match.group(1) not in names:
            names.append(match.group(1))
    return names


def _first_index(content: str, name: str) -> int:
    match = re.search(rf"\b{re.escape(name)}\b", content)
    return match.start() if match else len(content)


def normalize_variables(
    *, content: str, engine: str = Engine.SIMPLE, declared: object = None
) -> list[dict[str, Any]]:
    """Validate the content and merge its variables with any declarations.

    `declared` is None, a list of names, or `{name: {"type", "required", "default",
    "description"}}`. Used names not declared become required strings; declared names not
    used are kept (they may be documented for callers). Raises `ContentInvalid`."""
    used = extract_variables(content=content, engine=engine)
    specs: dict[str, VariableSpec] = {}
    for spec in _parse_declared(declared):
        specs[spec.name] = spec
    ordered = [specs.pop(name, VariableSpec(name=name)).as_dict() for name in used]
    ordered += [spec.as_dict() for spec in specs.values()]
    return ordered


def _parse_declared(declared: object) -> list[VariableSpec]:
    if declared is None or declared == [] or declared == {}:
        return []
    if isinstance(declared, list):
        items: list[tuple[object, object]] = []
        for entry in declared:
            if isinstance(entry, dict) and "name" in entry:
                rest = {k: v for k, v in entry.items() if k != "name"}
                items.append((entry["name"], rest))
            else:
                items.append((entry, {}))
    elif isinstance(declared, dict):
        items = list(declared.items())
    else:
        raise ContentInvalid(BAD_VARIABLES, field="variables")
    return [_parse_one(name, raw) for name, raw in items]


def _parse_one(name: object, raw: object) -> VariableSpec:
    if not isinstance(name, str) or not NAME.match(name):
        raise ContentInvalid(BAD_VARIABLE_NAME.format(name=name), field="variables")
    if raw is None:
        raw = {}
    if isinstance(raw, str):  # {"topic": "string"} shorthand
        raw = {"type": raw}
    if not isinstance(raw, dict) or not set(raw) <= SPEC_KEYS:
        raise ContentInvalid(
            BAD_VARIABLE_SPEC.format(name=name, keys=", ".join(sorted(SPEC_KEYS))),
            field="variables",
        )
    type_ = raw.get("type", "any")
    if type_ not in VARIABLE_TYPES:
        raise ContentInvalid(
            BAD_VARIABLE_TYPE.format(name=name, type=type_, types=", ".join(VARIABLE_TYPES)),
            field="variables",
        )
    default = raw.get("default")
    if default is not None and not _is_type(default, type_):
        raise ContentInvalid(BAD_DEFAULT.format(name=name, type=type_), field="variables")
    required = bool(raw.get("required", default is None))
    return VariableSpec(
        name=name,
        type=type_,
        required=required,
        default=default,
        description=str(raw.get("description", "")),
    )


def _is_type(value: object, type_: str) -> bool:
    match type_:
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "list":
            return isinstance(value, list | tuple)
        case "object":
            return isinstance(value, dict)
        case _:
            return True


# --- Rendering -------------------------------------------------------------------------


def resolve_values(*, variables: object, values: Mapping[str, object] | None) -> dict[str, object]:
    """Apply defaults, check required names and types. Raises `TemplateVariablesMissing`
    listing every missing name, then `TemplateVariablesInvalid` listing every bad type."""
    values = dict(values or {})
    resolved: dict[str, object] = {}
    missing: list[str] = []
    invalid: list[dict[str, str]] = []
    for spec in spec_list(variables):
        name = spec["name"]
        value = values.get(name)
        if value is None:
            if spec.get("default") is not None:
                resolved[name] = spec["default"]
            elif spec.get("required", True):
                missing.append(name)
            else:
                resolved[name] = None
            continue
        type_ = spec.get("type", "any")
        if not _is_type(value, type_):
            invalid.append({"name": name, "message": f"expected {type_}"})
        resolved[name] = value
    if missing:
        raise TemplateVariablesMissing(missing)
    if invalid:
        raise TemplateVariablesInvalid(invalid)
    # Extra values are passed through to Jinja (a loop may use them) but never required.
    for name, value in values.items():
        resolved.setdefault(name, value)
    return resolved


def as_text(value: object) -> str:
    """How a value appears in `simple` output: strings verbatim, JSON for the rest."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(
    *,
    content: str,
    engine: str = Engine.SIMPLE,
    variables: object = None,
    values: Mapping[str, object] | None = None,
) -> str:
    """Render content with values, strictly. `variables` is the version's declarations
    (as stored); when None they are derived from the content (admin preview of unsaved
    text)."""
    if variables is None:
        variables = normalize_variables(content=content, engine=engine)
    resolved = resolve_values(variables=variables, values=values)
    if engine == Engine.JINJA:
        return _render_jinja(content, resolved)
    undeclared = [n for n in extract_variables(content=content) if n not in resolved]
    if undeclared:
        raise TemplateVariablesMissing(undeclared)
    # One pass over the operator's content; inserted values are never scanned again.
    return PLACEHOLDER.sub(lambda m: as_text(resolved[m.group(1)]), content)


def _render_jinja(content: str, values: dict[str, object]) -> str:
    try:
        return _jinja.from_string(content).render(values)
    except UndefinedError as exc:
        raise TemplateRenderError(str(exc.message or exc)) from exc
    except SecurityError as exc:
        raise TemplateRenderError(f"forbidden operation: {exc}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(str(exc)) from exc
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TemplateRenderError(str(exc)) from exc

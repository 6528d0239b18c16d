"""Domain errors of the prompts app. `rhetor_site.api` maps every `RhetorError` to the
contract's error shape `{"error", "code", ...details}` with the class's status."""

from rhetor_site.errors import InvalidInput, NotFound, RhetorError

TEMPLATE_NOT_FOUND = "Template '{template_id}' not found"
TEMPLATE_VERSION_NOT_FOUND = "Template '{template_id}' has no version {version}"
PROMPT_NOT_FOUND = "Prompt '{prompt_id}' not found"
PROMPT_VERSION_NOT_FOUND = "Prompt '{prompt_id}' has no version {version}"
PROMPT_EXISTS = "A prompt with id '{prompt_id}' already exists"
VARIABLES_MISSING = "Missing template variables: {names}"
VARIABLES_INVALID = "Invalid template variables: {details}"
RENDER_FAILED = "The template could not be rendered: {reason}"
NOTHING_TO_ROLL_BACK = "Prompt '{prompt_id}' has no earlier active version to roll back to"
PROMPT_IN_USE = "Prompt '{prompt_id}' cannot be deleted: {reason}"


class VersionImmutable(RhetorError):
    """Something tried to update an append-only row (a version or an activation)."""

    status = 409
    code = "version_immutable"


class TemplateNotFound(NotFound):
    code = "template_not_found"


class TemplateVersionNotFound(NotFound):
    code = "template_version_not_found"


class PromptNotFound(NotFound):
    code = "prompt_not_found"


class PromptVersionNotFound(NotFound):
    code = "prompt_version_not_found"


class PromptAlreadyExists(RhetorError):
    status = 409
    code = "prompt_exists"


class PromptInUse(RhetorError):
    status = 409
    code = "prompt_in_use"


class NothingToRollBack(RhetorError):
    status = 409
    code = "nothing_to_roll_back"


class TemplateVariablesMissing(RhetorError):
    """A render lacked variables; `missing` lists every missing name, in content order."""

    status = 400
    code = "template_variables_missing"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(VARIABLES_MISSING.format(names=", ".join(missing)), missing=missing)
        self.missing = missing


class TemplateVariablesInvalid(RhetorError):
    """Supplied variables do not match the declared types; `invalid` lists each problem."""

    status = 400
    code = "template_variables_invalid"

    def __init__(self, invalid: list[dict[str, str]]) -> None:
        details = "; ".join(f"{i['name']}: {i['message']}" for i in invalid)
        super().__init__(VARIABLES_INVALID.format(details=details), invalid=invalid)
        self.invalid = invalid


class TemplateRenderError(RhetorError):
    """A sandboxed (Jinja) render failed: an undefined attribute, a forbidden operation."""

    status = 400
    code = "template_render_error"

    def __init__(self, reason: str) -> None:
        super().__init__(RENDER_FAILED.format(reason=reason), reason=reason)


class ContentInvalid(InvalidInput):
    """Content or a variable declaration could not be saved; `field` names which."""

    code = "validation_error"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field, fields=[{"field": field, "message": message}])
        self.field = field


PERSONALITY_NOT_FOUND = "Personality '{personality_id}' not found"
PERSONALITY_EXISTS = "A personality named '{name}' already exists"


class PersonalityNotFound(NotFound):
    code = "personality_not_found"


class PersonalityAlreadyExists(RhetorError):
    status = 409
    code = "personality_exists"

"""Reading request bodies: the one JSON parser of the REST API, and the check that a body
holds nothing the database cannot store.

A body that is not JSON at all is a 400 `invalid_json` (the code the OpenAI-compatible
/v1 endpoints use for the same fault); one that parses but has the wrong fields is a 422
`validation_error`. A body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 `payload_too_large`.

PostgreSQL stores no U+0000 in text or jsonb, so a body with a NUL character anywhere is
refused as invalid input (422) before any operation sees it, on REST and WebSocket alike,
instead of failing at the database with a 500.
"""

import json
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from rhetor_site.errors import InvalidInput, RhetorError

INVALID_JSON = "The request body is not valid JSON ({problem}); send a JSON object"
PAYLOAD_TOO_LARGE = "The request body is larger than the limit of {limit} bytes"
NUL_REFUSED = (
    "The request contains the NUL character (U+0000) in {where}, which Rhetor cannot store; "
    "remove it"
)


class InvalidJSON(RhetorError):
    status = 400
    code = "invalid_json"


class PayloadTooLarge(RhetorError):
    """Details: `limit`, the largest body accepted, in bytes."""

    status = 413
    code = "payload_too_large"


def contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


def refuse_nul(data: Any, raw: str | bytes, *, where: str = "the body") -> None:
    """InvalidInput when `data` (parsed from `raw` JSON) holds a NUL anywhere. JSON can
    only carry it escaped, so bodies without `\\u0000` are not walked at all."""
    marker = b"\\u0000" if isinstance(raw, bytes) else "\\u0000"
    if marker in raw and contains_nul(data):  # type: ignore[operator]
        raise InvalidInput(NUL_REFUSED.format(where=where), field="body")


def parse_json(raw: bytes) -> Any:
    """A request body's JSON value: InvalidJSON when it is not JSON (or not UTF-8),
    InvalidInput when it holds a NUL."""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidJSON(INVALID_JSON.format(problem=exc)) from None
    refuse_nul(data, raw)
    return data


class BodyParser(Parser):
    """ninja's JSON parser, refusing what the database cannot store. (ninja turns any
    parser error into a 400 "Cannot parse request body"; rhetor_site.api answers with the
    RhetorError it was raised from instead.)"""

    def parse_body(self, request: HttpRequest) -> Any:
        return parse_json(request.body)

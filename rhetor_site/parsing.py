"""Reading request bodies: the one JSON parser of the REST API, and the check that a body
holds nothing the database cannot store.

PostgreSQL stores no U+0000 in text or jsonb, so a body with a NUL character anywhere is
refused as invalid input (422) before any operation sees it, on REST and WebSocket alike,
instead of failing at the database with a 500.
"""

import json
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from rhetor_site.errors import InvalidInput

NUL_REFUSED = (
    "The request contains the NUL character (U+0000) in {where}, which Rhetor cannot store; "
    "remove it"
)


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


class BodyParser(Parser):
    """ninja's JSON parser, refusing what the database cannot store. (ninja turns any
    parser error into a 400 "Cannot parse request body"; rhetor_site.api answers with the
    RhetorError it was raised from instead.)"""

    def parse_body(self, request: HttpRequest) -> Any:
        data = json.loads(request.body)
        refuse_nul(data, request.body)
        return data

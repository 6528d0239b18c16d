"""Schema fuzzing of the whole REST API from its own OpenAPI document (schemathesis).

Every operation of `/openapi.json` is called with generated valid and invalid input
through Django's WSGI handler (no network). Transactional, like the gateway tests: the
request path releases its database connection between steps, which a test-wide
transaction would not survive on PostgreSQL. Whatever the input:

- never a 5xx (`not_a_server_error`);
- never a status the operation does not document (`status_code_conformance`);
- every response matches the schema documented for its status, SSE events included
  (`response_schema_conformance`);
- every 4xx carries the contract's error shape, a non-empty `error` and a `code`
  (OpenAI's shape under /v1).

Deterministic and bounded, so CI runs it on every push in well under two minutes: a fixed
seed (FUZZ_SEED), FUZZ_EXAMPLES generated examples per operation, no deadline, no example
database. RHETOR_FUZZ_EXAMPLES and RHETOR_FUZZ_SEED change them for a deeper or a
different run; a failure prints a curl command that reproduces it.
"""

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, seed, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

FUZZ_EXAMPLES = int(os.environ.get("RHETOR_FUZZ_EXAMPLES", "25"))
FUZZ_SEED = int(os.environ.get("RHETOR_FUZZ_SEED", "20260424"))

# WSGIHandler(), not get_wsgi_application(): Django is set up already, and setting it up
# again would reconfigure logging under the other tests (dropping filters apps installed).
schema = schemathesis.openapi.from_wsgi("/openapi.json", WSGIHandler())


def error_body_is_clear(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answers {"error": "<text>", "code": "<code>", ...}: clients show `error`."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.content[:200]!r}"
        ) from exc
    assert isinstance(body, dict), f"{response.status_code} body is not an object: {body!r}"
    if case.path.startswith("/v1/"):
        # The OpenAI-compatible endpoints answer in OpenAI's error shape, which its SDKs read:
        # {"error": {"message", "type", "param", "code"}}.
        body = body.get("error")
        assert isinstance(body, dict), f"{response.status_code} not OpenAI's error: {body!r}"
        body = {"error": body.get("message"), "code": body.get("type")}
    error, code = body.get("error"), body.get("code")
    assert isinstance(error, str), f"{response.status_code} without error: {body}"
    assert error.strip(), f"{response.status_code} with an empty error: {body}"
    assert isinstance(code, str), f"{response.status_code} without code: {body}"
    assert code, f"{response.status_code} with an empty code: {body}"
    return True


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(autouse=True)
def _quick_providers(settings: Any) -> None:
    settings.RHETOR_SIMULATED_DELAY = 0.0


@pytest.fixture(autouse=True)
def _keep_the_test_transaction() -> Iterator[None]:
    """What Django's test client does around a request: the WSGI handler's request signals
    must not close the test's connection (on PostgreSQL that ends its transaction, and the
    next query fails with "Cannot open a new connection in an atomic block")."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@schema.parametrize()
@seed(FUZZ_SEED)
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_clear(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[*CHECKS, error_body_is_clear])

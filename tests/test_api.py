"""rhetor_site/api.py: the errors every operation can answer, in the shape its path's
clients read, and an OpenAPI document that says so (tests/test_fuzz.py checks the
document against generated requests; these name the cases)."""

import json
from collections import defaultdict
from typing import Any

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client, RequestFactory
from ninja import Schema

from rhetor_site.api import api, payload_too_large

APPS = ("access", "budget", "contexts", "llm", "prompts", "rhetor_site")


def post(client: Client, path: str, body: str | bytes) -> Any:
    return client.post(path, body, content_type="application/json")


@pytest.fixture
def document() -> dict[str, Any]:
    return api.get_openapi_schema(path_prefix="")


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    name = schema["$ref"].rsplit("/", 1)[-1]
    return document["components"]["schemas"][name]  # type: ignore[no-any-return]


# --- A body that is not JSON: one code, 400 invalid_json, on every door ---------------------


@pytest.mark.parametrize("path", ["/templates", "/contexts", "/budget/limit", "/message"])
@pytest.mark.parametrize("body", ["{not json", b"\xff\xfe", '{"name": "t",}'])
def test_a_body_that_is_not_json_is_400_invalid_json(
    db: None, client: Client, path: str, body: str | bytes
) -> None:
    response = post(client, path, body)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_json"
    assert response.json()["error"].startswith("The request body is not valid JSON (")


def test_the_openai_endpoint_names_the_same_fault_the_same_way(db: None, client: Client) -> None:
    response = post(client, "/v1/chat/completions", "{not json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_json_of_the_wrong_shape_is_still_a_422(db: None, client: Client) -> None:
    response = post(client, "/templates", "[1, 2]")

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# --- Errors under /v1 are OpenAI's shape, whichever handler answers ------------------------


def test_a_body_over_the_limit_under_v1_is_openais_413(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    request = RequestFactory().post("/v1/chat/completions")

    response = payload_too_large(request, RequestDataTooBig())

    assert response.status_code == 413
    error = json.loads(response.content)["error"]
    assert error["code"] == "payload_too_large"
    assert error["message"] == "The request body is larger than the limit of 100 bytes"
    assert error["type"] == "invalid_request_error"


def test_a_body_over_the_limit_elsewhere_keeps_the_contracts_shape(
    db: None, client: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = post(client, "/templates", json.dumps({"name": "t", "content": "x" * 500}))

    assert response.status_code == 413
    assert response.json() == {
        "error": "The request body is larger than the limit of 100 bytes",
        "code": "payload_too_large",
        "limit": 100,
    }


# --- A service's full_clean() refusing the input is the client's error, not a 500 --------


def test_a_limit_beyond_what_the_ledger_can_hold_is_a_422(db: None, client: Client) -> None:
    # Found by tests/test_fuzz.py: the model's range check raised out of the service.
    body = {"period": "weekly", "limit_amount": 2.759308484101509e16}

    response = post(client, "/budget/limit", json.dumps(body))

    assert response.status_code == 422, response.content
    assert response.json()["code"] == "validation_error"
    assert response.json()["fields"]


# --- The document ----------------------------------------------------------------------------


def test_one_name_in_the_document_is_one_schema() -> None:
    """ninja files every model under its class name, so two apps' `MessageOut`s would
    silently share one definition (an LLM reply was documented as a stored message)."""
    document = api.get_openapi_schema(path_prefix="")
    by_name: dict[str, set[tuple[tuple[str, str], ...]]] = defaultdict(set)
    pending: list[type[Schema]] = [Schema]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in APPS:
            fields = tuple((name, str(f.annotation)) for name, f in cls.model_fields.items())
            by_name[cls.__name__].add(fields)

    shared = {
        name: shapes
        for name, shapes in by_name.items()
        if name in document["components"]["schemas"] and len(shapes) > 1
    }

    assert shared == {}


def test_message_documents_the_reply_not_a_stored_message(document: dict[str, Any]) -> None:
    ok = document["paths"]["/message"]["post"]["responses"][200]
    reply = resolve(document, ok["content"]["application/json"]["schema"])

    assert {"message", "model", "provider", "usage"} <= set(reply["properties"])
    assert "role" not in reply["properties"]


def test_every_operation_documents_the_errors_the_handlers_answer(
    document: dict[str, Any],
) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            expected = {503}
            if operation.get("security"):
                expected |= {401, 403, 429}
            if "requestBody" in operation:
                expected |= {400, 413}
            assert expected <= statuses, f"{method.upper()} {path}: {sorted(statuses)}"
            for status, response in operation["responses"].items():
                if status >= 400:
                    assert "content" in response, f"{method.upper()} {path} {status}"


def test_the_error_shape_is_the_one_the_path_answers(document: dict[str, Any]) -> None:
    def error_schema(path: str, method: str, status: int) -> str:
        response = document["paths"][path][method]["responses"][status]
        ref: str = response["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]

    assert error_schema("/templates", "post", 400) == "ErrorOut"
    assert error_schema("/templates", "post", 401) == "ErrorOut"
    assert error_schema("/v1/chat/completions", "post", 401) == "OpenAIErrorOut"
    assert error_schema("/v1/chat/completions", "post", 413) == "OpenAIErrorOut"
    # OpenAI has no 422: invalid input is its 400.
    assert 422 not in document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert set(resolve(document, {"$ref": "#/components/schemas/ErrorOut"})["required"]) == {
        "error",
        "code",
    }


def test_a_public_operation_documents_no_key_errors(document: dict[str, Any]) -> None:
    health = document["paths"]["/health"]["get"]["responses"]

    assert 401 not in health
    assert 503 in health

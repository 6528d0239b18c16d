"""rhetor_site/api.py: the errors every operation can answer, in the shape its path's
clients read."""

import json
from typing import Any

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client, RequestFactory

from rhetor_site.api import payload_too_large


def post(client: Client, path: str, body: str | bytes) -> Any:
    return client.post(path, body, content_type="application/json")


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

"""Fixtures for the access tests: keys made through the services, and a clean slate of
the per-process key cache and rate limiter around every test."""

from collections.abc import Iterator

import pytest

from access.keycache import forget_key
from access.ratelimit import rate_limiter_reset
from access.services import CreatedKey, api_key_create


@pytest.fixture(autouse=True)
def _fresh_access_state() -> Iterator[None]:
    forget_key()
    rate_limiter_reset()
    yield
    forget_key()
    rate_limiter_reset()


def make_key(
    name: str = "ergon",
    scopes: str = "all",
    components: str = "",
    rpm: int | None = 0,
    tpm: int | None = 0,
) -> CreatedKey:
    return api_key_create(
        name=name,
        scopes=scopes,
        components=components,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
    )


def key_headers(token: str) -> dict[str, str]:
    return {"HTTP_X_API_KEY": token}


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}

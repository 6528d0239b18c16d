"""create_api_key / revoke_api_key / list_api_keys, and the admin's API keys page."""

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from access.auth import access_notice, principal_for_token
from access.errors import Unauthorized
from access.models import ApiKey
from access.services import secret_hash
from tests.access.conftest import make_key

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"^rk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")


def create(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def test_create_api_key_prints_the_key_once_and_stores_its_hash() -> None:
    output = create("--name", "ergon", "--scopes", "messages,prompts:read", "--components", "ergon")

    token = output.strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert TOKEN.match(token)
    assert f"Created API key {key.prefix} for ergon" in output
    assert (key.name, key.scopes, key.components) == (
        "ergon",
        ["messages", "prompts:read"],
        ["ergon"],
    )
    assert key.secret_hash == secret_hash(token.split("_", 2)[2])
    assert principal_for_token(token).components == ("ergon",)


def test_create_api_key_all_scopes_and_limits() -> None:
    create("--name", "ops", "--scopes", "all", "--rpm", "30", "--tpm", "0")

    key = ApiKey.objects.get()
    assert set(key.scopes) == {
        "messages",
        "prompts:read",
        "prompts:write",
        "budget:read",
        "budget:admin",
        "contexts:admin",
    }
    assert (key.requests_per_minute, key.tokens_per_minute) == (30, 0)


@pytest.mark.parametrize(
    ("_case", "args", "message"),
    [
        ("unknown scope", ["--name", "x", "--scopes", "messages,budget:write"], "budget:write"),
        ("no scope", ["--name", "x", "--scopes", ","], "at least one scope"),
        ("bad component", ["--name", "x", "--scopes", "messages", "--components", "a b"], "a b"),
        ("negative limit", ["--name", "x", "--scopes", "messages", "--rpm", "-1"], "0"),
    ],
)
def test_create_api_key_refuses_bad_input(_case: str, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        create(*args)
    assert not ApiKey.objects.exists()


def test_revoke_api_key_by_prefix_is_idempotent() -> None:
    created = make_key()
    out = io.StringIO()

    call_command("revoke_api_key", created.key.prefix, stdout=out)
    call_command("revoke_api_key", created.key.prefix, stdout=out)

    assert ApiKey.objects.get().revoked_at is not None
    assert f"Revoked {created.key.prefix}" in out.getvalue()
    with pytest.raises(Unauthorized):
        principal_for_token(created.token)
    with pytest.raises(CommandError, match="no API key"):
        call_command("revoke_api_key", "rk_ffffffff", stdout=out)


def test_list_api_keys_shows_active_keys_and_with_all_the_revoked_ones() -> None:
    active = make_key(name="active")
    revoked = make_key(name="gone")
    call_command("revoke_api_key", revoked.key.prefix, stdout=io.StringIO())

    default, everything = io.StringIO(), io.StringIO()
    call_command("list_api_keys", stdout=default)
    call_command("list_api_keys", "--all", stdout=everything)

    assert active.key.prefix in default.getvalue()
    assert revoked.key.prefix not in default.getvalue()
    assert revoked.key.prefix in everything.getvalue()
    assert "revoked" in everything.getvalue()


# --- admin -----------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Client) -> Client:
    user = User.objects.create_superuser("op", "op@example.com", "pw")
    client.force_login(user)
    return client


def test_the_admin_creates_a_key_and_shows_it_once(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/access/apikey/add/",
        {"name": "telos", "scopes": ["messages", "budget:read"], "components": "telos"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    token = re.search(r"rk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", page)
    assert token is not None
    key = ApiKey.objects.get()
    assert (key.name, key.scopes, key.components, key.created_by) == (
        "telos",
        ["messages", "budget:read"],
        ["telos"],
        "op",
    )
    assert principal_for_token(token.group(0)).name == "telos"
    assert "no-store" in response["Cache-Control"]

    later = admin_client.get(f"/admin/access/apikey/{key.pk}/change/").content.decode()
    listing = admin_client.get("/admin/access/apikey/").content.decode()
    secret = token.group(0).split("_", 2)[2]
    for html in (later, listing):
        assert key.prefix in html
        assert secret not in html
        assert key.secret_hash not in html


def test_the_admin_revokes_keys_and_cannot_delete_them(admin_client: Client) -> None:
    created = make_key()

    admin_client.post(
        "/admin/access/apikey/",
        {"action": "revoke_selected", "_selected_action": [created.key.pk]},
    )

    assert ApiKey.objects.get().revoked_at is not None
    with pytest.raises(Unauthorized):
        principal_for_token(created.token)
    assert admin_client.get(f"/admin/access/apikey/{created.key.pk}/delete/").status_code == 403


def test_the_startup_notice_says_whether_anonymous_access_is_on(settings: object) -> None:
    assert access_notice("127.0.0.1").startswith("ANONYMOUS ACCESS")
    assert access_notice("0.0.0.0").startswith("API keys required")  # noqa: S104


def test_serve_refuses_a_public_address_with_the_development_secret_key(settings: object) -> None:
    settings.SECRET_KEY = "rhetor-insecure-development-key-change-me"  # type: ignore[attr-defined]

    with pytest.raises(CommandError, match="development SECRET_KEY"):
        call_command("serve", "--host", "0.0.0.0", "--port", "1", stdout=io.StringIO())  # noqa: S104

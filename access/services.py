"""Writes on API keys: create (the secret is returned once), revoke, touch."""

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access.errors import ApiKeyInvalid
from access.keycache import forget_key
from access.models import SCOPES, ApiKey

KEY_PREFIX = "rk"
KEY_ID_BYTES = 4  # 8 hex characters
SECRET_BYTES = 32  # 256 bits
COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ALL_SCOPES_WORDS = frozenset({"all", "*"})


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def scopes_parse(values: str | list[str] | tuple[str, ...]) -> list[str]:
    """`"messages,prompts:read"` or a list; `all` / `*` means every scope. Unknown scopes
    are refused, so a typo never silently makes a weaker key."""
    items = values.split(",") if isinstance(values, str) else list(values)
    wanted = [s.strip() for s in items if s and s.strip()]
    if any(s in ALL_SCOPES_WORDS for s in wanted):
        return list(SCOPES)
    unknown = sorted(set(wanted) - set(SCOPES))
    if unknown:
        raise ApiKeyInvalid(
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}", field="scopes"
        )
    return [s for s in SCOPES if s in wanted]


def components_parse(values: str | list[str] | tuple[str, ...]) -> list[str]:
    items = values.split(",") if isinstance(values, str) else list(values)
    out: list[str] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if not COMPONENT_RE.match(name):
            raise ApiKeyInvalid(f"{name!r} is not a component name", field="components")
        if name not in out:
            out.append(name)
    return out


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    token: str  # rk_<key_id>_<secret>: shown once, never stored


def api_key_create(
    *,
    name: str,
    scopes: str | list[str] | tuple[str, ...],
    components: str | list[str] | tuple[str, ...] = (),
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    created_by: str = "",
) -> CreatedKey:
    name = name.strip()
    if not name:
        raise ApiKeyInvalid("a key needs a name", field="name")
    parsed_scopes = scopes_parse(scopes)
    if not parsed_scopes:
        raise ApiKeyInvalid("a key needs at least one scope", field="scopes")
    for field, value in (
        ("requests_per_minute", requests_per_minute),
        ("tokens_per_minute", tokens_per_minute),
    ):
        if value is not None and value < 0:
            raise ApiKeyInvalid(f"{field} must be 0 (unlimited) or more", field=field)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    for _ in range(5):  # a clash of 8-hex ids is rare; try a fresh id
        key_id = secrets.token_hex(KEY_ID_BYTES)
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    key_id=key_id,
                    secret_hash=secret_hash(secret),
                    name=name,
                    scopes=parsed_scopes,
                    components=components_parse(components),
                    requests_per_minute=requests_per_minute,
                    tokens_per_minute=tokens_per_minute,
                    created_by=created_by,
                )
        except IntegrityError:
            continue
        return CreatedKey(key=key, token=f"{KEY_PREFIX}_{key_id}_{secret}")
    raise RuntimeError("could not allocate a unique API key id")


def key_id_of(prefix_or_token: str) -> str:
    """`rk_ab12cd34`, a whole token, or the bare id -> the id."""
    text = prefix_or_token.strip()
    if text.startswith(f"{KEY_PREFIX}_"):
        text = text[len(KEY_PREFIX) + 1 :]
    return text.split("_", 1)[0]


def api_key_revoke(*, key_id: str) -> ApiKey:
    """Revoke a key (idempotent). Every process stops accepting it within
    RHETOR_API_KEY_CACHE_SECONDS; this process at once."""
    key_id = key_id_of(key_id)
    now = timezone.now()
    ApiKey.objects.filter(key_id=key_id, revoked_at__isnull=True).update(revoked_at=now)
    key = ApiKey.objects.filter(key_id=key_id).first()
    if key is None:
        raise ApiKeyInvalid(f"no API key rk_{key_id}", field="key")
    forget_key(key_id)
    return key


def api_key_touch(*, pk: int, at: dt.datetime, older_than: dt.timedelta) -> bool:
    """Record use, at most once per `older_than` (one UPDATE that is a no-op when another
    process touched the key recently)."""
    stale = at - older_than
    updated = ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=pk
    ).update(last_used_at=at)
    return bool(updated)

"""Publishable keys: what a browser may hold to ask for its own decisions.

``Authorization: Bearer pk_...``. Such a key authenticates on the decide route
only (every other route authenticates API tokens, and refuses it), decides only
for an ``anonymous_id:`` or ``user_id:`` profile (no lookup by email, phone or
internal id), and its answers leave out which segment matched. A request carrying
an ``Origin`` must come from one of the key's allowed origins, and the CORS
middleware (django-cors-headers) allows those origins on the decide route only
(``cors_allowed``, registrations.py).

**A user id needs proof.** Anyone can read a publishable key from a page, so a
``user_id:`` is only accepted with its ``user_hash``: the hex HMAC-SHA256 of the
user id (the text after ``user_id:``) keyed with the key's *identity secret*,
computed by the customer's backend for the signed-in user and put in the page,
as Intercom's and Segment's identity verification work. Without it (or with a
wrong one) only the browser's ``anonymous_id:`` may be used. The secret is never
stored: it is derived from the server's ``CDP_PRIVACY_HASH_KEY`` and a random
salt of the key's (``identity_secret``), shown once in admin when the key is
made or the secret rotated (a new salt), and compared in constant time. It never
enters a log line: it is only in admin's one-time message.

Stored as a SHA-256 of the secret, like API tokens: 256-bit random values, so a
fast hash is enough. A key's row is cached per process for
``CDP["API_TOKEN_CACHE_SECONDS"]`` (1 s; like API tokens, apps/api_auth/selectors.py):
a revoked key, new origins or a rotated identity secret take effect within that
time everywhere, at once in the process that made the change (the refresher
re-reads every cached key at that interval, off the request path; a request
reads a key itself only on a miss or past the refresher's hard bound). The set of
all keys' allowed origins (for CORS) is cached for ``DECIDE_MAPPING_CHECK_MS``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.api_auth.selectors import (
    token_cache_refreshed_elsewhere,
    token_cache_revalidate,
    token_cache_seconds,
)
from apps.common.lookup_cache import LookupCache
from apps.common.utils import sha256_hex
from apps.consent.hashing import keyed_hash

from .models import PublishableKey
from .refresher import max_age, on_running, refresh_task

PUBLISHABLE_PREFIX = "pk_"
PUBLIC_ID_TYPES = ("anonymous_id", "user_id")
DECIDE_PATH = "/api/v1/decide"
IDENTITY_SECRET_PREFIX = "ids_"
USER_HASH_PATTERN = r"[0-9a-fA-F]{64}"
_USER_HASH = re.compile(USER_HASH_PATTERN)


def identity_salt_new() -> str:
    return secrets.token_urlsafe(32)


def identity_secret(key: PublishableKey) -> str:
    """The key's identity secret (derived, never stored; see the module doc)."""
    return IDENTITY_SECRET_PREFIX + keyed_hash("publishable-identity", key.identity_salt)


def user_hash_compute(secret: str, user_id: str) -> str:
    """What the customer's backend computes: hex HMAC-SHA256(secret, user id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def user_hash_valid(key: PublishableKey, user_id: str, user_hash: str | None) -> bool:
    """Whether ``user_hash`` proves ``user_id`` for this key (constant time)."""
    if not user_hash or not key.identity_salt or not _USER_HASH.fullmatch(user_hash):
        return False
    expected = user_hash_compute(identity_secret(key), user_id)
    return hmac.compare_digest(expected.encode(), user_hash.lower().encode())


def identity_secret_rotate(*, key: PublishableKey) -> str:
    """A new identity secret (the old one stops verifying); returns it, to show once."""
    key.identity_salt = identity_salt_new()
    key.save(update_fields=["identity_salt"])
    _keys_forget(key.key_hash)
    transaction.on_commit(lambda: _keys_forget(key.key_hash))
    return identity_secret(key)


@transaction.atomic
def publishable_key_create(
    *, name: str, allowed_origins: list[str] | None = None
) -> tuple[PublishableKey, str]:
    """A key and its secret (never stored); ``identity_secret(key)`` is its
    identity secret."""
    raw = PUBLISHABLE_PREFIX + secrets.token_urlsafe(32)
    key = PublishableKey(
        name=name,
        prefix=raw[: len(PUBLISHABLE_PREFIX) + 6],
        key_hash=sha256_hex(raw),
        allowed_origins=[o.rstrip("/") for o in allowed_origins or []],
        identity_salt=identity_salt_new(),
    )
    key.full_clean()
    key.save()
    return key, raw


def publishable_key_revoke(*, key: PublishableKey) -> PublishableKey:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    _keys_forget(key.key_hash)
    transaction.on_commit(lambda: _keys_forget(key.key_hash))
    return key


KEYS_CACHE_MAX = 10_000
_keys: LookupCache[PublishableKey] = LookupCache(KEYS_CACHE_MAX)


def _keys_forget(key_hash: str | None = None) -> None:
    """Forget one key or all; loads in flight do not cache what they read (it may
    be the row as it was before the change that called this)."""
    _keys.forget(key_hash)


def _key_load(key_hash: str) -> PublishableKey | None:
    return PublishableKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True).first()


def _keys_load_many(key_hashes: list[str]) -> dict[str, PublishableKey]:
    return {
        k.key_hash: k
        for k in PublishableKey.objects.filter(key_hash__in=key_hashes, revoked_at__isnull=True)
    }


def keys_revalidate() -> int:
    """Re-read every cached key at once (the refresher's task)."""
    return _keys.revalidate(_keys_load_many)


def publishable_key_get(raw: str) -> PublishableKey | None:
    """The live key this secret names, cached (see the module doc): re-read by
    the refresher every API_TOKEN_CACHE_SECONDS, by a request only on a miss or
    past the hard bound."""
    key_hash = sha256_hex(raw)
    return _keys.get(key_hash, max_age(token_cache_seconds()), _key_load)


refresh_task("api tokens", token_cache_seconds, token_cache_revalidate)
refresh_task("publishable keys", token_cache_seconds, keys_revalidate)
on_running(token_cache_refreshed_elsewhere)


class PublishableUser(AnonymousUser):
    """Who a publishable key's request acts as: nobody, with no permissions."""


class PublishableKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer pk_...`` (other bearer tokens are left to
    apps.api_auth's authentication)."""

    def authenticate(self, request: Request) -> tuple[Any, PublishableKey] | None:
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != b"bearer":
            return None
        if not header[1].startswith(PUBLISHABLE_PREFIX.encode()):
            return None
        try:
            raw = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid key characters.") from exc
        key = publishable_key_get(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked publishable key.")
        origin = request.headers.get("Origin")
        allowed = {o.rstrip("/") for o in key.allowed_origins or () if isinstance(o, str)}
        # A set of whole origins: never a substring of a string that slipped in.
        if origin is not None and origin.rstrip("/") not in allowed:
            raise exceptions.PermissionDenied(
                "This publishable key is not allowed from this origin."
            )
        return PublishableUser(), key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class PublishableKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.personalization.keys.PublishableKeyAuthentication"
    name = "publishableKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A publishable key (pk_...): decide only, for the caller's own "
            "anonymous_id or user_id.",
        }


_origins_lock = threading.Lock()
_origins: tuple[float, frozenset[str]] | None = None
_origins_generation = 0  # bumped when the origins are forgotten


def _origins_seconds() -> float:
    return float(settings.CDP.get("DECIDE_MAPPING_CHECK_MS", 500)) / 1000.0


def origins_allowed() -> frozenset[str]:
    """Kept current by the refresher (refresher.py); reloaded here only when
    absent or past its hard bound."""
    bound = max_age(_origins_seconds())
    cached = _origins
    if cached is not None and time.monotonic() - cached[0] < bound:
        return cached[1]
    return origins_refresh()


def origins_refresh() -> frozenset[str]:
    global _origins
    with _origins_lock:
        generation = _origins_generation
        now = time.monotonic()
        rows = PublishableKey.objects.filter(revoked_at__isnull=True).values_list(
            "allowed_origins", flat=True
        )
        found = frozenset(o.rstrip("/") for row in rows for o in row or () if isinstance(o, str))
        if generation == _origins_generation:  # not forgotten meanwhile
            _origins = (now, found)
        return found


refresh_task("origins", _origins_seconds, origins_refresh)


def origins_cache_clear() -> None:
    """Forget the cached origins and keys (this process), now and again when the
    current transaction commits (at once outside one): admin saves in a
    transaction, and until it commits other threads still read the old rows."""
    _origins_keys_forget()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_origins_keys_forget)


def _origins_keys_forget() -> None:
    global _origins, _origins_generation
    _origins_generation += 1
    _origins = None
    _keys_forget()


def cors_allowed(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """django-cors-headers' ``check_request_enabled``: the decide route, from an
    origin some publishable key allows."""
    if request.path_info.rstrip("/") != DECIDE_PATH:
        return False
    origin = request.headers.get("Origin")
    return origin is not None and origin.rstrip("/") in origins_allowed()

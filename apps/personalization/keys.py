"""Publishable keys: what a browser may hold to ask for its own decisions.

``Authorization: Bearer pk_...``. Such a key authenticates on the decide route
only (every other route authenticates API tokens, and refuses it), decides only
for an ``anonymous_id:`` or ``user_id:`` profile (the caller's own, which the
page knows; no lookup by email, phone or internal id), and its answers leave out
which segment matched. A request carrying an ``Origin`` must come from one of the
key's allowed origins, and the CORS middleware (django-cors-headers) allows those
origins on the decide route only (``cors_allowed``, registrations.py).

Stored as a SHA-256 of the secret, like API tokens: 256-bit random values, so a
fast hash is enough. The set of allowed origins is cached per process for
``DECIDE_MAPPING_CHECK_MS`` (a revoked key's origins stop within that time; the
key itself stops at once).
"""

from __future__ import annotations

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

from apps.common.utils import sha256_hex

from .models import PublishableKey

PUBLISHABLE_PREFIX = "pk_"
PUBLIC_ID_TYPES = ("anonymous_id", "user_id")
DECIDE_PATH = "/api/v1/decide"


@transaction.atomic
def publishable_key_create(
    *, name: str, allowed_origins: list[str] | None = None
) -> tuple[PublishableKey, str]:
    """A key and its secret (never stored)."""
    raw = PUBLISHABLE_PREFIX + secrets.token_urlsafe(32)
    key = PublishableKey(
        name=name,
        prefix=raw[: len(PUBLISHABLE_PREFIX) + 6],
        key_hash=sha256_hex(raw),
        allowed_origins=[o.rstrip("/") for o in allowed_origins or []],
    )
    key.full_clean()
    key.save()
    return key, raw


def publishable_key_revoke(*, key: PublishableKey) -> PublishableKey:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    return key


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
        key = PublishableKey.objects.filter(
            key_hash=sha256_hex(raw), revoked_at__isnull=True
        ).first()
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


def origins_allowed() -> frozenset[str]:
    global _origins
    ttl = float(settings.CDP.get("DECIDE_MAPPING_CHECK_MS", 500)) / 1000.0
    now = time.monotonic()
    cached = _origins
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    with _origins_lock:
        rows = PublishableKey.objects.filter(revoked_at__isnull=True).values_list(
            "allowed_origins", flat=True
        )
        found = frozenset(o.rstrip("/") for row in rows for o in row or () if isinstance(o, str))
        _origins = (now, found)
        return found


def origins_cache_clear() -> None:
    global _origins
    _origins = None


def cors_allowed(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """django-cors-headers' ``check_request_enabled``: the decide route, from an
    origin some publishable key allows."""
    if request.path_info.rstrip("/") != DECIDE_PATH:
        return False
    origin = request.headers.get("Origin")
    return origin is not None and origin.rstrip("/") in origins_allowed()

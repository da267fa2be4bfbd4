"""Write-key lookup with a short per-process cache (one query per key per few seconds)."""

from __future__ import annotations

import base64
import binascii
import time

from django.conf import settings
from django.http import HttpRequest

from .models import Source

_cache: dict[str, tuple[float, Source | None]] = {}
_MAX_CACHED = 10_000


def source_for_key(write_key: str) -> Source | None:
    """The enabled source with this write key, or None."""
    if "\x00" in write_key:  # never a key, and PostgreSQL refuses it in a query
        return None
    ttl = settings.CDP["WRITE_KEY_CACHE_SECONDS"]
    now = time.monotonic()
    if ttl:
        hit = _cache.get(write_key)
        if hit is not None and hit[0] > now:
            return hit[1]
    source = Source.objects.filter(write_key=write_key, enabled=True).only("id", "name").first()
    if ttl:
        if len(_cache) >= _MAX_CACHED:
            _cache.clear()
        _cache[write_key] = (now + ttl, source)
    return source


def basic_auth_username(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, _ = decoded.partition(":")
    return username or None

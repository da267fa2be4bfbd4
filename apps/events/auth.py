"""Write keys: lookup by digest with a short per-process cache (one query per key
per few seconds), creation and rotation (the whole key is shown once)."""

from __future__ import annotations

import base64
import binascii
import time

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from .models import Source, generate_write_key, write_key_hash

# Keyed by the digest, so no process keeps presented keys in memory.
_cache: dict[str, tuple[float, Source | None]] = {}
_MAX_CACHED = 10_000
MAX_WRITE_KEY_LENGTH = 100


def source_for_key(write_key: str) -> Source | None:
    """The enabled source with this write key, or None.

    A key rotated or a source disabled in another process is honoured here for up
    to ``CDP_WRITE_KEY_CACHE_SECONDS``; in the process that did it, not at all
    (``write_key_cache_clear``)."""
    if "\x00" in write_key:  # never a key (and PostgreSQL refused it in a query)
        return None
    digest = write_key_hash(write_key)  # about 1 us for a 32-character key
    ttl = settings.CDP["WRITE_KEY_CACHE_SECONDS"]
    now = time.monotonic()
    if ttl:
        hit = _cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
    source = Source.objects.filter(write_key_hash=digest, enabled=True).only("id", "name").first()
    if ttl:
        if len(_cache) >= _MAX_CACHED:
            _cache.clear()
        _cache[digest] = (now + ttl, source)
    return source


def write_key_problem(raw: str) -> str | None:
    """What makes a key given by hand unusable, or None."""
    if not raw.strip():
        return "is empty"
    if len(raw) > MAX_WRITE_KEY_LENGTH:
        return f"is longer than {MAX_WRITE_KEY_LENGTH} characters"
    if "\x00" in raw or ":" in raw:
        return "may not contain a NUL character or a colon (HTTP Basic would cut it)"
    return None


def write_key_cache_clear(digest: str) -> None:
    """Forget a key in this process, now and again when the transaction commits
    (a lookup between the two would cache the row as it was before the commit)."""
    _cache.pop(digest, None)
    transaction.on_commit(lambda: _cache.pop(digest, None))


@transaction.atomic
def source_create(
    *, name: str, write_key: str | None = None, enabled: bool = True
) -> tuple[Source, str]:
    """Create a source and return it with its write key, which is not stored."""
    raw = write_key or generate_write_key()
    source = Source(name=name, enabled=enabled)
    source.set_write_key(raw)
    source.full_clean()
    source.save()
    write_key_cache_clear(source.write_key_hash)  # a cached miss for this key
    return source, raw


@transaction.atomic
def source_write_key_rotate(*, source: Source, write_key: str | None = None) -> str:
    """Give ``source`` a new write key and return it; the old one stops working at
    once in this process and within the cache time in the others."""
    old_hash = source.write_key_hash
    raw = write_key or generate_write_key()
    source.set_write_key(raw)
    source.full_clean()
    source.save(update_fields=["write_key_prefix", "write_key_hash", "updated_at"])
    write_key_cache_clear(old_hash)
    write_key_cache_clear(source.write_key_hash)
    return raw


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

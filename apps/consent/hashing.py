"""Keyed hashes for what must be matched later but not kept: IP addresses in
consent proof, identifiers of erased people in the suppression list.

The key is CDP_PRIVACY_HASH_KEY, required in production; elsewhere it defaults to
one derived from SECRET_KEY. A plain
SHA-256 of an email address or an IPv4 address is reversible by brute force; a
keyed hash is not, without the key.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def derived_key() -> str:
    """The key used when CDP_PRIVACY_HASH_KEY is not set (quickstart, tests)."""
    return hmac.new(settings.SECRET_KEY.encode(), b"cdp-privacy-hash", "sha256").hexdigest()


def _key() -> bytes:
    return (settings.CDP.get("PRIVACY_HASH_KEY") or derived_key()).encode()


def keyed_hash(kind: str, value: str) -> str:
    return hmac.new(_key(), f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def ip_hash(ip: str | None) -> str:
    return keyed_hash("ip", ip) if ip else ""

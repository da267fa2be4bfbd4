"""Keyed hashes for what must be matched later but not kept: IP addresses in
consent proof, identifiers of erased people in the suppression list.

The key is CDP_PRIVACY_HASH_KEY (by default derived from SECRET_KEY). A plain
SHA-256 of an email address or an IPv4 address is reversible by brute force; a
keyed hash is not, without the key.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def _key() -> bytes:
    key = settings.CDP.get("PRIVACY_HASH_KEY") or ""
    if not key:
        key = hmac.new(settings.SECRET_KEY.encode(), b"cdp-privacy-hash", "sha256").hexdigest()
    return key.encode()


def keyed_hash(kind: str, value: str) -> str:
    return hmac.new(_key(), f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def ip_hash(ip: str | None) -> str:
    return keyed_hash("ip", ip) if ip else ""

"""Secrets the CDP must use again (webhook signing secrets), encrypted at rest.

What only has to be recognised later (API tokens, feed tokens, publishable keys)
is stored hashed; a webhook's ``whsec_`` secret keys an HMAC at every delivery,
so it is stored encrypted instead, and a database dump or backup alone does not
give it away.

* **Cipher**: Fernet (``cryptography``: AES-128-CBC with HMAC-SHA256, random IV,
  versioned tokens). It is authenticated: a token changed in the database, or
  one encrypted under another key, is refused, never decrypted into garbage.
* **Keys**: ``CDP["SECRETS_KEYS"]`` (the ``CDP_SECRETS_KEY`` variable, a
  comma-separated list). Each is a long random string, the same kind of value
  as ``SECRET_KEY``; its Fernet key is derived with HKDF-SHA256. The first key
  encrypts, every key decrypts (``MultiFernet``), so a key is rotated by putting
  the new one first, running ``manage.py secrets_reencrypt``, then dropping the
  old one.
* **Unset** (development, tests): one key derived from ``SECRET_KEY``, so a new
  ``SECRET_KEY`` makes the stored secrets unreadable (rotate them). Production
  settings refuse to start without ``CDP_SECRETS_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_INFO = b"cdp-secrets-at-rest/fernet/v1"


class SecretDecryptError(Exception):
    """A stored secret that none of the configured keys decrypts."""


def derived_key() -> str:
    """The key used when CDP_SECRETS_KEY is not set (quickstart, tests)."""
    return hmac.new(settings.SECRET_KEY.encode(), b"cdp-secrets-key", hashlib.sha256).hexdigest()


def _configured() -> tuple[str, ...]:
    # "new, old" is read as two keys, not " old": a space would be another key.
    return tuple(k.strip() for k in settings.CDP.get("SECRETS_KEYS") or () if k.strip())


def secrets_keys() -> tuple[str, ...]:
    """The configured keys, newest (the one that encrypts) first."""
    return _configured() or (derived_key(),)


def _fernet_key(key: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.encode())
    return base64.urlsafe_b64encode(raw)


@lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    # Cached by the keys themselves: a settings change (tests, a reload) is a
    # new entry, never a stale cipher.
    each = [Fernet(_fernet_key(k)) for k in keys]
    return MultiFernet(each), each[0]


def _unreadable(keys: tuple[str, ...]) -> SecretDecryptError:
    where = (
        f"any of the {len(keys)} keys in CDP_SECRETS_KEY"
        if _configured()
        else "the key derived from SECRET_KEY (CDP_SECRETS_KEY is not set)"
    )
    return SecretDecryptError(
        f"the stored secret cannot be decrypted with {where}: it was encrypted under "
        "another key (a changed CDP_SECRETS_KEY or SECRET_KEY), or altered. Put the "
        "key it was encrypted with back into CDP_SECRETS_KEY (after the current one), "
        "or rotate the secret."
    )


def secret_encrypt(plain: str) -> str:
    """``plain`` encrypted under the first key (a Fernet token, ASCII)."""
    multi, _ = _fernets(secrets_keys())
    return multi.encrypt(plain.encode()).decode("ascii")


def secret_decrypt(token: str) -> str:
    """The secret ``token`` holds, or ``SecretDecryptError`` saying what to do."""
    keys = secrets_keys()
    multi, _ = _fernets(keys)
    try:
        return multi.decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise _unreadable(keys) from exc


def secret_is_current(token: str) -> bool:
    """Whether ``token`` is encrypted under the first key (nothing to re-encrypt)."""
    _, first = _fernets(secrets_keys())
    try:
        first.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def secret_reencrypt(token: str) -> str:
    """``token``'s secret encrypted under the first key (``SecretDecryptError``
    when no key decrypts it)."""
    keys = secrets_keys()
    multi, _ = _fernets(keys)
    try:
        return multi.rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise _unreadable(keys) from exc

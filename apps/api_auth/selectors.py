"""Bearer token authentication, with each token's lookup cached per process.

**What is cached.** For each token's SHA-256 (never the token itself): the token
row and its user, with the user's permissions already loaded (Django keeps them on
the user object). Without the cache every authenticated request costs a token
query, and a permission check two more; the decision API answers in a few
milliseconds, so those three round trips were most of its time.

**How long it may be stale.** An entry is used for ``CDP["API_TOKEN_CACHE_SECONDS"]``
(default 1 s) after it was read, then read again: a token revoked, expired by
an edit of its date or deleted, a user deactivated or deleted, and a permission
or group change all take effect in every process within that time. A token's
own expiry date is compared with the clock on every request, and revoking
through ``api_token_revoke`` (or admin) drops the entry at once in the process
that did it, and again when its transaction commits (``token_cache_clear_on_commit``:
until then another thread still reads the old row, and would cache it). Every
clear bumps a generation: a load that started before a clear does not put what it
read in the cache (it may be the row as it was). Unknown tokens are not cached (a
new token works at once).

**Off the request path.** In a process that runs the decide refresher
(apps/personalization/refresher.py, which registers ``token_cache_revalidate``),
every cached token is re-read in bulk every ``API_TOKEN_CACHE_SECONDS`` on that
thread (one query for the tokens and their users, two per distinct user for the
permissions), and a request reloads a token only on a miss or when its entry is
``REFRESHED_ELSEWHERE_BOUND`` times that old (the refresher stopped or cannot
reach the database): the bounds above then hold with the refresh's own time
added, and within five times the cache time at worst. Elsewhere (no refresher,
its setting off) requests reload as before.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.common.lookup_cache import LookupCache
from apps.common.utils import sha256_hex

from .models import ApiToken

TOKEN_CACHE_MAX = 10_000
# How many cache times old a request accepts an entry while a background
# refresher re-reads the cache (the refresher's HARD_BOUND; set by its hook).
REFRESHED_ELSEWHERE_BOUND = 5.0
_refreshed_elsewhere = 1.0


_cache: LookupCache[ApiToken] = LookupCache(TOKEN_CACHE_MAX)


def token_cache_seconds() -> float:
    return float(settings.CDP.get("API_TOKEN_CACHE_SECONDS", 1))


def token_cache_refreshed_elsewhere(running: bool) -> None:
    """Called by the decide refresher when it starts (True) and stops (False)."""
    global _refreshed_elsewhere
    _refreshed_elsewhere = REFRESHED_ELSEWHERE_BOUND if running else 1.0


def token_cache_revalidate() -> int:
    """Re-read every cached token at once (the refresher's task); returns how
    many are still valid."""
    return _cache.revalidate(_load_many)


def token_cache_clear(key_hash: str | None = None) -> None:
    """Forget one token (by its hash) or every token, in this process; loads in
    flight do not cache what they read."""
    _cache.forget(key_hash)


def token_cache_clear_on_commit(key_hash: str | None = None) -> None:
    """Forget now and again when the current transaction commits (at once outside
    one): between the two, other threads still read the row as it was."""
    token_cache_clear(key_hash)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: token_cache_clear(key_hash))


def _load(key_hash: str) -> ApiToken | None:
    token = (
        ApiToken.objects.filter(key_hash=key_hash, revoked_at__isnull=True)
        .select_related("user")
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    # Fills the user's permission caches (ModelBackend), read by has_perm later.
    token.user.get_all_permissions()
    return token


def _load_many(key_hashes: list[str]) -> dict[str, ApiToken]:
    """``_load`` for many tokens: one query for the rows and their users, and
    each distinct user's permissions loaded once."""
    tokens = ApiToken.objects.filter(
        key_hash__in=key_hashes, revoked_at__isnull=True
    ).select_related("user")
    users: dict[int, Any] = {}
    found: dict[str, ApiToken] = {}
    for token in tokens:
        if not token.user.is_active:
            continue
        if token.user_id not in users:
            token.user.get_all_permissions()
            users[token.user_id] = token.user
        else:
            token.user = users[token.user_id]
        found[token.key_hash] = token
    return found


def token_authenticate(raw: str) -> ApiToken | None:
    """The live token this secret names (its ``user`` loaded), or None."""
    key_hash = sha256_hex(raw)
    ttl = token_cache_seconds() * _refreshed_elsewhere
    # _load is looked up at each call (tests replace it).
    token = _cache.get(key_hash, ttl, lambda h: _load(h))
    if token is None:
        return None
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None
    return token

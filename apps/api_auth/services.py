from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from apps.common.utils import sha256_hex

from .models import ApiToken
from .selectors import token_cache_clear_on_commit

TOKEN_PREFIX = "cdp_"
# Apps whose models API tokens may touch through the service groups below.
CDP_APP_LABELS = ("identity", "events", "consent", "segments", "clustering", "personalization")
FULL_ACCESS_GROUP = "API full access"
READ_ONLY_GROUP = "API read-only"
# Overriding the identity safety rules joins people the rules keep apart: never
# part of a service group, granted to one service user on request.
EXPLICIT_ONLY_PERMISSIONS = (("identity", "force_merge_profile"),)


def token_hash(raw: str) -> str:
    return sha256_hex(raw)


@transaction.atomic
def api_token_create(
    *, name: str, user: Any, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        user=user,
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        key_hash=token_hash(raw),
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    token.full_clean()
    token.save()
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token: at once in this process, within ``API_TOKEN_CACHE_SECONDS``
    in the others (selectors.py)."""
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    token_cache_clear_on_commit(token.key_hash)
    return token


@transaction.atomic
def service_group_ensure(*, read_only: bool) -> Group:
    """The group a service user is put in: view (or all) permissions on CDP apps,
    except those only granted explicitly (force-merging profiles)."""
    group, _ = Group.objects.get_or_create(name=READ_ONLY_GROUP if read_only else FULL_ACCESS_GROUP)
    perms = Permission.objects.filter(content_type__app_label__in=CDP_APP_LABELS)
    for app_label, codename in EXPLICIT_ONLY_PERMISSIONS:
        perms = perms.exclude(content_type__app_label=app_label, codename=codename)
    if read_only:
        perms = perms.filter(codename__startswith="view_")
    group.permissions.set(perms)
    return group


@transaction.atomic
def service_user_ensure(*, name: str, read_only: bool, force_merge: bool = False) -> Any:
    """A login-less user that owns tokens created for an integration.

    ``force_merge`` also lets it merge profiles against the safety rules (not with
    ``read_only``)."""
    if force_merge and read_only:
        raise ValueError("A read-only service user cannot force merges.")
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=f"api-{name}"[:150])
    if created:
        user.set_unusable_password()
        user.save()
    user.groups.add(service_group_ensure(read_only=read_only))
    if force_merge:
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="identity", codename="force_merge_profile"
            )
        )
    return user

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from .models import Identifier, IdentifierType, Profile, ProfileMerge
from .services.rules import IdentityRules, identity_rules_load

EXTERNAL_ID_TYPES = ("id", *IdentifierType.values)


class ExternalIdError(ValueError):
    pass


def parse_external_id(external_id: str, rules: IdentityRules | None = None) -> tuple[str, str]:
    """``user_id:42`` -> ("user_id", "42"); raises ExternalIdError when malformed."""
    kinds = ("id", *(rules.types if rules else IdentifierType.values))
    kind, sep, value = external_id.partition(":")
    if not sep or not value or kind not in kinds:
        raise ExternalIdError(
            "Profile ids have the form <type>:<value>, e.g. user_id:42 or "
            "email:a@example.com; type is one of " + ", ".join(kinds) + "."
        )
    return kind, value


def profile_get_by_external_id(*, external_id: str, follow_merges: bool = True) -> Profile | None:
    """The profile an external id points to: the live one, following merges
    (``id:<uuid>`` of an absorbed profile with ``follow_merges=False`` gives it)."""
    rules = identity_rules_load()
    kind, value = parse_external_id(external_id, rules)
    profile: Profile | None
    if kind == "id":
        try:
            pk = uuid.UUID(value)
        except ValueError as exc:
            raise ExternalIdError(f"{value!r} is not a valid profile UUID.") from exc
        profile = Profile.objects.filter(pk=pk).first()
    else:
        normalized = rules.normalize(kind, value)
        if normalized is None:
            return None
        identifier = (
            Identifier.objects.filter(type=kind, value=normalized).select_related("profile").first()
        )
        profile = identifier.profile if identifier else None
    if not follow_merges:
        return profile
    seen = set()
    while profile is not None and profile.merged_into_id is not None and profile.pk not in seen:
        seen.add(profile.pk)
        profile = Profile.objects.filter(pk=profile.merged_into_id).first()
    return profile


def profile_list() -> QuerySet[Profile]:
    return Profile.objects.live().prefetch_related(
        Prefetch("identifiers", queryset=Identifier.objects.order_by("type", "id"))
    )


def identifier_exists(*, type: str, value: str) -> bool:
    return Identifier.objects.filter(type=type, value=value).exists()


def profile_merge_history(*, profile: Profile) -> QuerySet[ProfileMerge]:
    """Merges into this profile and the one that absorbed it, newest first."""
    from django.db.models import Q

    return (
        ProfileMerge.objects.filter(Q(survivor=profile) | Q(absorbed=profile))
        .select_related("actor", "undone_by")
        .order_by("-created_at")
    )

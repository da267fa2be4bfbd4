from __future__ import annotations

import uuid

from django.conf import settings
from django.db.models import Prefetch, QuerySet

from .models import Identifier, IdentifierType, Profile
from .normalize import normalize

EXTERNAL_ID_TYPES = ("id", *IdentifierType.values)


class ExternalIdError(ValueError):
    pass


def parse_external_id(external_id: str) -> tuple[str, str]:
    """``user_id:42`` -> ("user_id", "42"); raises ExternalIdError when malformed."""
    kind, sep, value = external_id.partition(":")
    if not sep or not value or kind not in EXTERNAL_ID_TYPES:
        raise ExternalIdError(
            "Profile ids have the form <type>:<value>, e.g. user_id:42 or "
            "email:a@example.com; type is one of " + ", ".join(EXTERNAL_ID_TYPES) + "."
        )
    return kind, value


def profile_get_by_external_id(*, external_id: str) -> Profile | None:
    """The live profile an external id points to (following merges)."""
    kind, value = parse_external_id(external_id)
    profile: Profile | None
    if kind == "id":
        try:
            pk = uuid.UUID(value)
        except ValueError as exc:
            raise ExternalIdError(f"{value!r} is not a valid profile UUID.") from exc
        profile = Profile.objects.filter(pk=pk).first()
    else:
        normalized = normalize(kind, value, phone_region=settings.CDP["PHONE_DEFAULT_REGION"])
        if normalized is None:
            return None
        identifier = (
            Identifier.objects.filter(type=kind, value=normalized).select_related("profile").first()
        )
        profile = identifier.profile if identifier else None
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

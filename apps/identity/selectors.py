from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from .models import Identifier, IdentifierType, Profile, ProfileMerge
from .services.rules import IdentityRules, identity_rules_load

EXTERNAL_ID_TYPES = ("id", *IdentifierType.values)


class ExternalIdError(ValueError):
    pass


def parse_external_id(external_id: str, rules: IdentityRules | None = None) -> tuple[str, str]:
    """``user_id:42`` -> ("user_id", "42"); raises ExternalIdError when malformed."""
    kinds = ("id", *(rules.types if rules else IdentifierType.values))
    if "\x00" in external_id:
        # Never part of an identifier, and PostgreSQL refuses it in a query.
        raise ExternalIdError("Profile ids cannot contain a NUL character (%00).")
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


def identifier_owners(*, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], uuid.UUID]:
    """(type, normalized value) -> the profile holding it, for those that exist."""
    by_type: dict[str, list[str]] = {}
    for kind, value in keys:
        by_type.setdefault(kind, []).append(value)
    if not by_type:
        return {}
    match = Q()
    for kind, values in by_type.items():
        match |= Q(type=kind, value__in=values)
    return {
        (kind, value): profile_id
        for kind, value, profile_id in Identifier.objects.filter(match).values_list(
            "type", "value", "profile_id"
        )
    }


def profile_tree_ids(*, profile_id: uuid.UUID) -> list[uuid.UUID]:
    """The profile and every profile merged into it, directly or through others."""
    tree, frontier = [profile_id], [profile_id]
    while frontier:
        found = Profile.objects.filter(merged_into_id__in=frontier).values_list("id", flat=True)
        frontier = [p for p in found if p not in tree]
        tree += frontier
    return tree


def profiles_for_export(*, profile_ids: Iterable[uuid.UUID]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(p.id),
            "traits": p.traits,
            "first_seen": p.first_seen,
            "last_seen": p.last_seen,
            "created_at": p.created_at,
            "merged_into": str(p.merged_into_id) if p.merged_into_id else None,
        }
        for p in Profile.objects.filter(id__in=list(profile_ids)).order_by("created_at")
    ]


def identifiers_for_export(*, profile_ids: Iterable[uuid.UUID]) -> list[dict[str, Any]]:
    rows = (
        Identifier.objects.filter(profile_id__in=list(profile_ids))
        .order_by("created_at", "id")
        .values("type", "value", "raw_value", "created_at")
    )
    return [dict(row) for row in rows]


def merges_for_export(*, profile_ids: Iterable[uuid.UUID]) -> list[dict[str, Any]]:
    ids = list(profile_ids)
    return [
        {
            "survivor": str(m.survivor_id),
            "absorbed": str(m.absorbed_id),
            "reason": m.reason,
            "details": m.details,
            "absorbed_snapshot": m.absorbed_snapshot,
            "created_at": m.created_at,
            "undone_at": m.undone_at,
        }
        for m in ProfileMerge.objects.filter(
            Q(survivor_id__in=ids) | Q(absorbed_id__in=ids)
        ).order_by("created_at")
    ]


def person_identifier_values(*, profile_ids: Iterable[uuid.UUID]) -> list[tuple[str, str, str]]:
    """(type, normalized value, raw value) of every identifier these profiles hold
    or held (merge records remember the identifiers an absorbed profile brought)."""
    ids = list(profile_ids)
    out = set(
        Identifier.objects.filter(profile_id__in=ids).values_list("type", "value", "raw_value")
    )
    for snapshot in ProfileMerge.objects.filter(
        Q(survivor_id__in=ids) | Q(absorbed_id__in=ids)
    ).values_list("absorbed_snapshot", flat=True):
        for pair in (snapshot or {}).get("identifiers", []):
            if isinstance(pair, list) and len(pair) == 2:
                out.add((str(pair[0]), str(pair[1]), str(pair[1])))
    return sorted(out)


def person_related_rows(
    *, profile_ids: Iterable[uuid.UUID], values: Iterable[str]
) -> dict[str, list[str]]:
    """The rows ``person_erase`` deletes besides the profiles, as
    ``{"app_label.model": [primary keys as text]}``: erasure purges the admin log
    entries that name them."""
    from .dedup.models import DuplicateCandidate
    from .models import IdentityConflict

    ids = list(profile_ids)
    rows = {
        "identity.identifier": Identifier.objects.filter(profile_id__in=ids),
        "identity.profilemerge": ProfileMerge.objects.filter(
            Q(survivor_id__in=ids) | Q(absorbed_id__in=ids)
        ),
        "identity.identityconflict": IdentityConflict.objects.filter(
            Q(profile_id__in=ids)
            | Q(other_profile_id__in=ids)
            | Q(identifier_value__in=list(values))
        ),
        "identity.duplicatecandidate": DuplicateCandidate.objects.filter(
            Q(profile_a_id__in=ids) | Q(profile_b_id__in=ids)
        ),
    }
    return {
        label: [str(pk) for pk in qs.values_list("pk", flat=True)] for label, qs in rows.items()
    }

"""Erasing a person from identity's tables (called by consent's erasure)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q

from apps.identity.models import IdentityConflict, Profile, ProfileMerge


@transaction.atomic
def person_erase(*, profile_ids: Sequence[uuid.UUID], values: Sequence[str]) -> dict[str, int]:
    """Delete the profiles and everything that names them: identifiers, merge
    records (with their snapshots), conflicts, dedup candidates and block keys.

    Merge records between one of these profiles and another person are deleted
    too: their snapshots hold this person's data. Conflicts that recorded one of
    the person's identifier values on someone else's profile go as well.
    """
    from apps.identity.dedup.models import DedupBlockKey, DuplicateCandidate

    ids = list(profile_ids)
    counts: dict[str, int] = {}
    counts["dedup_candidates"] = DuplicateCandidate.objects.filter(
        Q(profile_a_id__in=ids) | Q(profile_b_id__in=ids)
    ).delete()[0]
    counts["dedup_block_keys"] = DedupBlockKey.objects.filter(profile_id__in=ids).delete()[0]
    counts["conflicts"] = IdentityConflict.objects.filter(
        Q(profile_id__in=ids) | Q(other_profile_id__in=ids) | Q(identifier_value__in=list(values))
    ).delete()[0]
    counts["merges"] = ProfileMerge.objects.filter(
        Q(survivor_id__in=ids) | Q(absorbed_id__in=ids)
    ).delete()[0]
    # Profiles outside the person that point at one of theirs (cannot happen for a
    # whole merge tree, but a split-off profile may still be referenced).
    Profile.objects.filter(merged_into_id__in=ids).exclude(id__in=ids).update(merged_into=None)
    Profile.objects.filter(id__in=ids).update(merged_into=None)
    _deleted, per_model = Profile.objects.filter(id__in=ids).delete()
    counts["profiles"] = per_model.get("identity.Profile", 0)
    counts["identifiers"] = per_model.get("identity.Identifier", 0)
    return counts

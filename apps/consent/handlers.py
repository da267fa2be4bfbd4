"""What profile lifecycle hooks (apps/identity/hooks.py) do to consent records.

Both logs of a merge are kept: the absorbed profile's joins its survivor's, and
the survivor's state is the latest statement of either. A split gives back the
statements made for the split-out profile (or for profiles it had absorbed)."""

from __future__ import annotations

from apps.identity.hooks import ProfilesMerged, ProfileSplit, merged, split

from .services.consent import consent_reassign_profiles, consent_restore_after_split


@merged.register("consent", order=20)
def consent_follow_merge(event: ProfilesMerged) -> None:
    consent_reassign_profiles(mapping=dict(event.mapping))


@split.register("consent", order=20)
def consent_follow_split(event: ProfileSplit) -> None:
    consent_restore_after_split(
        split_profile_id=event.profile_id,
        origin_profile_ids=event.tree_ids,
        from_profile_id=event.from_profile_id,
    )

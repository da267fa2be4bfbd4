"""What profile lifecycle hooks (apps/identity/hooks.py) do to events: they follow
their profile into a merge, and go back with it when it is split out."""

from __future__ import annotations

from apps.identity.hooks import ProfilesMerged, ProfileSplit, merged, split
from apps.identity.models import IdentifierType
from apps.identity.services import profile_seen_extend

from .selectors import event_sent_ids, event_time_range
from .services import events_reassign_by_ids, events_reassign_profiles


@merged.register("events", order=10)
def events_follow_merge(event: ProfilesMerged) -> None:
    events_reassign_profiles(mapping=dict(event.mapping))


@split.register("events", order=10)
def events_follow_split(event: ProfileSplit) -> None:
    """An event goes back when the strongest id it carries is now the split-out
    profile's. Events hold ids as sent (" Tab8 "), identifiers their normalized
    form ("tab8"): the ids sent are matched through the same normalization."""
    sent_users, sent_anon = event_sent_ids(profile_id=event.from_profile_id)

    def sent_as(kind: str, sent: set[str], held: frozenset[tuple[str, str]]) -> list[str]:
        return sorted(raw for raw in sent if (kind, event.normalize(kind, raw)) in held)

    events_reassign_by_ids(
        from_profile_id=event.from_profile_id,
        to_profile_id=event.profile_id,
        user_ids=sent_as(IdentifierType.USER_ID, sent_users, event.identifiers),
        anonymous_ids=sent_as(IdentifierType.ANONYMOUS_ID, sent_anon, event.identifiers),
        keep_user_ids=sent_as(IdentifierType.USER_ID, sent_users, event.kept_user_ids),
    )
    if event.recompute_seen:
        first, last = event_time_range(profile_id=event.from_profile_id)
        profile_seen_extend(profile_id=event.from_profile_id, first=first, last=last)

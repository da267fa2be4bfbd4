from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db.models import Max, Min, QuerySet

from .models import Event


def event_list_for_profile(*, profile_id: uuid.UUID) -> QuerySet[Event]:
    """A profile's events, newest first (merged profiles' events are moved)."""
    return Event.objects.filter(profile_id=profile_id).order_by("-timestamp", "-id")


def event_time_range(*, profile_id: uuid.UUID) -> tuple[Any, Any]:
    agg = Event.objects.filter(profile_id=profile_id).aggregate(
        first=Min("timestamp"), last=Max("timestamp")
    )
    return agg["first"], agg["last"]


def event_sent_ids(*, profile_id: uuid.UUID) -> tuple[set[str], set[str]]:
    """The user ids and anonymous ids a profile's events carry, as sent (not
    normalized): (user ids, anonymous ids)."""
    events = Event.objects.filter(profile_id=profile_id).order_by()
    return (
        set(events.values_list("user_id", flat=True).distinct()) - {""},
        set(events.values_list("anonymous_id", flat=True).distinct()) - {""},
    )


def events_for_export(*, profile_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """Every event of these profiles, oldest first, as plain rows (data-subject access)."""
    rows = (
        Event.objects.filter(profile_id__in=list(profile_ids))
        .order_by("timestamp", "id")
        .values(
            "message_id",
            "type",
            "event",
            "name",
            "user_id",
            "anonymous_id",
            "previous_id",
            "group_id",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
            "properties",
            "traits",
            "context",
            "extra",
        )
    )
    return [dict(row) for row in rows]


def events_pending_identities(*, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Unprocessed events, in id order from ``after_id``, with what identifies their
    sender (for erasure: pending events of an erased person go too)."""
    qs = Event.objects.filter(processed_at__isnull=True, id__gt=after_id).order_by("id")
    fields = ("id", "type", "user_id", "anonymous_id", "previous_id", "traits", "context")
    return [dict(row) for row in qs.values(*fields)[:limit]]

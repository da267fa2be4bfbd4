from __future__ import annotations

import uuid
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

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from .models import Event


def event_list_for_profile(*, profile_id: uuid.UUID) -> QuerySet[Event]:
    """A profile's events, newest first (merged profiles' events are moved)."""
    return Event.objects.filter(profile_id=profile_id).order_by("-timestamp", "-id")

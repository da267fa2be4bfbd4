"""Correcting a person's traits (GDPR Art. 16 rectification)."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.common.exceptions import ApplicationError
from apps.identity.models import Profile


@transaction.atomic
def profile_traits_rectify(*, profile_id: uuid.UUID, changes: dict[str, Any]) -> list[str]:
    """Set (or, with None, remove) traits; returns the names that changed.

    The corrections are stamped now, so an older event arriving late does not
    overwrite them (traits keep the newest value by event time).
    """
    if not changes:
        raise ApplicationError("Name at least one trait to correct.")
    for name in changes:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ApplicationError(f"Invalid trait name {name!r}.")
    profile = Profile.objects.select_for_update().get(pk=profile_id)
    stamp = timezone.now().astimezone(UTC).isoformat(timespec="microseconds")
    changed = []
    for name, value in changes.items():
        if value is None:
            if name in profile.traits:
                del profile.traits[name]
                profile.trait_timestamps[name] = stamp
                changed.append(name)
        elif profile.traits.get(name) != value:
            profile.traits[name] = value
            profile.trait_timestamps[name] = stamp
            changed.append(name)
    if changed:
        profile.save(update_fields=["traits", "trait_timestamps", "updated_at"])
    return sorted(changed)

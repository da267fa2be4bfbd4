"""Correcting a person's traits (GDPR Art. 16 rectification)."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.common.exceptions import ApplicationError
from apps.identity.models import Identifier, Profile

from .rules import identity_rules_load


@transaction.atomic
def profile_traits_rectify(*, profile_id: uuid.UUID, changes: dict[str, Any]) -> list[str]:
    """Set (or, with None, remove) traits; returns the names that changed.

    The corrections are stamped now, so an older event arriving late does not
    overwrite them (traits keep the newest value by event time). A trait that is
    also an identifier (email, phone, an admin's custom type) takes its identifier
    along: the wrong value no longer stitches events to this person, the right one
    does. A value another profile holds is refused: that is a merge, not a
    correction.
    """
    if not changes:
        raise ApplicationError("Name at least one trait to correct.")
    for name in changes:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ApplicationError(f"Invalid trait name {name!r}.")
    profile = Profile.objects.select_for_update().get(pk=profile_id)
    stamp = timezone.now().astimezone(UTC).isoformat(timespec="microseconds")
    rules = identity_rules_load()
    identifying = {trait: kind for trait, kind in rules.trait_types()}
    for name, value in changes.items():
        if name in identifying and profile.traits.get(name) != value:
            _identifier_replace(
                profile=profile,
                kind=identifying[name],
                old=profile.traits.get(name),
                new=value,
                rules=rules,
            )
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


def _identifier_replace(*, profile: Profile, kind: str, old: Any, new: Any, rules: Any) -> None:
    old_value = rules.normalize(kind, old) if old is not None else None
    new_value = rules.normalize(kind, new) if new is not None else None
    if new is not None and new_value is None:
        raise ApplicationError(f"{new!r} is not a usable {kind}.")
    if old_value == new_value:
        return  # the same identifier written differently ("Ann@X.com", "ann@x.com")
    if old_value is not None:
        Identifier.objects.filter(profile=profile, type=kind, value=old_value).delete()
    if new_value is None:
        return
    holder = Identifier.objects.filter(type=kind, value=new_value).values_list(
        "profile_id", flat=True
    )
    holder_id = holder.first()
    if holder_id == profile.pk:
        return
    if holder_id is not None:
        raise ApplicationError(
            f"Another profile (id:{holder_id}) holds this {kind}; merge the two "
            "profiles instead of correcting the trait."
        )
    cap = rules.cap(kind)
    held = Identifier.objects.filter(profile=profile, type=kind).count()
    if cap is not None and held >= cap:
        raise ApplicationError(
            f"The profile already holds {held} identifiers of type {kind} (the limit)."
        )
    try:
        with transaction.atomic():
            Identifier.objects.create(
                profile=profile, type=kind, value=new_value, raw_value=str(new)[:255]
            )
    except IntegrityError:
        raise ApplicationError(
            f"Another profile took this {kind} meanwhile; merge the two profiles instead."
        ) from None

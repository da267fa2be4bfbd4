"""What personalization plugs into: the mapping cache's invalidation (Django
signals on placements, variants and rules, mapping.py), the publishable keys'
CORS check (django-cors-headers), merge and split handlers for holdout keys and
exposures, the erasers of a person's exposures and holdout key, and the demo's
content step."""

from __future__ import annotations

from typing import Any

from corsheaders.signals import check_request_enabled
from django.db.models import Case, F, When
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete, post_save

from apps.consent.registry import ErasedPerson, PersonalDataEraser, personal_data_erasers
from apps.identity.hooks import ProfilesMerged, ProfileSplit, merged, split

from . import demo  # noqa: F401  (the "personalization.content" demo step)
from .holdouts import holdout_keys_keep
from .keys import cors_allowed, origins_cache_clear
from .mapping import mapping_version_bump
from .models import ContentVariant, Exposure, HoldoutKey, Placement, PublishableKey, Rule

_KINDS: dict[type, str] = {Placement: "placement", ContentVariant: "variant", Rule: "rule"}


def _changed(sender: type, instance: Any, **kwargs: Any) -> None:
    key = str(instance.pk) if sender is Rule else instance.key
    action = "deleted" if kwargs.get("signal") is post_delete else "saved"
    mapping_version_bump(kind=_KINDS[sender], key=key, action=action)


for _model in _KINDS:
    post_save.connect(_changed, sender=_model, dispatch_uid=f"perso-mapping-save-{_model.__name__}")
    post_delete.connect(
        _changed, sender=_model, dispatch_uid=f"perso-mapping-delete-{_model.__name__}"
    )


def _keys_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    origins_cache_clear()


post_save.connect(_keys_changed, sender=PublishableKey, dispatch_uid="perso-keys-save")
post_delete.connect(_keys_changed, sender=PublishableKey, dispatch_uid="perso-keys-delete")
check_request_enabled.connect(cors_allowed, dispatch_uid="perso-cors")


@merged.register("personalization", order=60)
def holdouts_follow_merge(event: ProfilesMerged) -> None:
    # The survivor keeps its key, so its holdouts stay as they were; the absorbed
    # profiles' rows stay too (a split gives them back their own). Exposures move
    # to the survivor like the rest of the person's history, each remembering the
    # profile it was for (kept through later merges), so that a split can tell
    # them apart.
    holdout_keys_keep(set(event.mapping.values()))
    # One query for which absorbed profiles have exposures at all (a bulk merge of
    # dedup pairs maps thousands, nearly none exposed), then one update for each.
    exposed = set(
        Exposure.objects.filter(profile_id__in=list(event.mapping))
        .values_list("profile_id", flat=True)
        .distinct()
    )
    for absorbed in exposed:
        Exposure.objects.filter(profile_id=absorbed).update(
            origin_profile_id=Coalesce(F("origin_profile_id"), F("profile_id")),
            profile_id=event.mapping[absorbed],
        )


@split.register("personalization", order=60)
def personalization_follow_split(event: ProfileSplit) -> None:
    """The split-out profile is a person of its own again.

    Holdouts: its key is its own again with nothing to write. The merge pinned
    only the survivor's key and left the absorbed profile's (its own id, or the
    row pinned when it was itself a survivor), and decisions read the key of the
    profile they resolve to, which is now the split-out one for its identifiers:
    it is back in the groups it had before the merge, and the profile left keeps
    its own.

    Exposures: those decided for it, or for a profile it had absorbed before its
    merge (``tree_ids``; the merge hook recorded each row's origin), go back to
    it; those decided for the merged person after the merge stay with the
    profile left (a decision names the live profile, not which identifier
    asked)."""
    Exposure.objects.filter(
        profile_id=event.from_profile_id, origin_profile_id__in=list(event.tree_ids)
    ).update(
        profile_id=event.profile_id,
        # Its own rows are its own again (no origin); rows of profiles it had
        # absorbed keep theirs, for a split of those later.
        origin_profile_id=Case(
            When(origin_profile_id=event.profile_id, then=None),
            default=F("origin_profile_id"),
        ),
    )


def _erase_exposures(person: ErasedPerson, *, batch_size: int) -> int:
    deleted, _ = Exposure.objects.filter(profile_id__in=list(person.profile_ids)).delete()
    return deleted


def _erase_holdout_keys(person: ErasedPerson, *, batch_size: int) -> int:
    deleted, _ = HoldoutKey.objects.filter(profile_id__in=list(person.profile_ids)).delete()
    return deleted


# Again after the pending sweep: a decision's buffer may be flushed meanwhile.
personal_data_erasers.register(
    "personalization_exposures",
    PersonalDataEraser(erase=_erase_exposures, step="local", batched=False, meanwhile=True),
)
personal_data_erasers.register(
    "personalization_holdout_keys",
    PersonalDataEraser(erase=_erase_holdout_keys, step="local", batched=False, meanwhile=True),
)

"""What segments plug into the layers below (apps/common/registry.py): the
"segments.features" pipeline stage, merge and split handlers, the eraser of a
person's features, the export of them, and the features part of a profile's API
detail and admin page."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db.models import Count
from django.forms.models import model_to_dict
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.consent.registry import (
    ErasedPerson,
    PersonalDataEraser,
    personal_data_erasers,
    personal_data_providers,
)
from apps.events.demo import demo_steps
from apps.events.pipeline import stages
from apps.identity.hooks import ProfilesMerged, ProfileSplit, merged, split
from apps.identity.sections import profile_admin_context, profile_api_fields

from .api import profile_fields  # noqa: F401  (the profile detail's "segments" field)
from .demo import demo_segments
from .features import PUBLIC_FEATURES
from .memberships import (
    memberships_erase,
    memberships_follow_merge,
    memberships_follow_split,
    segments_realtime,
)
from .models import ProfileFeatures
from .services import features_public, features_recompute, features_update, rfm_refresh

stages.register("segments.features", features_update, order=10)
# After the features: a segment reads the features these very events made.
stages.register("segments.realtime", segments_realtime, order=20)


@merged.register("segments", order=30)
def features_follow_merge(event: ProfilesMerged) -> None:
    # After events (10): the survivors' events are theirs already.
    ProfileFeatures.objects.filter(profile_id__in=list(event.mapping)).delete()
    features_recompute(profile_ids=sorted(set(event.mapping.values())))


@split.register("segments", order=30)
def features_follow_split(event: ProfileSplit) -> None:
    features_recompute(profile_ids=[event.profile_id, event.from_profile_id])


@merged.register("segments.memberships", order=40)
def memberships_merge(event: ProfilesMerged) -> None:
    # After the features (30): the survivor is evaluated on its merged features.
    memberships_follow_merge(dict(event.mapping))


@split.register("segments.memberships", order=40)
def memberships_split(event: ProfileSplit) -> None:
    memberships_follow_split([event.profile_id, event.from_profile_id])


def _erase_memberships(person: ErasedPerson, *, batch_size: int) -> int:
    return memberships_erase(person.profile_ids)


# Memberships, their history, the outbox and rechecks; again after the pending
# sweep, since a worker may evaluate her last events meanwhile.
personal_data_erasers.register(
    "segment_memberships",
    PersonalDataEraser(erase=_erase_memberships, step="local", batched=False, meanwhile=True),
)


def _erase_features(person: ErasedPerson, *, batch_size: int) -> int:
    deleted, _ = ProfileFeatures.objects.filter(profile_id__in=list(person.profile_ids)).delete()
    return deleted


# One statement (by primary key); run again after the pending sweep, since a worker
# may fold her last events meanwhile.
personal_data_erasers.register(
    "profile_features",
    PersonalDataEraser(erase=_erase_features, step="local", batched=False, meanwhile=True),
)


def _export_features(profile_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    rows = ProfileFeatures.objects.filter(profile_id__in=list(profile_ids)).order_by("profile_id")
    return [{"profile_id": str(row.profile_id), **features_public(row)} for row in rows]


personal_data_providers.register("profile_features", _export_features, order=10)


_FEATURES_SCHEMA = serializers.DictField(
    help_text="Behavioural features by name: " + ", ".join(PUBLIC_FEATURES) + "."
)


@extend_schema_field(_FEATURES_SCHEMA)
class ProfileFeaturesField(serializers.Field):  # type: ignore[type-arg]
    """The profile's behavioural features (apps/segments/features.py)."""

    def __init__(self) -> None:
        super().__init__(source="*", read_only=True)

    def to_representation(self, profile: Any) -> dict[str, Any]:
        return features_public(ProfileFeatures.objects.filter(profile_id=profile.pk).first())


profile_api_fields.register("features", ProfileFeaturesField, order=5)


@profile_admin_context.register("segments", order=20)
def features_admin_context(request: HttpRequest, profile_id: str) -> dict[str, Any]:
    if not request.user.has_perm("segments.view_profilefeatures"):
        return {}
    row = ProfileFeatures.objects.filter(profile_id=profile_id).first()
    return {"features": features_public(row), "features_row": model_to_dict(row) if row else None}


@demo_steps.register("segments.rfm", order=10)
def demo_rfm() -> str:
    # The demo's customers get their RFM scores now rather than at the nightly run.
    scored = rfm_refresh()
    groups = (
        ProfileFeatures.objects.exclude(rfm_group="")
        .values("rfm_group")
        .annotate(n=Count("profile"))
        .order_by("-n")
    )
    top = ", ".join(f"{g['rfm_group']} {g['n']}" for g in groups[:4])
    return f"  features:           RFM scores for {scored:,} customers ({top}, ...)"


# After the RFM scores (10): the demo's segments use them.
demo_steps.register("segments.segments", demo_segments, order=20)

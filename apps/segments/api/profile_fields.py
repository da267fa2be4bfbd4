"""The ``segments`` part of a profile's API detail (apps/identity/sections.py):
the keys of its current memberships. Imported by apps/segments/registrations.py."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.identity.sections import profile_api_fields
from apps.segments.memberships import profile_segment_keys

_SEGMENTS_SCHEMA = serializers.ListField(
    child=serializers.CharField(),
    help_text="The keys of the segments the profile is in now, in key order.",
)


@extend_schema_field(_SEGMENTS_SCHEMA)
class ProfileSegmentsField(serializers.Field):  # type: ignore[type-arg]
    """The profile's current segments (GET /api/v1/profiles/<external_id>/segments
    has when and why)."""

    def __init__(self) -> None:
        super().__init__(source="*", read_only=True)

    def to_representation(self, profile: Any) -> list[str]:
        return profile_segment_keys(profile.pk)


profile_api_fields.register("segments", ProfileSegmentsField, order=6)

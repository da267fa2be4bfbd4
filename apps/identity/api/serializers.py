from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.fields import StrictBooleanField, StrictCharField
from apps.identity.models import Identifier, Profile, ProfileMerge
from apps.identity.sections import profile_api_fields
from apps.identity.selectors import profile_merge_history

from .schema import ExternalIdField


class IdentifierSerializer(serializers.ModelSerializer[Identifier]):
    class Meta:
        model = Identifier
        fields = ["type", "value"]


class MergeOutputSerializer(serializers.ModelSerializer[ProfileMerge]):
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)
    undone_by = serializers.CharField(source="undone_by.username", default=None, allow_null=True)

    class Meta:
        model = ProfileMerge
        fields = [
            "id",
            "survivor",
            "absorbed",
            "reason",
            "details",
            "forced",
            "actor",
            "created_at",
            "undone_at",
            "undone_by",
        ]


class ProfileOutputSerializer(serializers.ModelSerializer[Profile]):
    identifiers = IdentifierSerializer(many=True, read_only=True)

    class Meta:
        model = Profile
        fields = ["id", "traits", "identifiers", "first_seen", "last_seen", "merged_into"]


class ProfileDetailOutputSerializer(ProfileOutputSerializer):
    """A profile with its merge history, and what the apps above identity add
    (apps/identity/sections.py: consent's ``consents``, later features, segments)."""

    merges = serializers.SerializerMethodField()

    class Meta(ProfileOutputSerializer.Meta):
        fields = [*ProfileOutputSerializer.Meta.fields, "merges"]

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        for registered in profile_api_fields.items():
            fields[registered.name] = registered.entry()
        return fields

    @extend_schema_field(MergeOutputSerializer(many=True))
    def get_merges(self, profile: Profile) -> list[dict[str, Any]]:
        return MergeOutputSerializer(profile_merge_history(profile=profile), many=True).data  # type: ignore[return-value]


class ProfileMergeInputSerializer(serializers.Serializer[Any]):
    profiles = serializers.ListField(
        child=ExternalIdField(min_length=1),
        min_length=2,
        max_length=2,
        help_text='Two external ids, e.g. ["user_id:42", "email:a@example.com"].',
    )
    force = StrictBooleanField(
        default=False,
        help_text="Merge even against the safety rules (needs the force-merge permission).",
    )
    note = StrictCharField(required=False, allow_blank=True, max_length=500)


class ProfileSplitInputSerializer(serializers.Serializer[Any]):
    note = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Why they are not one person (kept with the record that keeps them apart).",
    )

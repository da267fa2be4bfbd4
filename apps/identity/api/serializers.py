from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from apps.common.fields import StrictBooleanField, StrictCharField
from apps.events.models import Event
from apps.identity.models import Identifier, Profile, ProfileMerge
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
    merges = serializers.SerializerMethodField()
    consents = serializers.SerializerMethodField()

    class Meta(ProfileOutputSerializer.Meta):
        fields = [*ProfileOutputSerializer.Meta.fields, "merges", "consents"]

    @extend_schema_field(
        serializers.DictField(
            child=inline_serializer(
                name="ProfileConsent",
                fields={"status": serializers.CharField(), "allowed": serializers.BooleanField()},
            )
        )
    )
    def get_consents(self, profile: Profile) -> dict[str, Any]:
        """Purpose key -> {status, allowed}: may the profile's data be used for it now."""
        from apps.consent.selectors import consent_states_for_profile

        return {
            s.purpose.key: {"status": s.status, "allowed": s.allowed}
            for s in consent_states_for_profile(profile)
        }

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


class EventOutputSerializer(serializers.ModelSerializer[Event]):
    messageId = serializers.CharField(source="message_id")
    userId = serializers.CharField(source="user_id")
    anonymousId = serializers.CharField(source="anonymous_id")
    # Null when the client did not send them (the Segment spec makes both optional).
    originalTimestamp = serializers.DateTimeField(source="original_timestamp", allow_null=True)
    sentAt = serializers.DateTimeField(source="sent_at", allow_null=True)
    receivedAt = serializers.DateTimeField(source="received_at")
    previousId = serializers.CharField(
        source="previous_id", required=False, help_text="Alias events only."
    )
    groupId = serializers.CharField(
        source="group_id", required=False, help_text="Group events only."
    )

    class Meta:
        model = Event
        fields = [
            "id",
            "messageId",
            "type",
            "event",
            "name",
            "userId",
            "anonymousId",
            "timestamp",
            "originalTimestamp",
            "sentAt",
            "receivedAt",
            "properties",
            "traits",
            "context",
            "previousId",
            "groupId",
        ]

    def to_representation(self, instance: Event) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.type != "alias":
            del data["previousId"]
        if instance.type != "group":
            del data["groupId"]
        return data

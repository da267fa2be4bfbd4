from typing import Any

from rest_framework import serializers

from apps.events.models import Event
from apps.identity.models import Identifier, Profile, ProfileMerge
from apps.identity.selectors import profile_merge_history


class IdentifierSerializer(serializers.ModelSerializer[Identifier]):
    class Meta:
        model = Identifier
        fields = ["type", "value"]


class MergeOutputSerializer(serializers.ModelSerializer[ProfileMerge]):
    actor = serializers.CharField(source="actor.username", default=None)
    undone_by = serializers.CharField(source="undone_by.username", default=None)

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

    def get_consents(self, profile: Profile) -> dict[str, Any]:
        """Purpose key -> {status, allowed}: may the profile's data be used for it now."""
        from apps.consent.selectors import consent_states_for_profile

        return {
            s.purpose.key: {"status": s.status, "allowed": s.allowed}
            for s in consent_states_for_profile(profile)
        }

    def get_merges(self, profile: Profile) -> list[dict[str, Any]]:
        return MergeOutputSerializer(profile_merge_history(profile=profile), many=True).data  # type: ignore[return-value]


class ProfileMergeInputSerializer(serializers.Serializer[Any]):
    profiles = serializers.ListField(
        child=serializers.CharField(),
        min_length=2,
        max_length=2,
        help_text='Two external ids, e.g. ["user_id:42", "email:a@example.com"].',
    )
    force = serializers.BooleanField(
        default=False,
        help_text="Merge even against the safety rules (needs the force-merge permission).",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class ProfileSplitInputSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Why they are not one person (kept with the record that keeps them apart).",
    )


class EventOutputSerializer(serializers.ModelSerializer[Event]):
    messageId = serializers.CharField(source="message_id")
    userId = serializers.CharField(source="user_id")
    anonymousId = serializers.CharField(source="anonymous_id")
    originalTimestamp = serializers.DateTimeField(source="original_timestamp")
    sentAt = serializers.DateTimeField(source="sent_at")
    receivedAt = serializers.DateTimeField(source="received_at")

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
        ]

    def to_representation(self, instance: Event) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.type == "alias":
            data["previousId"] = instance.previous_id
        if instance.type == "group":
            data["groupId"] = instance.group_id
        return data

from typing import Any

from rest_framework import serializers

from apps.events.models import Event
from apps.identity.models import Identifier, Profile


class IdentifierSerializer(serializers.ModelSerializer[Identifier]):
    class Meta:
        model = Identifier
        fields = ["type", "value"]


class ProfileOutputSerializer(serializers.ModelSerializer[Profile]):
    identifiers = IdentifierSerializer(many=True, read_only=True)

    class Meta:
        model = Profile
        fields = ["id", "traits", "identifiers", "first_seen", "last_seen"]


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

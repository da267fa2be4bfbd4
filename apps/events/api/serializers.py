from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.events.models import Event


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

from __future__ import annotations

from rest_framework import serializers

SCHEMA_VERSION = "cdp.feed/1"


class FeedPlacementSerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = serializers.CharField()
    name = serializers.CharField()
    default_variant = serializers.CharField(allow_null=True, help_text="A variant's key.")


class FeedVariantSerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = serializers.CharField()
    placement = serializers.CharField(help_text="The placement's key.")
    name = serializers.CharField()
    payload = serializers.JSONField()


class FeedRuleSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    placement = serializers.CharField(help_text="The placement's key.")
    segment = serializers.CharField(help_text="The segment's key (an audience).")
    variant = serializers.CharField(help_text="The variant's key.")
    priority = serializers.IntegerField(help_text="Higher wins; ties go to the lower id.")
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    holdout_percent = serializers.IntegerField(min_value=0, max_value=100)


class FeedAudienceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = serializers.CharField(help_text="The segment's key.")
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["rule", "cluster"])
    members = serializers.IntegerField(
        help_text="Current members who allow this destination's purpose (a count: "
        "member lists go out as files or webhooks, never in the feed)."
    )


class FeedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    schema = serializers.ChoiceField(
        choices=[SCHEMA_VERSION],
        help_text="The feed's schema and version; a change that is not backwards "
        "compatible gets a new version.",
    )
    generated_at = serializers.DateTimeField()
    destination = serializers.CharField(help_text="The feed destination's key.")
    mapping_version = serializers.IntegerField(
        allow_null=True, help_text="Moves with every change of placements, variants or rules."
    )
    placements = FeedPlacementSerializer(many=True)
    variants = FeedVariantSerializer(many=True)
    rules = FeedRuleSerializer(
        many=True, help_text="Enabled rules of the destination's activated segments."
    )
    audiences = FeedAudienceSerializer(
        many=True,
        help_text="The destination's segments that are activated (at least their "
        "minimum size); the others are left out.",
    )

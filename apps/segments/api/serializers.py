from __future__ import annotations

import uuid
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from apps.common.validators import contains_nul
from apps.segments.models import Membership, Segment

KEY_PATTERN = "^[-a-zA-Z0-9_]+$"
KEY_MAX_LENGTH = 100
# POST /api/v1/segments/preview is this address: a segment with this key could
# not be read back.
RESERVED_KEYS = frozenset({"preview"})
MAX_SIZE = 2**31 - 1  # a PositiveIntegerField

CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {},
    "description": (
        "A condition tree: nodes of type and, or (children), not (child), performed "
        "(event, where, times, times_op, within_seconds or between), feature (name, op, "
        "value), trait (path, op, value), segment (key) and consent (purpose). An "
        "invalid tree is a 400 naming each bad node by its path, e.g. "
        "condition.children[1].times: must be a positive integer."
    ),
    "example": {
        "type": "and",
        "children": [
            {
                "type": "performed",
                "event": "Product Viewed",
                "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
                "times": 3,
                "times_op": ">=",
                "within_seconds": 3600,
            },
            {"type": "feature", "name": "orders_count", "op": "gte", "value": 2},
        ],
    },
}
REASON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {},
    "description": "Why: which conditions held, with which values (or what moved it).",
}


def external_id(profile_id: uuid.UUID) -> str:
    """A profile as the API addresses it: its canonical external id."""
    return f"id:{profile_id}"


def no_nul(value: Any) -> None:
    # PostgreSQL cannot store NUL in jsonb text.
    if contains_nul(value):
        raise serializers.ValidationError("NUL characters (\\u0000) are not allowed.")


def key_not_reserved(value: str) -> None:
    if value in RESERVED_KEYS:
        raise serializers.ValidationError(
            f"{value!r} is reserved (POST /api/v1/segments/{value}): choose another key."
        )


@extend_schema_field(CONDITION_SCHEMA)
class ConditionField(serializers.JSONField):
    """Any JSON here; the tree is checked by apps/segments/conditions.py, whose
    messages name each bad node by its path."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validators", [no_nul])
        super().__init__(**kwargs)


@extend_schema_field({**CONDITION_SCHEMA, "nullable": True})
class ConditionOutputField(serializers.JSONField):
    pass


@extend_schema_field(REASON_SCHEMA)
class ReasonField(serializers.JSONField):
    pass


class SegmentInputSerializer(serializers.Serializer[Any]):
    key = StrictCharField(
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        validators=[
            RegexValidator(KEY_PATTERN, "Letters, digits, hyphens and underscores only."),
            key_not_reserved,
        ],
        help_text="How the API, conditions (type segment) and integrations name it; "
        "it does not change. Not 'preview'.",
    )
    name = StrictCharField(min_length=1, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=10000, default="")
    condition = ConditionField()
    min_size = StrictIntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=MAX_SIZE,
        help_text="Below this many members the segment is not activated.",
    )
    enabled = StrictBooleanField(
        required=False, default=True, help_text="Evaluated in real time and refreshed."
    )


class SegmentChangeInputSerializer(serializers.Serializer[Any]):
    """Any of the fields; ``key`` only as it is (a key does not change)."""

    key = StrictCharField(
        required=False, help_text="The segment's own key only: a key does not change."
    )
    name = StrictCharField(required=False, min_length=1, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=10000)
    condition = ConditionField(required=False)
    min_size = StrictIntegerField(required=False, min_value=0, max_value=MAX_SIZE)
    enabled = StrictBooleanField(required=False)

    def validate_key(self, value: str) -> str:
        segment: Segment = self.context["segment"]
        if value != segment.key:
            raise serializers.ValidationError(
                f"The key of a segment does not change (this one is {segment.key!r})."
            )
        return value


class SegmentOutputSerializer(serializers.ModelSerializer[Segment]):
    condition = ConditionOutputField(
        help_text="Null for a segment whose members another app writes (clustering)."
    )
    activated = serializers.BooleanField(
        read_only=True, help_text="Enabled and at least min_size members."
    )

    class Meta:
        model = Segment
        fields = [
            "key",
            "name",
            "description",
            "kind",
            "condition",
            "min_size",
            "enabled",
            "size",
            "activated",
            "version",
            "refreshed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SegmentInUseSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()
    referred_by = serializers.ListField(
        child=serializers.CharField(), help_text="The keys of the segments that refer to it."
    )


class MemberOutputSerializer(serializers.ModelSerializer[Membership]):
    profile = serializers.SerializerMethodField(help_text="The member's external id.")

    class Meta:
        model = Membership
        fields = ["profile", "entered_at"]

    def get_profile(self, membership: Membership) -> str:
        return external_id(membership.profile_id)


class PreviewInputSerializer(serializers.Serializer[Any]):
    condition = ConditionField()


class PreviewOutputSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="Live profiles the condition selects now.")
    sample = serializers.ListField(
        child=serializers.CharField(), help_text="Some of them, as external ids."
    )


class CurrentMembershipSerializer(serializers.ModelSerializer[Membership]):
    segment: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        read_only=True, slug_field="key"
    )
    reason = ReasonField()

    class Meta:
        model = Membership
        fields = ["segment", "entered_at", "reason"]


class PastMembershipSerializer(CurrentMembershipSerializer):
    exit_reason = ReasonField()

    class Meta(CurrentMembershipSerializer.Meta):
        fields = ["segment", "entered_at", "exited_at", "reason", "exit_reason"]


class ProfileSegmentsOutputSerializer(serializers.Serializer[Any]):
    current = CurrentMembershipSerializer(many=True)
    past = PastMembershipSerializer(
        many=True, help_text="Exited memberships, newest first (at most past_limit)."
    )

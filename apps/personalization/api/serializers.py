from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from apps.identity.api.schema import external_id_schema
from apps.personalization.keys import USER_HASH_PATTERN
from apps.personalization.models import ContentVariant, Placement, Rule
from apps.personalization.payload import PAYLOAD_KEYS, TEXT_LIMITS, URL_MAX_LENGTH, payload_errors

KEY_PATTERN = "^[-a-zA-Z0-9_]+$"
KEY_MAX_LENGTH = 100
MAX_PLACEMENTS = 50


def key_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        validators=[RegexValidator(KEY_PATTERN, "Letters, digits, hyphens and underscores only.")],
        **kwargs,
    )


_PAYLOAD_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        **{k: {"type": "string", "maxLength": n} for k, n in TEXT_LIMITS.items()},
        "image_url": {"type": "string", "format": "uri", "maxLength": URL_MAX_LENGTH},
        "cta_url": {"type": "string", "format": "uri", "maxLength": URL_MAX_LENGTH},
        "data": {"type": "object", "additionalProperties": {}},
    },
    "description": "The content: " + ", ".join(PAYLOAD_KEYS) + " (at least one). "
    "image_url and cta_url are absolute http(s) URLs; html is a snippet the site renders.",
}


@extend_schema_field(_PAYLOAD_SCHEMA)
class PayloadField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        errors = payload_errors(data)
        if errors:
            raise serializers.ValidationError(
                [f"{k}: {v}" if k else v for k, v in sorted(errors.items())]
            )
        return data


def _text(max_length: int, **kwargs: Any) -> StrictCharField:
    return StrictCharField(max_length=max_length, **kwargs)


class VariantInlineSerializer(serializers.Serializer[Any]):
    key = key_field(help_text="Unique over all variants.")
    name = _text(200, min_length=1)
    payload = PayloadField()


class PlacementCreateSerializer(serializers.Serializer[Any]):
    key = key_field(help_text="How sites name it in decide, e.g. home_hero.")
    name = _text(200, min_length=1)
    description = _text(2000, required=False, default="", allow_blank=True)
    default_variant = VariantInlineSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="The variant shown when no rule applies, created with the placement "
        "(or null, and set later with PATCH).",
    )


class PlacementChangeSerializer(serializers.Serializer[Any]):
    name = _text(200, min_length=1, required=False)
    description = _text(2000, required=False, allow_blank=True)
    default_variant = key_field(
        required=False, allow_null=True, help_text="The key of one of this placement's variants."
    )


class PlacementOutputSerializer(serializers.ModelSerializer[Placement]):
    default_variant: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True
    )
    variants: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", many=True, read_only=True
    )

    class Meta:
        model = Placement
        fields = [
            "key",
            "name",
            "description",
            "default_variant",
            "variants",
            "created_at",
            "updated_at",
        ]


class VariantCreateSerializer(VariantInlineSerializer):
    placement = key_field(help_text="The key of the placement it is content for.")


class VariantChangeSerializer(serializers.Serializer[Any]):
    name = _text(200, min_length=1, required=False)
    payload = PayloadField(required=False)


class VariantOutputSerializer(serializers.ModelSerializer[ContentVariant]):
    placement: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True
    )

    class Meta:
        model = ContentVariant
        fields = ["key", "placement", "name", "payload", "created_at", "updated_at"]


class RuleFieldsMixin(serializers.Serializer[Any]):
    priority = StrictIntegerField(
        required=False, min_value=-1_000_000, max_value=1_000_000, help_text="Higher wins."
    )
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    ends_at = serializers.DateTimeField(required=False, allow_null=True)
    holdout_percent = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=100,
        help_text="Share of the segment held out (shown the default) to measure lift.",
    )
    enabled = StrictBooleanField(required=False)


class RuleCreateSerializer(RuleFieldsMixin):
    placement = key_field()
    segment = key_field(help_text="The key of a segment (rule or cluster persona).")
    variant = key_field(help_text="The key of one of the placement's variants.")


class RuleChangeSerializer(RuleFieldsMixin):
    segment = key_field(required=False)
    variant = key_field(required=False)


class RuleOutputSerializer(serializers.ModelSerializer[Rule]):
    placement: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True
    )
    segment: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True
    )
    variant: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key", read_only=True
    )

    class Meta:
        model = Rule
        fields = [
            "id",
            "placement",
            "segment",
            "variant",
            "priority",
            "starts_at",
            "ends_at",
            "holdout_percent",
            "enabled",
            "created_at",
            "updated_at",
        ]


@extend_schema_field(external_id_schema())
class ProfileIdField(StrictCharField):
    """An external id (the view checks it against the identity rules in force, as
    the schema's pattern, made from the same rules, says)."""


class DecideInputSerializer(serializers.Serializer[Any]):
    profile = ProfileIdField(
        help_text="The profile's external id, e.g. anonymous_id:abc or user_id:42 (a "
        "publishable key may use only these two).",
    )
    placements = serializers.ListField(
        child=key_field(), min_length=1, max_length=MAX_PLACEMENTS, allow_empty=False
    )
    user_hash = StrictCharField(
        required=False,
        max_length=64,
        validators=[
            RegexValidator(f"^{USER_HASH_PATTERN}$", "64 hexadecimal digits (HMAC-SHA256).")
        ],
        help_text="With a publishable key and a user_id profile: the hex HMAC-SHA256 of "
        "the user id keyed with the key's identity secret, computed by your backend. "
        "Without a valid one a publishable key may only use anonymous_id.",
    )
    context = serializers.DictField(  # type: ignore[assignment]
        required=False,
        default=dict,
        help_text="What the page knows (URL, device, ...): accepted for the integrations' "
        "sake; decisions read segments, not context.",
    )


_PLAIN_KEY = re.compile(rf"[-a-zA-Z0-9_]{{1,{KEY_MAX_LENGTH}}}")
_PLAIN_HASH = re.compile(USER_HASH_PATTERN)


def decide_input_plain(data: Any) -> dict[str, Any] | None:
    """What ``DecideInputSerializer`` validates ``data`` to, when ``data`` is plainly
    valid (the JSON types the schema names, ASCII text, keys that match in full);
    None for anything else, which the serializer then judges (and words the 400).

    Why: the serializer deep-copies its five fields for every request, 0.09 ms of
    CPU, a tenth of a decision's in-process time. It accepts a superset of what
    this accepts (a property test holds the two to the same result wherever this
    one answers), so no input changes its answer or its error."""
    if type(data) is not dict:
        return None
    profile = data.get("profile")
    placements = data.get("placements")
    if type(profile) is not str or not profile or not profile.isascii() or "\x00" in profile:
        return None
    if type(placements) is not list or not 1 <= len(placements) <= MAX_PLACEMENTS:
        return None
    for key in placements:
        if type(key) is not str or _PLAIN_KEY.fullmatch(key) is None:
            return None
    out: dict[str, Any] = {"profile": profile, "placements": list(placements)}
    if "user_hash" in data:
        user_hash = data["user_hash"]
        if type(user_hash) is not str or _PLAIN_HASH.fullmatch(user_hash) is None:
            return None
        out["user_hash"] = user_hash
    context = data.get("context", {})
    if type(context) is not dict or any(type(k) is not str for k in context):
        return None
    out["context"] = dict(context)
    return out


_REASON = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "rule": {"type": "integer"},
                "segment": {"type": "string", "description": "Not with a publishable key."},
            },
            "required": ["rule"],
        },
        {"type": "string", "enum": ["fallback", "no_consent"]},
    ],
    "description": "The rule (and segment) that decided, also for a holdout; or "
    "fallback (no rule applies, or an unknown profile) or no_consent (the profile has "
    "not consented to personalization).",
}
_DECISION = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "variant": {"type": "string", "nullable": True},
                "payload": {"type": "object", "nullable": True, "additionalProperties": {}},
                "holdout": {"type": "boolean"},
                "reason": _REASON,
            },
            "required": ["variant", "payload", "holdout", "reason"],
        },
        {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
            "description": "An unknown placement.",
        },
    ]
}


@extend_schema_field({"type": "object", "additionalProperties": _DECISION})
class DecisionsField(serializers.DictField):  # type: ignore[type-arg]
    pass  # the schema says what it holds


class DecideOutputSerializer(serializers.Serializer[Any]):
    decisions = DecisionsField(help_text="Placement key -> its decision.")  # type: ignore[assignment]

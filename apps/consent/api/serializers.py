from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.fields import StrictCharField, StrictIntegerField
from apps.common.validators import contains_nul
from apps.consent.deadlines import MAX_EXTENSION_MONTHS
from apps.consent.models import (
    ConsentRecord,
    ConsentStatus,
    DataSubjectRequest,
    Purpose,
    RequestEvent,
    RequestStatus,
    RequestType,
)
from apps.consent.selectors import consent_config
from apps.identity.api.schema import SubjectField, external_id_is_valid

from .schema import PURPOSE_KEY_SCHEMA

# Contains something besides whitespace (Python's whitespace has the separators
# \x1c-\x1f that \s may lack).
NOT_BLANK = RegexValidator(r"[^\s\x1c-\x1f]", "This field may not be blank.")


class PurposeOutputSerializer(serializers.ModelSerializer[Purpose]):
    categories: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="category"
    )

    class Meta:
        model = Purpose
        fields = [
            "key",
            "name",
            "description",
            "legal_basis",
            "required",
            "default_granted",
            "expiry_days",
            "notice_version",
            "notice_hash",
            "gates_storage",
            "storage_policy",
            "anonymized_properties",
            "gates_personalization",
            "gated_destinations",
            "gpc_opt_out",
            "categories",
        ]


def no_nul(value: Any) -> None:
    if contains_nul(value):
        raise serializers.ValidationError("NUL characters (\\u0000) are not allowed.")


@extend_schema_field(PURPOSE_KEY_SCHEMA)
class PurposeKeyField(StrictCharField):
    """The key of a configured purpose (the schema lists them)."""

    def to_internal_value(self, data: Any) -> str:
        key = super().to_internal_value(data)
        if key not in consent_config().purposes and key not in consent_config(fresh=True).purposes:
            raise serializers.ValidationError(f"No consent purpose with key {key!r}.")
        return key


@extend_schema_field(
    {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}], "nullable": True}
)
class IpField(serializers.IPAddressField):
    pass


def not_in_the_future(value: Any) -> None:
    # Five minutes of leeway for the clocks of the systems that send statements.
    if value > timezone.now() + timedelta(minutes=5):
        raise serializers.ValidationError("Must not be in the future.")


class ConsentInputSerializer(serializers.Serializer[Any]):
    class Proof(serializers.Serializer[Any]):
        ip = IpField(required=False, allow_null=True)
        user_agent = StrictCharField(required=False, allow_blank=True, max_length=500)
        page_url = StrictCharField(required=False, allow_blank=True, max_length=2000)

    purpose = PurposeKeyField()
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    given_at = serializers.DateTimeField(
        required=False,
        validators=[not_in_the_future],
        help_text="When the person said it (default: now); not in the future.",
    )
    method = StrictCharField(required=False, allow_blank=True, max_length=100)
    notice_version = StrictCharField(required=False, allow_blank=True, max_length=50)
    proof = Proof(required=False)
    tcf_string = StrictCharField(required=False, allow_blank=True, max_length=10000)
    gcm_flags = serializers.DictField(required=False, validators=[no_nul])
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["api", "import"], default="api"
    )


class ConsentRecordOutputSerializer(serializers.ModelSerializer[ConsentRecord]):
    purpose: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        read_only=True, slug_field="key"
    )
    entered_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField(
        allow_null=True
    )

    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "purpose",
            "status",
            "given_at",
            "recorded_at",
            "source",
            "method",
            "notice_version",
            "notice_hash",
            "ip_hash",
            "user_agent",
            "page_url",
            "tcf_string",
            "gcm_flags",
            "event_message_id",
            "entered_by",
        ]


class ConsentStateOutputSerializer(serializers.Serializer[Any]):
    purpose = serializers.CharField(source="purpose.key")
    name = serializers.CharField()
    status = serializers.CharField()
    allowed = serializers.BooleanField()
    given_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class ProfileConsentOutputSerializer(serializers.Serializer[Any]):
    profile = serializers.UUIDField()
    states = ConsentStateOutputSerializer(many=True)
    log = ConsentRecordOutputSerializer(many=True)


class ConsentCheckOutputSerializer(serializers.Serializer[Any]):
    profile = serializers.UUIDField()
    allowed = serializers.BooleanField()
    at = serializers.CharField(allow_null=True, help_text="The time asked about, as sent.")


class RequestEventOutputSerializer(serializers.ModelSerializer[RequestEvent]):
    actor: serializers.StringRelatedField[Any] = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = RequestEvent
        fields = ["at", "actor", "action", "from_status", "to_status", "note"]


class DsrInputSerializer(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=RequestType.choices)
    subject = SubjectField(
        max_length=300,
        help_text="The person, as an external id whose value its type can use: an "
        "email address for email:, an E.164 number the numbering plan knows for phone:, "
        'not a placeholder such as "null" or "n/a".',
    )
    received_at = serializers.DateTimeField(
        required=False, help_text="Default: now; not in the future, nor before 25 May 2018."
    )
    details = StrictCharField(required=False, allow_blank=True, max_length=10000)

    def validate_subject(self, value: str) -> str:
        from apps.consent.services.dsr import RequestRefused, dsr_subject_clean

        try:
            subject = dsr_subject_clean(value)
        except RequestRefused as exc:
            raise serializers.ValidationError(exc.message.removeprefix("subject: ")) from exc
        if subject != value or not external_id_is_valid(value, where="usable"):
            raise serializers.ValidationError(
                "Not in the form the schema gives (no spaces around it; id: takes a UUID "
                "as 8-4-4-4-12 hex digits)."
            )
        return subject

    def validate_received_at(self, value: Any) -> Any:
        from apps.consent.services.dsr import RequestRefused, dsr_received_at_check

        try:
            dsr_received_at_check(value)
        except RequestRefused as exc:
            raise serializers.ValidationError(exc.message) from exc
        return value


class DsrOutputSerializer(serializers.ModelSerializer[DataSubjectRequest]):
    events = RequestEventOutputSerializer(many=True, read_only=True)

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id",
            "type",
            "subject",
            "status",
            "received_at",
            "due_date",
            "extension_months",
            "extension_reason",
            "details",
            "progress",
            "progress_note",
            "erasure_summary",
            "completed_at",
            "events",
        ]


# No request goes back to received; a rejection comes with a note.
TRANSITION_TARGETS = [c for c in RequestStatus.choices if c[0] != RequestStatus.RECEIVED]
MOVE_TARGETS = [c for c in TRANSITION_TARGETS if c[0] != RequestStatus.REJECTED]
REJECT_TARGETS = [c for c in TRANSITION_TARGETS if c[0] == RequestStatus.REJECTED]


class DsrTransitionInputSerializer(serializers.Serializer[Any]):
    """Which moves the request's current status allows is a 409 if not this one;
    a rejection needs a note (the person must be told why), which the schema says
    as two shapes (DsrTransitionSchema)."""

    status = serializers.ChoiceField(choices=TRANSITION_TARGETS)
    note = StrictCharField(required=False, allow_blank=True, max_length=5000)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data["status"] == RequestStatus.REJECTED and not data.get("note", "").strip():
            raise serializers.ValidationError(
                {"note": "Say why the request is rejected (the person must be told)."}
            )
        return data


class DsrMoveInputSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=MOVE_TARGETS)
    note = StrictCharField(required=False, allow_blank=True, max_length=5000)


class DsrRejectInputSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=REJECT_TARGETS)
    note = StrictCharField(min_length=1, max_length=5000, validators=[NOT_BLANK])


class DsrExtendInputSerializer(serializers.Serializer[Any]):
    months = StrictIntegerField(min_value=1, max_value=MAX_EXTENSION_MONTHS)
    reason = StrictCharField(min_length=1, max_length=5000, validators=[NOT_BLANK])


class DsrRectifyInputSerializer(serializers.Serializer[Any]):
    traits = serializers.DictField(
        validators=[no_nul],
        help_text='Traits to correct, e.g. {"lastName": "Lovelace", "phone": null} (null removes).',
    )


class DsrObjectInputSerializer(serializers.Serializer[Any]):
    purposes = serializers.ListField(child=PurposeKeyField(), min_length=1)

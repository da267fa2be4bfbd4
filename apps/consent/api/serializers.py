from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.common.validators import contains_nul
from apps.consent.models import (
    ConsentRecord,
    ConsentStatus,
    DataSubjectRequest,
    Purpose,
    RequestEvent,
    RequestStatus,
    RequestType,
)


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


class ConsentInputSerializer(serializers.Serializer[Any]):
    class Proof(serializers.Serializer[Any]):
        ip = serializers.IPAddressField(required=False, allow_null=True)
        user_agent = serializers.CharField(required=False, allow_blank=True, max_length=500)
        page_url = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    purpose = serializers.SlugField()
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    given_at = serializers.DateTimeField(required=False)
    method = serializers.CharField(required=False, allow_blank=True, max_length=100)
    notice_version = serializers.CharField(required=False, allow_blank=True, max_length=50)
    proof = Proof(required=False)
    tcf_string = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    gcm_flags = serializers.DictField(required=False, validators=[no_nul])
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["api", "import"], default="api"
    )


class ConsentRecordOutputSerializer(serializers.ModelSerializer[ConsentRecord]):
    purpose: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        read_only=True, slug_field="key"
    )
    entered_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()

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


class RequestEventOutputSerializer(serializers.ModelSerializer[RequestEvent]):
    actor: serializers.StringRelatedField[Any] = serializers.StringRelatedField()

    class Meta:
        model = RequestEvent
        fields = ["at", "actor", "action", "from_status", "to_status", "note"]


class DsrInputSerializer(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=RequestType.choices)
    subject = serializers.CharField(max_length=300)
    received_at = serializers.DateTimeField(required=False)
    details = serializers.CharField(required=False, allow_blank=True, max_length=10000)


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


class DsrTransitionInputSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class DsrExtendInputSerializer(serializers.Serializer[Any]):
    months = serializers.IntegerField(min_value=1, max_value=2)
    reason = serializers.CharField(max_length=5000)


class DsrRectifyInputSerializer(serializers.Serializer[Any]):
    traits = serializers.DictField(
        validators=[no_nul],
        help_text='Traits to correct, e.g. {"lastName": "Lovelace", "phone": null} (null removes).',
    )


class DsrObjectInputSerializer(serializers.Serializer[Any]):
    purposes = serializers.ListField(child=serializers.SlugField(), min_length=1)

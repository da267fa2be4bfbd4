from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.openapi import error_responses
from apps.common.parsers import DepthSafeJSONParser as JSONParser
from apps.common.queue import task_send
from apps.consent.models import ConsentRecord, DataSubjectRequest, Purpose, RequestEvent
from apps.consent.selectors import (
    UnknownPurpose,
    consent_log_for_profile,
    consent_states_for_profile,
    dsr_list_by_urgency,
    external_id_suppressed,
    has_consent,
    purpose_rule,
)
from apps.consent.services import ConsentRefused, consent_record
from apps.consent.services.dsr import (
    RequestRefused,
    dsr_create,
    dsr_export_check,
    dsr_extend,
    dsr_object,
    dsr_rectify,
    dsr_transition,
)
from apps.consent.services.erasure import erasure_start
from apps.consent.services.export import SubjectNotFound, dsr_export_archive
from apps.consent.tasks import erasure_run as erasure_run_task
from apps.identity.api.schema import DESCRIPTION, external_id_schema
from apps.identity.selectors import ExternalIdError, parse_external_id, profile_get_by_external_id
from apps.identity.services import IdentityClaim, profiles_resolve

from .schema import PURPOSE_KEY_SCHEMA
from .serializers import (
    ConsentCheckOutputSerializer,
    ConsentInputSerializer,
    ConsentRecordOutputSerializer,
    ConsentStateOutputSerializer,
    DsrExtendInputSerializer,
    DsrInputSerializer,
    DsrObjectInputSerializer,
    DsrOutputSerializer,
    DsrRectifyInputSerializer,
    DsrTransitionInputSerializer,
    ProfileConsentOutputSerializer,
    PurposeOutputSerializer,
)

EXTERNAL_ID = OpenApiParameter(
    "external_id", external_id_schema(where="path"), OpenApiParameter.PATH, description=DESCRIPTION
)


class Conflict(APIException):
    """A request refused in the current state of the data (a closed request, a
    purpose that cannot be denied): well formed, so not a 400."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _refused(exc: RequestRefused | ConsentRefused) -> Conflict:
    return Conflict(exc.message)


def has_perm(perm: str) -> type[permissions.BasePermission]:
    class HasPerm(permissions.BasePermission):
        message = f"This needs the {perm} permission."

        def has_permission(self, request: Request, view: Any) -> bool:
            return bool(request.user and request.user.has_perm(perm))

    return HasPerm


class PersonErased(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = (
        "This person was erased (a data-subject request): their identifiers are "
        "suppressed, so no profile is created for them."
    )
    default_code = "erased"


def _profile(external_id: str, *, create: bool = False) -> Any:
    try:
        profile = profile_get_by_external_id(external_id=external_id)
        kind, value = parse_external_id(external_id)
    except ExternalIdError as exc:
        raise ValidationError({"external_id": str(exc)}) from exc
    if profile is None and create and kind != "id":
        if external_id_suppressed(external_id):
            # An erased person is not rebuilt, by events or by this API.
            raise PersonErased()
        # Consent often comes before any event (a signup form): the person starts here.
        profile_id = profiles_resolve(
            claims=[IdentityClaim(identifiers=[(kind, value)], timestamp=timezone.now())]
        )[0]
        if profile_id is not None:
            profile = profile_get_by_external_id(external_id=f"id:{profile_id}")
    if profile is None:
        raise Http404("No profile with this id.")
    return profile


class PurposeListApi(generics.ListAPIView[Purpose]):
    """Consent purposes, with what each gates and the categories mapped to it."""

    serializer_class = PurposeOutputSerializer
    queryset = Purpose.objects.prefetch_related("categories").order_by("key")
    pagination_class = None

    @extend_schema(responses={200: PurposeOutputSerializer(many=True), **error_responses()})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ProfileConsentApi(APIView):
    """A profile's consent: the current state per purpose and the full log.

    POST appends a statement (grant, deny or withdraw; withdrawing is the same
    call as granting). It takes effect at once, ingestion included.
    """

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    queryset = ConsentRecord.objects.none()  # model permissions on the consent log

    @extend_schema(
        parameters=[EXTERNAL_ID],
        responses={200: ProfileConsentOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, external_id: str) -> Response:
        profile = _profile(external_id)
        return Response(
            {
                "profile": str(profile.id),
                "states": ConsentStateOutputSerializer(
                    consent_states_for_profile(profile), many=True
                ).data,
                "log": ConsentRecordOutputSerializer(
                    consent_log_for_profile(profile), many=True
                ).data,
            }
        )

    @extend_schema(
        parameters=[EXTERNAL_ID],
        request=ConsentInputSerializer,
        responses={201: ConsentRecordOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, external_id: str) -> Response:
        data = ConsentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            rule = purpose_rule(v["purpose"])
        except UnknownPurpose as exc:
            raise ValidationError({"purpose": str(exc)}) from exc
        proof = v.get("proof") or {}
        with transaction.atomic():
            profile = _profile(external_id, create=True)
            try:
                record = consent_record(
                    profile_id=profile.id,
                    purpose=rule,
                    status=v["status"],
                    source=v["source"],
                    given_at=v.get("given_at"),
                    method=v.get("method", ""),
                    notice_version=v.get("notice_version"),
                    ip=proof.get("ip"),
                    user_agent=proof.get("user_agent", ""),
                    page_url=proof.get("page_url", ""),
                    tcf_string=v.get("tcf_string", ""),
                    gcm_flags=v.get("gcm_flags"),
                    entered_by=request.user if request.user.is_authenticated else None,
                )
            except ConsentRefused as exc:  # e.g. denying a required purpose
                raise _refused(exc) from exc
        return Response(ConsentRecordOutputSerializer(record).data, status=status.HTTP_201_CREATED)


class ProfileConsentCheckApi(APIView):
    """May this profile's data be used for a purpose now (or at ``at``)?"""

    queryset = ConsentRecord.objects.none()

    @extend_schema(
        parameters=[
            EXTERNAL_ID,
            OpenApiParameter("purpose", PURPOSE_KEY_SCHEMA, required=True),
            OpenApiParameter(
                "at", OpenApiTypes.DATETIME, description="Default: now. With a time zone."
            ),
        ],
        responses={200: ConsentCheckOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, external_id: str) -> Response:
        profile = _profile(external_id)
        at_raw = request.query_params.get("at")
        try:
            at = parse_datetime(at_raw) if at_raw else None
        except ValueError:  # well-formed but impossible, e.g. 30 February
            at = None
        if at_raw and (at is None or at.tzinfo is None):
            raise ValidationError({"at": "An ISO-8601 date and time with a time zone."})
        try:
            allowed = has_consent(profile, request.query_params.get("purpose", ""), at=at)
        except UnknownPurpose as exc:
            raise ValidationError({"purpose": str(exc)}) from exc
        return Response({"profile": str(profile.id), "allowed": allowed, "at": at_raw})


class DsrListApi(generics.ListCreateAPIView[DataSubjectRequest]):
    """Data-subject requests, open and most urgent first; POST records a new one."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    serializer_class = DsrOutputSerializer
    queryset = DataSubjectRequest.objects.none()
    pagination_class = None

    def get_queryset(self) -> Any:
        return dsr_list_by_urgency().prefetch_related("events__actor")

    @extend_schema(responses={200: DsrOutputSerializer(many=True), **error_responses()})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=DsrInputSerializer, responses={201: DsrOutputSerializer, **error_responses(400)}
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = DsrInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dsr = dsr_create(actor=request.user, **data.validated_data)
        return Response(DsrOutputSerializer(dsr).data, status=status.HTTP_201_CREATED)


class DsrDetailApi(generics.RetrieveAPIView[DataSubjectRequest]):
    serializer_class = DsrOutputSerializer
    queryset = DataSubjectRequest.objects.prefetch_related("events__actor")

    @extend_schema(responses={200: DsrOutputSerializer, **error_responses(404)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class DsrTransitionApi(APIView):
    """Move a request along: verified, in_progress, completed or rejected (with a note)."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [
        permissions.IsAuthenticated,
        has_perm("consent.process_datasubjectrequest"),
    ]

    @extend_schema(
        request=DsrTransitionInputSerializer,
        responses={200: DsrOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, pk: str) -> Response:
        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        data = DsrTransitionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            dsr = dsr_transition(request=dsr, actor=request.user, **data.validated_data)
        except RequestRefused as exc:  # not a move its status allows
            raise _refused(exc) from exc
        return Response(DsrOutputSerializer(dsr).data)


class DsrExtendApi(APIView):
    """Extend the deadline by one or two months in all, with the reason."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [
        permissions.IsAuthenticated,
        has_perm("consent.process_datasubjectrequest"),
    ]

    @extend_schema(
        request=DsrExtendInputSerializer,
        responses={200: DsrOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, pk: str) -> Response:
        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        data = DsrExtendInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            dsr = dsr_extend(request=dsr, actor=request.user, **data.validated_data)
        except RequestRefused as exc:  # closed, extended already, or too late
            raise _refused(exc) from exc
        return Response(DsrOutputSerializer(dsr).data)


class DsrRectifyApi(APIView):
    """Apply a rectification request: correct the subject's traits."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [
        permissions.IsAuthenticated,
        has_perm("consent.process_datasubjectrequest"),
    ]

    @extend_schema(
        request=DsrRectifyInputSerializer,
        responses={200: DsrOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, pk: str) -> Response:
        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        data = DsrRectifyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            dsr_rectify(request=dsr, traits=data.validated_data["traits"], actor=request.user)
        except RequestRefused as exc:  # another type of request, not verified, nobody held
            raise _refused(exc) from exc
        dsr.refresh_from_db()
        return Response(DsrOutputSerializer(dsr).data)


class DsrObjectApi(APIView):
    """Apply an objection or restriction: deny the named purposes for the subject."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [
        permissions.IsAuthenticated,
        has_perm("consent.process_datasubjectrequest"),
    ]

    @extend_schema(
        request=DsrObjectInputSerializer,
        responses={200: DsrOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, pk: str) -> Response:
        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        data = DsrObjectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            dsr_object(request=dsr, purposes=data.validated_data["purposes"], actor=request.user)
        except UnknownPurpose as exc:  # removed since the input was read
            raise ValidationError({"purposes": str(exc)}) from exc
        except (RequestRefused, ConsentRefused) as exc:  # e.g. objecting to a required one
            raise _refused(exc) from exc
        dsr.refresh_from_db()
        return Response(DsrOutputSerializer(dsr).data)


class DsrEraseApi(APIView):
    """Start the erasure of a verified erasure request (runs as a Celery task)."""

    permission_classes = [
        permissions.IsAuthenticated,
        has_perm("consent.process_datasubjectrequest"),
    ]

    @extend_schema(request=None, responses={202: DsrOutputSerializer, **error_responses(404, 409)})
    def post(self, request: Request, pk: str) -> Response:
        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        with transaction.atomic():
            try:
                dsr = erasure_start(request=dsr, actor=request.user)
            except RequestRefused as exc:  # not an erasure, or not verified
                raise _refused(exc) from exc
            request_id = str(dsr.pk)
            transaction.on_commit(lambda: task_send(erasure_run_task, request_id))
        dsr.refresh_from_db()
        return Response(DsrOutputSerializer(dsr).data, status=status.HTTP_202_ACCEPTED)


class DsrExportApi(APIView):
    """The subject's data as a zip (JSON plus a CSV per table)."""

    permission_classes = [
        permissions.IsAuthenticated,
        has_perm("consent.export_datasubjectrequest"),
    ]

    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **error_responses(404, 409)}
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        dsr = get_object_or_404(DataSubjectRequest, pk=pk)
        return export_response(dsr, request.user)


def export_response(dsr: DataSubjectRequest, user: Any) -> HttpResponse:
    try:
        dsr_export_check(request=dsr)
    except RequestRefused as exc:  # not an access request, or not verified yet
        raise _refused(exc) from exc
    try:
        archive = dsr_export_archive(subject=dsr.subject)
    except SubjectNotFound as exc:
        raise Http404(str(exc)) from exc

    RequestEvent.objects.create(
        request=dsr,
        actor=user,
        action="exported",
        note=f"archive sha256 {hashlib.sha256(archive).hexdigest()}, {len(archive)} bytes",
    )
    response = HttpResponse(archive, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="data-export-{str(dsr.pk)[:8]}.zip"'
    return response

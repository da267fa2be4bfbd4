"""Rule segments in the management API: ``/api/v1/segments`` (definitions, their
members, a preview) and a profile's memberships
(``/api/v1/profiles/<external_id>/segments``)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status, viewsets
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api_auth.permissions import ModelPermissions
from apps.common.openapi import error_responses
from apps.common.pagination import CursorPagination
from apps.common.parsers import DepthSafeJSONParser as JSONParser
from apps.identity.api.views import EXTERNAL_ID, profile_from_path
from apps.segments.conditions import ConditionInvalid
from apps.segments.memberships import (
    SegmentInUse,
    profile_memberships,
    segment_delete,
    segment_members,
    segment_preview,
    segment_save,
)
from apps.segments.models import Membership, Segment, SegmentKind

from .serializers import (
    KEY_MAX_LENGTH,
    KEY_PATTERN,
    MemberOutputSerializer,
    PreviewInputSerializer,
    PreviewOutputSerializer,
    ProfileSegmentsOutputSerializer,
    SegmentChangeInputSerializer,
    SegmentInputSerializer,
    SegmentOutputSerializer,
    external_id,
)

KEY = OpenApiParameter(
    "key",
    {"type": "string", "pattern": KEY_PATTERN, "maxLength": KEY_MAX_LENGTH},
    OpenApiParameter.PATH,
    description="The segment's key.",
)
PAST_LIMIT_DEFAULT, PAST_LIMIT_MAX = 100, 1000
PAST_LIMIT = OpenApiParameter(
    "past_limit",
    {"type": "integer", "minimum": 1, "maximum": PAST_LIMIT_MAX, "default": PAST_LIMIT_DEFAULT},
    OpenApiParameter.QUERY,
    description=f"How many exited memberships, newest first (default {PAST_LIMIT_DEFAULT}, "
    f"at most {PAST_LIMIT_MAX}): a real-time segment with a short window can be entered "
    "and left many times a day.",
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def needs(*perms: str) -> type[permissions.BasePermission]:
    class Needs(permissions.BasePermission):
        message = (
            "This needs the "
            + " and ".join(perms)
            + (" permissions." if len(perms) > 1 else " permission.")
        )

        def has_permission(self, request: Request, view: Any) -> bool:
            return bool(request.user and request.user.has_perms(perms))

    return Needs


def _condition_invalid(exc: ConditionInvalid) -> ValidationError:
    # The messages carry their own path (condition.children[1].times: ...).
    return ValidationError({"condition": exc.errors})


def _rule_only(segment: Segment) -> None:
    if segment.kind != SegmentKind.RULE:
        raise Conflict(
            f"The members of {segment.key!r} are written by {segment.get_kind_display()}: "
            "change it there."
        )


def _fresh(segment: Segment) -> Segment:
    # A refresh writes size, version and refreshed_at with an UPDATE of the row.
    return Segment.objects.get(pk=segment.pk)


class SegmentViewSet(viewsets.GenericViewSet[Segment]):
    """Rule segments: model permissions on segments (view to read; add, change and
    delete to write)."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    queryset = Segment.objects.order_by("key")
    serializer_class = SegmentOutputSerializer
    lookup_field = "key"
    # A few dozen definitions a marketer keeps, not a growing table.
    pagination_class = None

    @extend_schema(
        description="All segments, by key, with their sizes.",
        responses={200: SegmentOutputSerializer(many=True), **error_responses()},
    )
    def list(self, request: Request) -> Response:
        return Response(SegmentOutputSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        description="Create a rule segment: its condition is validated (a 400 names each "
        "bad node by its path), then its members are computed before the answer.",
        request=SegmentInputSerializer,
        responses={201: SegmentOutputSerializer, **error_responses(400, 409)},
    )
    def create(self, request: Request) -> Response:
        data = SegmentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        taken = f"A segment with the key {v['key']!r} already exists."
        if Segment.objects.filter(key=v["key"]).exists():
            raise Conflict(taken)
        try:
            segment = segment_save(
                key=v["key"],
                name=v["name"],
                description=v["description"],
                condition=v["condition"],
                min_size=v["min_size"],
                enabled=v["enabled"],
            )
        except ConditionInvalid as exc:
            raise _condition_invalid(exc) from exc
        except IntegrityError:
            # Another request created the key since the serializer looked.
            if Segment.objects.filter(key=v["key"]).exists():
                raise Conflict(taken) from None
            raise
        return Response(SegmentOutputSerializer(_fresh(segment)).data, status=201)

    @extend_schema(
        description="One segment.",
        parameters=[KEY],
        responses={200: SegmentOutputSerializer, **error_responses(404)},
    )
    def retrieve(self, request: Request, key: str) -> Response:
        return Response(SegmentOutputSerializer(self.get_object()).data)

    @extend_schema(
        description="Change any of its fields but the key; its members, and those of the "
        "segments that refer to it, are refreshed before the answer.",
        parameters=[KEY],
        request=SegmentChangeInputSerializer,
        responses={200: SegmentOutputSerializer, **error_responses(400, 404, 409)},
    )
    def partial_update(self, request: Request, key: str) -> Response:
        segment = self.get_object()
        data = SegmentChangeInputSerializer(data=request.data, context={"segment": segment})
        data.is_valid(raise_exception=True)
        _rule_only(segment)
        v = data.validated_data
        try:
            segment = segment_save(
                key=segment.key,
                name=v.get("name", segment.name),
                description=v.get("description", segment.description),
                condition=v.get("condition", segment.condition),
                min_size=v.get("min_size", segment.min_size),
                enabled=v.get("enabled", segment.enabled),
                segment=segment,
            )
        except ConditionInvalid as exc:
            raise _condition_invalid(exc) from exc
        return Response(SegmentOutputSerializer(_fresh(segment)).data)

    @extend_schema(
        description="Delete a segment and its membership history; refused (409) while "
        "other segments' conditions refer to it, or a clustering config clusters its members.",
        parameters=[KEY],
        responses={204: None, **error_responses(404, 409)},
    )
    def destroy(self, request: Request, key: str) -> Response:
        segment = self.get_object()
        _rule_only(segment)
        try:
            segment_delete(segment)
        except SegmentInUse as exc:
            raise Conflict(exc.message) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentMemberListApi(generics.ListAPIView[Membership]):
    """A segment's current members, longest-standing first (cursor-paginated)."""

    serializer_class = MemberOutputSerializer
    queryset = Membership.objects.none()  # model permissions: viewing memberships

    class Pagination(CursorPagination):
        # (entered_at, id): the partial index membership_current_idx serves it.
        ordering = ("entered_at", "id")
        page_size = 100
        page_size_query_param = "limit"
        max_page_size = 1000

    pagination_class = Pagination

    @extend_schema(
        parameters=[KEY],
        responses={200: MemberOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        segment = get_object_or_404(Segment, key=self.kwargs["key"])
        return segment_members(segment)


class SegmentPreviewApi(APIView):
    """How many profiles a condition selects now, and a sample of them; nothing is
    saved. Reads only: it needs the view permissions on segments and memberships."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [
        permissions.IsAuthenticated,
        needs("segments.view_segment", "segments.view_membership"),
    ]

    @extend_schema(
        request=PreviewInputSerializer,
        responses={200: PreviewOutputSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = PreviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            preview = segment_preview(data.validated_data["condition"])
        except ConditionInvalid as exc:
            raise _condition_invalid(exc) from exc
        return Response(
            {"count": preview.count, "sample": [external_id(pid) for pid in preview.sample]}
        )


class ProfileSegmentListApi(APIView):
    """A profile's segments: its current memberships with when and why it entered,
    and the exited ones, newest first. Merges follow to the survivor."""

    # Viewing memberships, and profiles as the profile's other routes: whoever may
    # not see profiles cannot tell a known external id from an unknown one.
    queryset = Membership.objects.none()
    permission_classes = [ModelPermissions, needs("identity.view_profile")]

    @extend_schema(
        parameters=[EXTERNAL_ID, PAST_LIMIT],
        responses={200: ProfileSegmentsOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, external_id: str) -> Response:
        past_limit = _past_limit(request)
        profile = profile_from_path(external_id)
        rows = profile_memberships(profile.id)
        current = list(rows.filter(exited_at__isnull=True))
        past = list(rows.filter(exited_at__isnull=False)[:past_limit])
        return Response(ProfileSegmentsOutputSerializer({"current": current, "past": past}).data)


def _past_limit(request: Request) -> int:
    raw = request.query_params.get("past_limit")
    if raw is None:
        return PAST_LIMIT_DEFAULT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= PAST_LIMIT_MAX):
        raise ValidationError(
            {
                "past_limit": f"past_limit must be a whole number from 1 to {PAST_LIMIT_MAX}, "
                f"got {raw!r}."
            }
        )
    return int(raw)

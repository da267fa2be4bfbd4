from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.openapi import error_responses
from apps.common.pagination import CursorPagination
from apps.common.parsers import DepthSafeJSONParser as JSONParser
from apps.identity.models import Profile, ProfileMerge
from apps.identity.selectors import ExternalIdError, profile_get_by_external_id, profile_list
from apps.identity.services import MergeRefused, profile_merge, profile_split

from .schema import DESCRIPTION, external_id_schema
from .serializers import (
    MergeOutputSerializer,
    ProfileDetailOutputSerializer,
    ProfileMergeInputSerializer,
    ProfileOutputSerializer,
    ProfileSplitInputSerializer,
)

EXTERNAL_ID = OpenApiParameter(
    "external_id",
    external_id_schema(where="path"),
    OpenApiParameter.PATH,
    description=DESCRIPTION,
)


def profile_from_path(external_id: str, *, follow_merges: bool = True) -> Profile:
    """The profile an external id in a request names: 400 for a malformed id, 404
    for one nobody has (also for other apps' routes under profiles/)."""
    try:
        profile = profile_get_by_external_id(external_id=external_id, follow_merges=follow_merges)
    except ExternalIdError as exc:
        raise ValidationError({"external_id": str(exc)}) from exc
    if profile is None:
        raise Http404("No profile with this id.")
    return profile


class CanChangeProfiles(permissions.BasePermission):
    """Merging and splitting change people's data: the change permission."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("identity.change_profile"))


class ProfileListApi(generics.ListAPIView[Profile]):
    """Live profiles, newest first, with their identifiers (cursor-paginated)."""

    serializer_class = ProfileOutputSerializer
    queryset = Profile.objects.none()

    class Pagination(CursorPagination):
        ordering = ("-created_at", "-id")
        page_size = 50
        page_size_query_param = "limit"
        max_page_size = 500

    pagination_class = Pagination

    @extend_schema(responses={200: ProfileOutputSerializer(many=True), **error_responses(400)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        return profile_list()


class ProfileDetailApi(generics.RetrieveAPIView[Profile]):
    """A profile with its identifiers and merge history (merges follow to the survivor)."""

    serializer_class = ProfileDetailOutputSerializer
    queryset = Profile.objects.none()

    @extend_schema(
        parameters=[EXTERNAL_ID],
        responses={200: ProfileDetailOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_object(self) -> Profile:
        return profile_from_path(self.kwargs["external_id"])


class ProfileMergeApi(APIView):
    """Merge two profiles; the richer, older one survives. Safety rules apply unless
    ``force``."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [permissions.IsAuthenticated, CanChangeProfiles]

    @extend_schema(
        request=ProfileMergeInputSerializer,
        responses={200: MergeOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request) -> Response:
        data = ProfileMergeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        force = data.validated_data["force"]
        if force and not request.user.has_perm("identity.force_merge_profile"):
            raise PermissionDenied("Forcing a merge needs the force-merge permission.")
        first, second = (profile_from_path(e) for e in data.validated_data["profiles"])
        try:
            record = profile_merge(
                profile_ids=(first.id, second.id),
                reason=ProfileMerge.Reason.ADMIN,
                details={"note": data.validated_data.get("note", ""), "via": "api"},
                actor=request.user,
                force=force,
            )
        except MergeRefused as exc:
            return Response({"detail": exc.message, **exc.extra}, status=409)
        return Response(MergeOutputSerializer(record).data)


class ProfileSplitApi(APIView):
    """Split a merged profile back out of its survivor.

    Address the absorbed profile as ``id:<uuid>`` (its identifiers point to the
    survivor until the split). The two are kept apart from then on: events naming
    both do not merge them again, and only a forced merge joins them."""

    parser_classes = [JSONParser]  # the schema lists JSON bodies only
    permission_classes = [permissions.IsAuthenticated, CanChangeProfiles]

    @extend_schema(
        parameters=[EXTERNAL_ID],
        request=ProfileSplitInputSerializer,
        responses={200: ProfileDetailOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request: Request, external_id: str) -> Response:
        data = ProfileSplitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        profile = profile_from_path(external_id, follow_merges=False)
        try:
            restored = profile_split(
                profile_id=profile.id, actor=request.user, note=data.validated_data.get("note", "")
            )
        except MergeRefused as exc:
            return Response({"detail": exc.message}, status=409)
        restored = profile_list().get(pk=restored.pk)
        return Response(ProfileDetailOutputSerializer(restored).data)

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.events.selectors import event_list_for_profile
from apps.identity.models import Profile
from apps.identity.selectors import ExternalIdError, profile_get_by_external_id, profile_list

from .serializers import EventOutputSerializer, ProfileOutputSerializer

EXTERNAL_ID = OpenApiParameter(
    "external_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="<type>:<value>, type one of user_id, anonymous_id, email, phone, id.",
)


def _get_profile(external_id: str) -> Profile:
    try:
        profile = profile_get_by_external_id(external_id=external_id)
    except ExternalIdError as exc:
        raise ValidationError({"external_id": str(exc)}) from exc
    if profile is None:
        raise Http404("No profile with this id.")
    return profile


class ProfileListApi(generics.ListAPIView[Profile]):
    """Live profiles, newest first, with their identifiers (cursor-paginated)."""

    serializer_class = ProfileOutputSerializer
    queryset = Profile.objects.none()

    class Pagination(pagination.CursorPagination):
        ordering = ("-created_at", "-id")
        page_size = 50
        page_size_query_param = "limit"
        max_page_size = 500

    pagination_class = Pagination

    def get_queryset(self) -> Any:
        return profile_list()


class ProfileDetailApi(generics.RetrieveAPIView[Profile]):
    serializer_class = ProfileOutputSerializer
    queryset = Profile.objects.none()

    @extend_schema(parameters=[EXTERNAL_ID])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_object(self) -> Profile:
        return _get_profile(self.kwargs["external_id"])


class ProfileEventListApi(generics.ListAPIView[Any]):
    """A profile's events, newest first (cursor-paginated)."""

    serializer_class = EventOutputSerializer
    queryset = Profile.objects.none()  # permission checks: viewing profiles

    class Pagination(pagination.CursorPagination):
        ordering = ("-timestamp", "-id")
        page_size = 100
        page_size_query_param = "limit"
        max_page_size = 1000

    pagination_class = Pagination

    @extend_schema(parameters=[EXTERNAL_ID])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        profile = _get_profile(self.kwargs["external_id"])
        return event_list_for_profile(profile_id=profile.id)

"""Events in the management API: a profile's events (``/api/v1/profiles/<id>/events``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from apps.common.openapi import error_responses
from apps.common.pagination import CursorPagination
from apps.events.selectors import event_list_for_profile
from apps.identity.api.views import EXTERNAL_ID, profile_from_path
from apps.identity.models import Profile

from .serializers import EventOutputSerializer


class ProfileEventListApi(generics.ListAPIView[Any]):
    """A profile's events, newest first (cursor-paginated)."""

    serializer_class = EventOutputSerializer
    queryset = Profile.objects.none()  # permission checks: viewing profiles

    class Pagination(CursorPagination):
        ordering = ("-timestamp", "-id")
        page_size = 100
        page_size_query_param = "limit"
        max_page_size = 1000

    pagination_class = Pagination

    @extend_schema(
        parameters=[EXTERNAL_ID],
        responses={200: EventOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        profile = profile_from_path(self.kwargs["external_id"])
        return event_list_for_profile(profile_id=profile.id)

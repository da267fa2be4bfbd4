from django.urls import re_path

from .views import (
    ProfileSegmentListApi,
    SegmentMemberListApi,
    SegmentPreviewApi,
    SegmentViewSet,
)

KEY = r"(?P<key>[-a-zA-Z0-9_]+)"

urlpatterns = [
    re_path(
        r"^segments/?$",
        SegmentViewSet.as_view({"get": "list", "post": "create"}),
        name="segment-list",
    ),
    # Before the detail route: "preview" is no segment's key (the serializer refuses it).
    re_path(r"^segments/preview/?$", SegmentPreviewApi.as_view(), name="segment-preview"),
    re_path(rf"^segments/{KEY}/members/?$", SegmentMemberListApi.as_view(), name="segment-members"),
    re_path(
        rf"^segments/{KEY}/?$",
        SegmentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="segment-detail",
    ),
    re_path(
        r"^profiles/(?P<external_id>.+)/segments/?$",
        ProfileSegmentListApi.as_view(),
        name="profile-segments",
    ),
]

from django.urls import re_path

from .views import ProfileDetailApi, ProfileEventListApi, ProfileListApi

urlpatterns = [
    re_path(r"^profiles/?$", ProfileListApi.as_view(), name="profile-list"),
    re_path(
        r"^profiles/(?P<external_id>.+)/events/?$",
        ProfileEventListApi.as_view(),
        name="profile-events",
    ),
    re_path(
        r"^profiles/(?P<external_id>.+?)/?$", ProfileDetailApi.as_view(), name="profile-detail"
    ),
]

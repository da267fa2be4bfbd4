from django.urls import re_path

from .views import (
    ProfileDetailApi,
    ProfileListApi,
    ProfileMergeApi,
    ProfileSplitApi,
)

urlpatterns = [
    re_path(r"^profiles/?$", ProfileListApi.as_view(), name="profile-list"),
    re_path(r"^profiles/merge/?$", ProfileMergeApi.as_view(), name="profile-merge"),
    re_path(
        r"^profiles/(?P<external_id>.+)/split/?$", ProfileSplitApi.as_view(), name="profile-split"
    ),
    re_path(
        r"^profiles/(?P<external_id>.+?)/?$", ProfileDetailApi.as_view(), name="profile-detail"
    ),
]

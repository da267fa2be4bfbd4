from django.urls import re_path

from .views import ProfileEventListApi

urlpatterns = [
    re_path(
        r"^profiles/(?P<external_id>.+)/events/?$",
        ProfileEventListApi.as_view(),
        name="profile-events",
    ),
]

from django.urls import re_path

from .views import FeedApi

urlpatterns = [
    re_path(r"^exports/feed/?$", FeedApi.as_view(), name="exports-feed"),
]

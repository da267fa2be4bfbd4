from django.urls import re_path

from .views import ClusteringConfigRunsApi, ClusteringConfigViewSet, ClusteringRunDetailApi

KEY = r"(?P<key>[-a-zA-Z0-9_]+)"

urlpatterns = [
    re_path(
        r"^clustering/configs/?$",
        ClusteringConfigViewSet.as_view({"get": "list", "post": "create"}),
        name="clustering-config-list",
    ),
    re_path(
        rf"^clustering/configs/{KEY}/runs/?$",
        ClusteringConfigRunsApi.as_view(),
        name="clustering-config-runs",
    ),
    re_path(
        rf"^clustering/configs/{KEY}/?$",
        ClusteringConfigViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
        ),
        name="clustering-config-detail",
    ),
    # Up to 18 digits: every id a bigint holds is shorter, and no longer number
    # reaches the database.
    re_path(
        r"^clustering/runs/(?P<id>[0-9]{1,18})/?$",
        ClusteringRunDetailApi.as_view(),
        name="clustering-run-detail",
    ),
]

from django.urls import re_path

from .views import DecideApi, PlacementViewSet, RuleViewSet, VariantViewSet

KEY = r"(?P<key>[-a-zA-Z0-9_]+)"

urlpatterns = [
    re_path(
        r"^placements/?$",
        PlacementViewSet.as_view({"get": "list", "post": "create"}),
        name="placement-list",
    ),
    re_path(
        rf"^placements/{KEY}/?$",
        PlacementViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
        ),
        name="placement-detail",
    ),
    re_path(
        r"^variants/?$",
        VariantViewSet.as_view({"get": "list", "post": "create"}),
        name="variant-list",
    ),
    re_path(
        rf"^variants/{KEY}/?$",
        VariantViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="variant-detail",
    ),
    re_path(r"^rules/?$", RuleViewSet.as_view({"get": "list", "post": "create"}), name="rule-list"),
    re_path(
        r"^rules/(?P<id>[0-9]+)/?$",
        RuleViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="rule-detail",
    ),
    re_path(r"^decide/?$", DecideApi.as_view(), name="decide"),
]

from django.urls import re_path

from . import views

_KINDS = "identify|track|page|screen|group|alias|batch|import|i|t|p|s|g|a|b"

urlpatterns = [
    re_path(rf"^v1/(?P<kind>{_KINDS})/?$", views.ingest, name="ingest"),
    re_path(r"^v1/m/?$", views.metrics, name="ingest-metrics"),
    re_path(r"^beacon/v1/(?P<kind>batch|b)/?$", views.ingest, name="ingest-beacon"),
]

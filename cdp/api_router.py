from django.urls import include, path

app_name = "api"
urlpatterns = [
    # Before identity: its profile detail route matches any path under profiles/.
    path("", include("apps.consent.api.urls")),
    path("", include("apps.events.api.urls")),
    path("", include("apps.clustering.api.urls")),
    path("", include("apps.segments.api.urls")),
    path("", include("apps.personalization.api.urls")),
    path("", include("apps.exports.api.urls")),
    path("", include("apps.identity.api.urls")),
]

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

handler404 = "apps.common.exceptions.page_not_found"

admin.site.site_header = "CDP administration"
admin.site.site_title = "CDP admin"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # /healthz is answered by apps.common.middleware.healthz_middleware, before
    # host validation and the HTTPS redirect.
    path("admin/", admin.site.urls),
    path("api/v1/", include("cdp.api_router")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("apps.events.urls")),
]

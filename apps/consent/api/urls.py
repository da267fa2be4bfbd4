from django.urls import path, re_path

from .views import (
    DsrDetailApi,
    DsrEraseApi,
    DsrExportApi,
    DsrExtendApi,
    DsrListApi,
    DsrObjectApi,
    DsrRectifyApi,
    DsrTransitionApi,
    ProfileConsentApi,
    ProfileConsentCheckApi,
    PurposeListApi,
)

urlpatterns = [
    path("consent/purposes", PurposeListApi.as_view(), name="consent-purposes"),
    re_path(
        r"^profiles/(?P<external_id>.+)/consents/check/?$",
        ProfileConsentCheckApi.as_view(),
        name="profile-consent-check",
    ),
    re_path(
        r"^profiles/(?P<external_id>.+)/consents/?$",
        ProfileConsentApi.as_view(),
        name="profile-consents",
    ),
    path("privacy-requests", DsrListApi.as_view(), name="dsr-list"),
    path("privacy-requests/<uuid:pk>", DsrDetailApi.as_view(), name="dsr-detail"),
    path(
        "privacy-requests/<uuid:pk>/transition", DsrTransitionApi.as_view(), name="dsr-transition"
    ),
    path("privacy-requests/<uuid:pk>/extend", DsrExtendApi.as_view(), name="dsr-extend"),
    path("privacy-requests/<uuid:pk>/rectify", DsrRectifyApi.as_view(), name="dsr-rectify"),
    path("privacy-requests/<uuid:pk>/object", DsrObjectApi.as_view(), name="dsr-object"),
    path("privacy-requests/<uuid:pk>/erase", DsrEraseApi.as_view(), name="dsr-erase"),
    path("privacy-requests/<uuid:pk>/export", DsrExportApi.as_view(), name="dsr-export"),
]

"""Middleware that must run before Django's own."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


def healthz_middleware(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Answer ``/healthz`` before host validation and the HTTPS redirect.

    Container and load-balancer probes call the server by its address
    (``http://127.0.0.1:8000/healthz``), not by a name in ALLOWED_HOSTS, and over
    plain HTTP behind the TLS proxy: both would otherwise be refused (400) or
    redirected (301), and the node would look dead.
    """
    from .views import healthz

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path_info == "/healthz":
            return healthz(request)
        return get_response(request)

    return middleware

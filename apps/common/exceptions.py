from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A domain rule was broken; the API turns it into a 400 with this message."""

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error is ``{"detail": ...}`` (plus field errors where they exist)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=400)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "Invalid input.", "errors": response.data}
    elif isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": response.data}
    return response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: under /api/ an address no route matches (a malformed UUID, a
    path parameter with a slash) is a 404 like the API's own, ``{"detail": ...}``;
    elsewhere (admin) Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request


class CursorPagination(pagination.CursorPagination):
    """Stable, O(1)-per-page pagination for tables that grow without bound.

    A cursor that cannot be read is a 400 with a message (DRF answers 404)."""

    ordering: str | list[str] | tuple[str, ...] = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    invalid_cursor_message = (
        "Invalid cursor: use the next or previous link of a page as it was returned."
    )

    def _invalid(self) -> ValidationError:
        return ValidationError({self.cursor_query_param: self.invalid_cursor_message})

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise self._invalid() from exc

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except DjangoValidationError as exc:
            # A readable cursor whose position is no value of the ordering field.
            if request.query_params.get(self.cursor_query_param) is None:
                raise
            raise self._invalid() from exc

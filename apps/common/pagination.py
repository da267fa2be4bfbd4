from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request


class CursorPagination(pagination.CursorPagination):
    """Stable, O(1)-per-page pagination for tables that grow without bound.

    A cursor that cannot be read is a 400 with a message (DRF answers 404), and so
    is a ``limit`` that is no whole number from 1 to ``max_page_size`` (DRF would
    quietly use the default page size for ``limit=null``, or cut a large one).
    The schema declares both bounds."""

    ordering: str | list[str] | tuple[str, ...] = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    invalid_cursor_message = (
        "Invalid cursor: use the next or previous link of a page as it was returned."
    )

    def get_page_size(self, request: Request) -> int:
        name = self.page_size_query_param or ""
        raw = request.query_params.get(name)
        if raw is None:
            return self.page_size
        digits = raw.isascii() and raw.isdigit() and len(raw) <= 6  # int() of 5000 digits raises
        if not (digits and 1 <= int(raw) <= self.max_page_size):
            message = f"{name} must be a whole number from 1 to {self.max_page_size}"
            raise ValidationError({name: f"{message}, got {raw!r}."})
        return int(raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.cursor_query_param:
                parameter["description"] = (
                    "Where the page starts: take it from the next or previous link of a page."
                )
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page (default {self.page_size}, at most {self.max_page_size})."
                )
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                    "default": self.page_size,
                }
        return parameters

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

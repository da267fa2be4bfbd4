from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Stable, O(1)-per-page pagination for tables that grow without bound."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

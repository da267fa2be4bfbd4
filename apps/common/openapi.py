"""What the OpenAPI schema says of the answers every view shares: the error body.

``api_exception_handler`` (exceptions.py) makes every API error ``{"detail": ...}``,
with the field errors under ``errors`` for a 400 and, for some refusals, more keys
that say why (a merge refused by a safety rule names the rule). Views list the
error statuses they answer with ``error_responses(400, 404, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema_field, inline_serializer
from rest_framework import serializers


@extend_schema_field(
    {
        "oneOf": [
            {"type": "object", "additionalProperties": {}},
            {"type": "array", "items": {}},
        ],
        "description": "Field name -> its errors (a list of messages, or the errors "
        "of a nested object); a list of messages for errors of the whole body.",
    }
)
class _FieldErrors(serializers.JSONField):
    pass


ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "detail": serializers.CharField(help_text="What went wrong, for a person to read."),
        "errors": _FieldErrors(required=False),
    },
)

_DESCRIPTIONS = {
    400: "The request is malformed: `errors` says which fields and why.",
    401: "No credentials, or a token that is invalid, expired or revoked.",
    403: "The token's user lacks the permission this needs.",
    404: "Nothing at this address (no such profile or request).",
    409: "Refused in the current state of the data (e.g. a request already closed, "
    "a merge the safety rules forbid); `detail` says why.",
}


def error_responses(*statuses: int) -> dict[int, Any]:
    """``responses=`` entries for error statuses; 401 and 403 always (every
    operation needs a token and a permission)."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status])
        for status in sorted({401, 403, *statuses})
    }


def schema_markers_replace(
    node: Any, marker: str, replace: Callable[[dict[str, Any], Any], None]
) -> None:
    """For postprocessing hooks: call ``replace(schema, value)`` on every schema
    object of the generated document that has ``marker``, after removing it."""
    if isinstance(node, dict):
        if marker in node:
            replace(node, node.pop(marker))
        for value in node.values():
            schema_markers_replace(value, marker, replace)
    elif isinstance(node, list):
        for value in node:
            schema_markers_replace(value, marker, replace)

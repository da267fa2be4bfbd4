"""Consent purpose keys in the OpenAPI schema: the purposes configured now.

Purposes are configuration (admin), and a statement about an unknown one is
refused, so the schema lists the keys that exist when it is generated, as the
server checks them."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiSerializerExtension

from apps.common.openapi import schema_markers_replace
from apps.consent.selectors import consent_config

MARKER = "x-cdp-purpose-key"  # replaced by the live keys in postprocess_purpose_keys
PURPOSE_KEY_SCHEMA = {"type": "string", MARKER: True}


def postprocess_purpose_keys(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]."""
    try:
        keys: list[str] | None = sorted(consent_config(fresh=True).purposes)
    except DatabaseError:  # `manage.py spectacular` without a database: any key
        keys = None

    def replace(schema: dict[str, Any], _: Any) -> None:
        if keys:
            schema["enum"] = keys
        elif keys is not None:  # an enum cannot be empty: no key is accepted
            schema["not"] = {}

    schema_markers_replace(result, MARKER, replace)
    return result


class DsrTransitionInputScheme(OpenApiSerializerExtension):
    """A transition is one of two shapes: a move (note optional) or a rejection,
    whose note is required and not blank (the person must be told why)."""

    target_class = "apps.consent.api.serializers.DsrTransitionInputSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        from .serializers import DsrMoveInputSerializer, DsrRejectInputSerializer

        shapes = [DsrMoveInputSerializer, DsrRejectInputSerializer]
        return {
            "oneOf": [auto_schema.resolve_serializer(s, direction).ref for s in shapes],
            "required": ["status"],
        }

"""External ids (``<type>:<value>``) in the OpenAPI schema and in requests.

Which types exist is configuration (custom identifier types are added in admin),
so the pattern is made when the schema is generated, from the same rules the
server checks a request against: the schema refuses exactly what the server does.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import DatabaseError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.fields import StrictCharField
from apps.common.openapi import schema_markers_replace
from apps.identity.normalize import BUILTIN_NORMALIZATION
from apps.identity.services import identity_rules_load

UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# In a path a value cannot hold a slash (it would be another route) or a line break
# (no route matches one); anywhere, NUL is never part of an identifier.
PATH_VALUE = "[^/\\n\\x00]+"
BODY_VALUE = "[^\\x00]+"
# A value that can name someone (a data-subject request's subject), by how its type
# normalizes: an email address, a phone number, or text without surrounding spaces
# that is not only zeros and dashes; 255 characters at most. Still wider than the
# server in two ways JSON Schema cannot follow: a number the numbering plan does
# not know, and placeholders such as "null" or "n/a".
USABLE_VALUE = {
    "email": "[^@\\s\\x00\\x1c-\\x1f]+@[^@\\s\\x00\\x1c-\\x1f]+\\.[^@\\s\\x00\\x1c-\\x1f]+",
    "phone": "\\+?\\(?(?:[0-9][ ().-]{0,2}){7,15}",
}
# The first and last characters are no whitespace (Python's, which strip() takes
# off, has the separators \x1c-\x1f that \s may lack).
_EDGE = "[^\\s\\x00\\x1c-\\x1f]"
USABLE_OTHERWISE = f"(?:{_EDGE}[^\\x00]*)?[^\\s\\x00\\x1c-\\x1f0-](?:[^\\x00]*{_EDGE})?"
MARKER = "x-cdp-external-id"  # replaced by the pattern in postprocess_external_ids
MARKS = ("path", "body", "usable")


def external_id_pattern(normalizations: dict[str, str], *, where: str = "body") -> str:
    """The pattern of an external id with these types (type -> its normalization)."""
    if where == "usable":
        values = [
            f"{re.escape(kind)}:{_usable(how)}" for kind, how in sorted(normalizations.items())
        ]
        return f"^(?:id:{UUID_PATTERN}|{'|'.join(values)})$"
    kinds = "|".join(re.escape(kind) for kind in sorted(normalizations))
    value = PATH_VALUE if where == "path" else BODY_VALUE
    return f"^(?:id:{UUID_PATTERN}|(?:{kinds}):{value})$"


def _usable(normalization: str) -> str:
    return USABLE_VALUE.get(normalization, USABLE_OTHERWISE)


def _usable_schema(normalizations: dict[str, str]) -> dict[str, Any]:
    """One shape per type, each with the length its values may have."""
    shapes: list[dict[str, Any]] = [{"pattern": f"^id:{UUID_PATTERN}$"}]
    for kind, how in sorted(normalizations.items()):
        shapes.append(
            {"pattern": f"^{re.escape(kind)}:{_usable(how)}$", "maxLength": len(kind) + 1 + 255}
        )
    return {"anyOf": shapes}


def _normalizations() -> dict[str, str]:
    return {kind: rule.normalization for kind, rule in identity_rules_load().types.items()}


def external_id_is_valid(external_id: str, *, where: str = "body") -> bool:
    pattern = external_id_pattern(_normalizations(), where=where)
    return re.fullmatch(pattern, external_id) is not None


def external_id_schema(*, where: str = "body") -> dict[str, Any]:
    return {"type": "string", MARKER: where}


DESCRIPTION = (
    "<type>:<value>, type one of id (a profile UUID) and the identifier types "
    "(user_id, anonymous_id, email, phone and any configured in admin)."
)


@extend_schema_field(external_id_schema())
class ExternalIdField(StrictCharField):
    """An external id in a request body, checked against the current types."""

    where = "body"

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not external_id_is_valid(value, where=self.where):
            raise serializers.ValidationError(
                "Not an external id: <type>:<value>, type one of id, "
                + ", ".join(sorted(identity_rules_load().types))
                + " (id: takes a profile UUID)."
            )
        return value


@extend_schema_field(external_id_schema(where="usable"))
class SubjectField(StrictCharField):
    """An external id whose value its type can use (an email address for email:...).

    The serializer checks it (its messages say what is wrong with the value), then
    ``external_id_is_valid(value, where="usable")`` for what the schema says too."""


def postprocess_external_ids(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: the live pattern where the
    schema has the marker."""
    try:
        normalizations = _normalizations()
    except DatabaseError:  # `manage.py spectacular` without a database
        normalizations = {str(kind): how for kind, how in BUILTIN_NORMALIZATION.items()}
    patterns = {where: external_id_pattern(normalizations, where=where) for where in MARKS}

    def replace(schema: dict[str, Any], where: Any) -> None:
        if where == "usable":
            schema.update(_usable_schema(normalizations))
        else:
            schema["pattern"] = patterns[where]

    schema_markers_replace(result, MARKER, replace)
    return result

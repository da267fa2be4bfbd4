"""Input fields that take only the JSON type the schema declares.

DRF's own coerce: ``"reason": 0`` becomes "0", ``"months": "1"`` becomes 1 and
``"force": "yes"`` becomes True, which the OpenAPI schema (string, integer,
boolean) says are invalid. Text is also taken as sent, not trimmed, so that
minLength and maxLength in the schema count what the server counts."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

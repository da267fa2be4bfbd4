"""The segment builder's form (admin): the fields a marketer fills in, the
condition as the public JSON format (apps/segments/conditions.py), checked by the
same validation the API uses, each problem named by its node's path."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from apps.common.validators import contains_nul

from .api.serializers import KEY_MAX_LENGTH, KEY_PATTERN, RESERVED_KEYS
from .conditions import condition_errors
from .memberships import segment_lookups
from .models import Segment

CONDITION_HELP = (
    "Who is in the segment. Build it with the forms above, or write the JSON here "
    "(the same format as the API: and, or, not, performed, feature, trait, segment "
    "and consent nodes)."
)


class ConditionField(forms.JSONField):
    """A JSON textarea, shown indented, whose parse error says where it broke."""

    default_error_messages = {"invalid": "is not valid JSON (%(problem)s)."}

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                self.error_messages["invalid"],
                code="invalid",
                params={"problem": f"line {exc.lineno}, column {exc.colno}: {exc.msg}"},
            ) from exc

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return str(value)
        if isinstance(value, str):
            # Bound data as typed (a failed submit shows what was sent).
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Keep what was typed, valid or not, so the textarea shows it again.
        return data


class SegmentForm(forms.ModelForm):
    key = forms.CharField(
        max_length=KEY_MAX_LENGTH,
        validators=[RegexValidator(KEY_PATTERN, "Letters, digits, hyphens and underscores only.")],
        help_text="A short name for integrations and the API, e.g. browsing-shoes. "
        "It cannot be changed later.",
    )
    name = forms.CharField(
        max_length=200, help_text="What marketers see, e.g. Currently browsing shoes."
    )
    description = forms.CharField(
        required=False,
        max_length=10000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Who this is for and how it is used (optional).",
    )
    min_size = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        initial=0,
        label="Minimum size",
        help_text="Below this many members the segment is not activated: no export or "
        "decision uses it, so that no audience singles a person out.",
    )
    enabled = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Evaluated in real time as events arrive, and refreshed regularly.",
    )
    condition = ConditionField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "spellcheck": "false"}),
        help_text=CONDITION_HELP,
    )

    class Meta:
        model = Segment
        fields = ["key", "name", "description", "condition", "min_size", "enabled"]

    def clean_key(self) -> str:
        key: str = self.cleaned_data["key"]
        if key in RESERVED_KEYS:
            raise forms.ValidationError(f"{key!r} is reserved: choose another key.")
        return key

    def clean_description(self) -> str:
        return _no_nul(self.cleaned_data["description"])

    def clean_name(self) -> str:
        return _no_nul(self.cleaned_data["name"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "condition" not in cleaned:
            return cleaned
        condition = cleaned["condition"]
        if contains_nul(condition):
            self.add_error("condition", "NUL characters (\\u0000) are not allowed.")
            return cleaned
        # On change the key is read-only (not a form field): the stored one.
        own_key = self.instance.key if self.instance.pk else cleaned.get("key")
        errors = condition_errors(condition, segment_lookups(own_key=own_key))
        for error in errors:
            self.add_error("condition", error)
        return cleaned


def _no_nul(value: str) -> str:
    if contains_nul(value):
        raise forms.ValidationError("NUL characters (\\u0000) are not allowed.")
    return value

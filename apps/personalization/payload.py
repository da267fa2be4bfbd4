"""The content a variant carries: a small, checked JSON object.

Keys (all optional, at least one): ``headline``, ``body``, ``image_url``,
``cta_text``, ``cta_url``, ``html`` (a snippet the site renders itself; the admin
previews it in a sandboxed iframe), and ``data`` (any JSON object the site's
template reads). Unknown keys are refused so that a typo ("headLine") is a 400,
not a blank banner.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from apps.common.validators import contains_nul

TEXT_LIMITS = {"headline": 200, "body": 5000, "cta_text": 100, "html": 20000}
URL_KEYS = ("image_url", "cta_url")
URL_MAX_LENGTH = 2000
PAYLOAD_KEYS = (*TEXT_LIMITS, *URL_KEYS, "data")


def payload_errors(payload: Any) -> dict[str, str]:
    """Field -> what is wrong with it ("" key: the payload as a whole)."""
    if not isinstance(payload, dict):
        return {"": 'The payload is a JSON object, e.g. {"headline": "..."}.'}
    if not payload:
        return {"": "The payload needs at least one of " + ", ".join(PAYLOAD_KEYS) + "."}
    errors: dict[str, str] = {}
    for key, value in payload.items():
        if key in TEXT_LIMITS:
            if not isinstance(value, str):
                errors[key] = "Must be a string."
            elif len(value) > TEXT_LIMITS[key]:
                errors[key] = f"At most {TEXT_LIMITS[key]} characters."
            elif contains_nul(value):
                errors[key] = "Cannot contain a NUL character."
        elif key in URL_KEYS:
            if not isinstance(value, str) or not _http_url(value):
                errors[key] = "Must be an absolute http(s) URL."
        elif key == "data":
            if not isinstance(value, dict):
                errors[key] = "Must be a JSON object."
            elif contains_nul(value):
                errors[key] = "Cannot contain a NUL character."
        else:
            errors[str(key)] = "Unknown key; the payload takes " + ", ".join(PAYLOAD_KEYS) + "."
    return errors


def _http_url(value: str) -> bool:
    if len(value) > URL_MAX_LENGTH or contains_nul(value) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)

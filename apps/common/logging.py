"""Keep personal data out of request logs.

Profiles are addressed by external ids in URL paths
(``/api/v1/profiles/email:ada@example.com/consents``), and both Django's request
logger ("Not Found: <path>" for every 4xx) and gunicorn's access log write paths.
``RedactPersonalData`` rewrites such records before any handler sees them:

* a path segment after ``/profiles/`` that is an external id keeps its type only
  (``/profiles/email:[redacted]/consents``), whatever the type (custom types too);
* ``email:``, ``phone:``, ``user_id:``, ``anonymous_id:`` values elsewhere (query
  strings, referrers) likewise;
* anything that looks like an email address, also URL-encoded, goes.

Django's loggers get it from ``LOGGING`` (cdp/settings/base.py); gunicorn's through
``cdp/gunicorn.py`` (``-c cdp/gunicorn.py``). Imports nothing from Django, so the
gunicorn master can load it before the application.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_COLON = r"(?::|%3A)"
# /profiles/<type>:<value>  (any type, so custom identifier types are covered)
_PROFILE_SEGMENT = re.compile(rf"(/profiles/)([A-Za-z0-9_.-]+){_COLON}[^/?#\s\"']+", re.I)
_TYPED = re.compile(
    rf"\b(email|phone|user_id|anonymous_id|userId|anonymousId){_COLON}[^/?&#\s\"']+", re.I
)
# Linear in the line's length, which an attacker controls: the address must start
# a token (the lookbehind), and its local part, taken possessively, is a run of
# plain characters and %XX escapes other than %40, so it never gives back what it
# took (an unanchored, backtracking pattern is quadratic on a long path).
_EMAIL = re.compile(
    r"(?<![^\s/\"'?&=:;,<>()\[\]])"
    r"(?:[^\s/\"'?&=:;,<>()\[\]@%]|%(?!40)[0-9A-Fa-f]{2})++"
    r"(?:@|%40)[^\s/\"'?&#:;,<>()\[\]@%]{1,253}\.[A-Za-z]{2,63}",
    re.I,
)


def redact(text: str) -> str:
    text = _PROFILE_SEGMENT.sub(rf"\1\2:{REDACTED}", text)
    text = _TYPED.sub(rf"\1:{REDACTED}", text)
    if "@" not in text and "%40" not in text:
        return text
    return _EMAIL.sub(REDACTED, text)


class RedactPersonalData(logging.Filter):
    """Rewrites a record's message without personal data (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True

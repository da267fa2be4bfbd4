"""Keep personal data out of logs.

Profiles are addressed by external ids in URL paths
(``/api/v1/profiles/email:ada@example.com/consents``), and both Django's request
logger ("Not Found: <path>" for every 4xx) and gunicorn's access log write paths;
tracebacks quote what the database refused. ``redact`` takes out:

* a path segment after ``/profiles/`` that is an external id keeps its type only
  (``/profiles/email:[redacted]/consents``), whatever the type (custom types too);
* ``email:``, ``phone:``, ``user_id:``, ``anonymous_id:`` values elsewhere (query
  strings, referrers) likewise;
* anything that looks like an email address, also URL-encoded, goes;
* the values of a database error's detail (PostgreSQL's ``Key (type, value)=(email,
  ada@example.com) already exists`` and ``Failing row contains (...)``), which
  reach logs in the tracebacks of failed requests and tasks;
* phone numbers written in E.164 (``+4915112345678``).

Messages get it from ``RedactPersonalData``; whole formatted lines, tracebacks
included, from ``RedactingFormatter``. Django's loggers get both from ``LOGGING``
(cdp/settings/base.py), Celery's from ``celery_logging_redact`` (cdp/celery.py),
gunicorn's through ``cdp/gunicorn.py`` (``-c cdp/gunicorn.py``). Imports nothing
from Django, so the gunicorn master can load it before the application.
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


# A database error's detail names the values: everything after "Key (columns)=" or
# "Failing row contains " to the end of its line goes (values may hold parentheses,
# so the closing one cannot be told apart; the line's end can).
# (Columns may be expressions: "Key (type, lower(value))=". A colour code ends the
# text redacted, so that a coloured line stays readable.)
_DB_KEY = re.compile(r"(\bKey \((?:[^()\n]|\([^()\n]{0,200}\)){0,500}\)=)\([^\n\x1b]*")
_DB_ROW = re.compile(r"(\bFailing row contains )\([^\n\x1b]*")
_E164 = re.compile(r"(?<![\w+%])(?:\+|%2B)[1-9]\d{7,14}\b", re.I)


def redact(text: str) -> str:
    text = _PROFILE_SEGMENT.sub(rf"\1\2:{REDACTED}", text)
    text = _TYPED.sub(rf"\1:{REDACTED}", text)
    if "Key (" in text or "Failing row" in text:
        text = _DB_KEY.sub(rf"\1({REDACTED})", text)
        text = _DB_ROW.sub(rf"\1({REDACTED})", text)
    if "+" in text or "%2" in text:
        text = _E164.sub(REDACTED, text)
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


class RedactingFormatter(logging.Formatter):
    """Formats as ``logging.Formatter`` does (or as ``inner``, another handler's
    formatter, does), then redacts the whole text: the message, and the traceback
    and exception message of a logged exception, which ``RedactPersonalData`` does
    not see (they are formatted after filters run)."""

    def __init__(self, *args: object, inner: logging.Formatter | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record) if self.inner is not None else super().format(record)
        return redact(text)


def handlers_redact(logger: logging.Logger) -> None:
    """Make every handler of ``logger`` redact all it writes, keeping its format
    (idempotent)."""
    for handler in logger.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(inner=handler.formatter or logging.Formatter()))

"""Personal data stays out of request logs (Django's and gunicorn's)."""

from __future__ import annotations

import logging
import runpy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from django.test import Client

from apps.common.logging import redact

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "Not Found: /api/v1/profiles/email:Ada@Example.com/consents",
            "Not Found: /api/v1/profiles/email:[redacted]/consents",
        ),
        (
            "Not Found: /api/v1/profiles/phone:+4915112345678",
            "Not Found: /api/v1/profiles/phone:[redacted]",
        ),
        (
            "Not Found: /api/v1/profiles/crm_id%3AC-42/events",
            "Not Found: /api/v1/profiles/crm_id:[redacted]/events",
        ),
        (
            '"GET /api/v1/profiles/user_id:42/consents/check?purpose=ads HTTP/1.1" 404',
            '"GET /api/v1/profiles/user_id:[redacted]/consents/check?purpose=ads HTTP/1.1" 404',
        ),
        (
            "GET /x?subject=anonymous_id:abc-1&next=1 ref https://a.io/?m=ada%40example.com",
            "GET /x?subject=anonymous_id:[redacted]&next=1 ref https://a.io/?m=[redacted]",
        ),
        # an address with escapes in its local part, whole (not "john%[redacted]")
        ("GET /u?to=john%2Bdoe%40example.com&a=1", "GET /u?to=[redacted]&a=1"),
        ("mail jo.hn+news@example.co.uk, ok", "mail [redacted], ok"),
        # a local part longer than addresses may have: still all of it
        ("Not Found: /v1/x/" + "a" * 80 + "@example.com", "Not Found: /v1/x/[redacted]"),
        ("100%25 off at /v1/m", "100%25 off at /v1/m"),
        ("Not Found: /api/v1/profiles/merge", "Not Found: /api/v1/profiles/merge"),
        ("GET /admin/consent/purpose/ 200", "GET /admin/consent/purpose/ 200"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def request_log() -> Iterator[list[str]]:
    handler = _Capture()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


@pytest.mark.django_db
def test_a_404_on_a_profile_path_logs_no_email(api_client: Client, request_log: list[str]) -> None:
    # when: a profile that does not exist is asked for by email
    response = api_client.get("/api/v1/profiles/email:Nobody.Here@example.com/consents")
    # then: Django logs the 404, without the address
    assert response.status_code == 404
    assert request_log == ["Not Found: /api/v1/profiles/email:[redacted]/consents"]


def test_gunicorns_access_log_is_redacted(tmp_path: Path) -> None:
    from gunicorn.config import Config

    # given: gunicorn configured by cdp/gunicorn.py, as docker-compose starts it
    settings = runpy.run_path(str(ROOT / "cdp" / "gunicorn.py"))
    assert settings["accesslog"] == "-"
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    assert "gunicorn cdp.wsgi -c cdp/gunicorn.py" in command["command"]
    cfg = Config()
    cfg.set("logger_class", settings["logger_class"])
    cfg.set("accesslog", str(tmp_path / "access.log"))
    log = cfg.logger_class(cfg)
    # when: it logs a request for a profile by email
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/api/v1/profiles/email:ada@example.com/consents",
        "PATH_INFO": "/api/v1/profiles/email:ada@example.com/consents",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_REFERER": "https://shop.example.com/account?email=ada%40example.com",
    }
    resp = SimpleNamespace(status="404 Not Found", headers=[], sent=58)
    log.access(resp, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=3))
    for handler in log.access_log.handlers:
        handler.flush()
    # then: the line is there, the address is not
    line = (tmp_path / "access.log").read_text()
    assert '"GET /api/v1/profiles/email:[redacted]/consents HTTP/1.1" 404 58' in line
    assert "ada" not in line.lower()

"""Personal data stays out of logs: request lines (Django's and gunicorn's), and the
tracebacks of failed requests and tasks (Django's, Celery's and gunicorn's)."""

from __future__ import annotations

import logging
import os
import runpy
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from django.test import Client

from apps.common.logging import RedactingFormatter, redact

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
        # a database error's detail, as tracebacks quote it
        (
            "DETAIL:  Key (type, value)=(email, ada@example.com) already exists.",
            "DETAIL:  Key (type, value)=([redacted])",
        ),
        (
            'DETAIL:  Failing row contains (42, phone, (555) 010-9999, {"a": 1}).\nnext line',
            "DETAIL:  Failing row contains ([redacted])\nnext line",
        ),
        ("sms to +4915112345678 failed", "sms to [redacted] failed"),
        ("GET /x?phone=%2B4915112345678&a=1", "GET /x?phone=[redacted]&a=1"),
        (
            "DETAIL:  Key (type, lower(value::text))=(phone, (555) 010-9999) already exists.",
            "DETAIL:  Key (type, lower(value::text))=([redacted])",
        ),
        # a coloured line keeps its colour codes
        ("\x1b[31mKey (email)=(ada@example.com)\x1b[0m", "\x1b[31mKey (email)=([redacted])\x1b[0m"),
        ("retry +3 in 12345678 s", "retry +3 in 12345678 s"),
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


def _record_with_exception(name: str) -> logging.LogRecord:
    try:
        raise ValueError(
            "duplicate key value violates unique constraint\n"
            "DETAIL:  Key (type, value)=(email, ada@example.com) already exists."
        )
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "task failed", (), exc_info)


def test_djangos_log_lines_redact_tracebacks() -> None:
    # given: the console handler LOGGING gives the root logger
    handlers = [
        h for h in logging.getLogger().handlers if isinstance(h.formatter, RedactingFormatter)
    ]
    assert handlers, "LOGGING's console handler formats with RedactingFormatter"
    # when: an exception quoting an email is logged through it
    text = handlers[0].format(_record_with_exception("apps.events"))
    # then: the traceback is there, the address is not
    assert "Traceback (most recent call last)" in text
    assert "ValueError: duplicate key value" in text
    assert "Key (type, value)=([redacted])" in text
    assert "ada" not in text


def _worker_announces(signal: Any, logger: logging.Logger) -> None:
    """Send a Celery logging signal as the worker does once it set up ``logger``."""
    import cdp.celery  # noqa: F401  (connects the receivers, as the worker does)

    signal.send(
        sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False
    )


def test_celerys_worker_log_handlers_redact_tracebacks() -> None:
    from celery.signals import after_setup_logger, after_setup_task_logger

    for signal in (after_setup_logger, after_setup_task_logger):
        # given: a logger with a handler as the worker sets one up
        logger = logging.getLogger(f"test.celery.{signal.name}")
        handler = _Capture()
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        logger.addHandler(handler)
        try:
            # when: the worker announces its logging set-up, then a task fails
            _worker_announces(signal, logger)
            logger.handle(_record_with_exception(logger.name))
        finally:
            logger.removeHandler(handler)
        # then: the worker's own format is kept, the address is gone
        (line,) = handler.lines
        assert line.startswith("[ERROR] task failed\nTraceback")
        assert "ada" not in line


def test_celerys_pool_logger_redacts_too() -> None:
    from celery.signals import after_setup_logger
    from celery.utils.log import get_multiprocessing_logger

    # given: the pool's logger with a handler, as the worker configures it before
    # announcing the root logger's set-up
    pool_logger = get_multiprocessing_logger()
    handler = _Capture()
    handler.setFormatter(logging.Formatter("%(message)s"))
    pool_logger.addHandler(handler)
    try:
        _worker_announces(after_setup_logger, logging.getLogger("test.celery.root"))
        # when: the pool reports a child's error
        pool_logger.error("Pool process %r error: %r", 1, ValueError("ada@example.com"))
    finally:
        pool_logger.removeHandler(handler)
    # then: without the address
    assert handler.lines == ["Pool process 1 error: ValueError('[redacted]')"]


def test_gunicorns_error_log_redacts_tracebacks(tmp_path: Path) -> None:
    from gunicorn.config import Config

    settings = runpy.run_path(str(ROOT / "cdp" / "gunicorn.py"))
    cfg = Config()
    cfg.set("logger_class", settings["logger_class"])
    cfg.set("errorlog", str(tmp_path / "error.log"))
    log = cfg.logger_class(cfg)
    try:
        raise ValueError("Key (type, value)=(email, ada@example.com) already exists.")
    except ValueError:
        log.exception("Error handling request /api/v1/profiles/email:ada@example.com")
    for handler in log.error_log.handlers:
        handler.flush()
    text = (tmp_path / "error.log").read_text()
    assert "Error handling request /api/v1/profiles/email:[redacted]" in text
    assert "ValueError: Key (type, value)=([redacted])" in text
    assert "ada" not in text


@pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL", "").startswith(("redis://", "amqp://")),
    reason="a worker process needs a broker it can share (Redis in CI)",
)
@pytest.mark.parametrize(
    "settings_module",
    [
        "cdp.settings.local",  # the worker sets up its own handlers, as in production
        "cdp.settings.test",  # it leaves logging to Django's LOGGING
    ],
)
def test_a_worker_process_logs_no_email(
    tmp_path: Path, not_eager: None, settings_module: str
) -> None:
    from cdp.celery import app

    # given: a real worker process on a queue of its own
    queue = f"redact-test-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "cdp", "worker", "--pool=solo"]
    command += ["-Q", queue, "--loglevel=INFO", "--without-mingle", "--without-gossip"]
    with log_path.open("w") as log_file:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
        worker = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            _wait_for(log_path, "ready.")
            # when: it receives a message it cannot run, naming a person; it logs
            # the whole message body
            app.send_task(
                "cdp.no_such_task", args=["ada@example.com", "+4915112345678"], queue=queue
            )
            _wait_for(log_path, "unregistered task")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    # then: the body is logged without the address and the number
    text = log_path.read_text()
    assert "[redacted]" in text
    assert "ada@example.com" not in text
    assert "4915112345678" not in text


def _wait_for(path: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in the worker's log:\n{path.read_text()[-3000:]}")


def test_every_log_handler_redacts() -> None:
    # given: logging as Django set it up from LOGGING (Django's defaults included)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    # then: every handler that writes anywhere formats through RedactingFormatter
    # (pytest's own capture handlers aside)
    unredacted = [
        (logger.name, type(handler).__name__)
        for logger in loggers
        for handler in logger.handlers
        if not isinstance(handler, logging.NullHandler)
        and not type(handler).__module__.startswith("_pytest")
        and not isinstance(handler.formatter, RedactingFormatter)
    ]
    assert unredacted == []

"""gunicorn settings: ``gunicorn cdp.wsgi -c cdp/gunicorn.py`` (docker-compose.yml,
Dockerfile). Command-line options still override these.

Workers are ``gthread``: each process serves ``GUNICORN_THREADS`` (4) requests at
once on threads and keeps connections alive between requests (``keepalive``
seconds), so a client (a site's backend calling decide, a load balancer) does not
pay a TCP handshake and an accept per request, and a thread waiting on PostgreSQL
leaves the process to the others. ``WEB_CONCURRENCY`` processes (default: one per
core). Each thread holds its own persistent database connection
(``CONN_MAX_AGE``): processes x threads connections per web container.

The access log is on (stdout) and goes through the same redaction as Django's
request log: paths name people (``/api/v1/profiles/email:...``).
"""

import gc
import os
import sys
from pathlib import Path

from gunicorn.glogging import Logger

# The config is read before gunicorn changes into --chdir: find the project anyway.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.logging import handlers_redact

accesslog = "-"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
keepalive = 5


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    # Django, DRF and the app's modules are loaded by now: move them out of the
    # cyclic garbage collector's sight, so that its full collections (which stop
    # every thread of the process) scan what requests allocate, not the whole
    # framework again.
    gc.freeze()


class RedactingLogger(Logger):
    """gunicorn's logger, with personal data redacted from access and error lines."""

    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            handlers_redact(log)


logger_class = RedactingLogger

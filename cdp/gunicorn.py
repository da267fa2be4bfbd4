"""gunicorn settings: ``gunicorn cdp.wsgi -c cdp/gunicorn.py`` (docker-compose.yml,
Dockerfile). Command-line options still override these.

Workers are ``gthread``: each process serves ``GUNICORN_THREADS`` (4) requests at
once on threads and keeps connections alive between requests (``keepalive``
seconds), so a client (a site's backend calling decide, a load balancer) does not
pay a TCP handshake and an accept per request, and a thread waiting on PostgreSQL
leaves the process to the others. ``WEB_CONCURRENCY`` processes (default: one per
core this process may run on, ``sched_getaffinity``, so a container's cpuset and
not the host's core count; at most ``WORKERS_DEFAULT_MAX``). Each thread holds its
own persistent database connection (``CONN_MAX_AGE``): processes x threads
connections per web container, which must stay under PostgreSQL's
``max_connections`` (or PgBouncer's pool) with every container and worker counted.
Measured on two cores (bench/decide.py ``--compare 2x4,3x2,4x1,4x2``, bench/README.md):
one process per core with 4 threads spent the least CPU per decision in every
round (2.0 ms against 2.5-2.7 ms for 3 x 2, 4 x 1 and 4 x 2 on a loaded machine),
so these stay the defaults.
``GUNICORN_KEEPALIVE`` (5 s): set it above the load balancer's idle timeout (75
behind an AWS ALB, whose default is 60 s), or the balancer may reuse a connection
gunicorn has just closed (a 502).

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

WORKERS_DEFAULT_MAX = 8


def workers_default() -> int:
    """One process per core this process may use (a container's cpuset, not the
    host's cores), at most WORKERS_DEFAULT_MAX."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, WORKERS_DEFAULT_MAX))


accesslog = "-"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or workers_default())
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 5)


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

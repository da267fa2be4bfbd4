"""gunicorn settings: ``gunicorn cdp.wsgi -c cdp/gunicorn.py`` (docker-compose.yml,
Dockerfile). Command-line options still override these.

The access log is on (stdout) and goes through the same redaction as Django's
request log: paths name people (``/api/v1/profiles/email:...``).
"""

import sys
from pathlib import Path

from gunicorn.glogging import Logger

# The config is read before gunicorn changes into --chdir: find the project anyway.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.logging import handlers_redact

accesslog = "-"


class RedactingLogger(Logger):
    """gunicorn's logger, with personal data redacted from access and error lines."""

    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            handlers_redact(log)


logger_class = RedactingLogger

"""Test settings (STYLE.md): fast hasher, locmem email, eager Celery by default.

DATABASE_URL and CELERY_BROKER_URL still come from the environment, so the same
suite runs on embedded SQLite and, in CI, on PostgreSQL with a Redis broker.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")

from .base import *  # noqa: F403
from .base import BASE_DIR, CDP, CELERY_BROKER_URL, DATABASES, INSTALLED_APPS

# A test-only app whose stages and hooks the layering tests register.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.hooks_app"]

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests run tasks in-process unless a test starts a real worker (tests/test_worker.py),
# which consumes from CELERY_BROKER_URL (Redis in CI) or the in-memory transport.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so live-server and worker threads see one database.
    # var/ is git-ignored, so a fresh clone does not have it yet.
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}
CDP = {
    **CDP,
    "WRITE_KEY_CACHE_SECONDS": 0,
    "API_TOKEN_CACHE_SECONDS": 0,
    "CONSENT_CACHE_SECONDS": 0,
    # Deterministic: requests check when due (tests/personalization/test_refresher.py
    # runs the refresher itself).
    "DECIDE_REFRESHER": False,
    "ERASURE_HOOK_RETRY_DELAYS": [0, 0],
    # A task per request, at once (tests/events/test_tasks.py tests the gathering).
    "PROCESS_COALESCE_MS": 0,
    # The webhook tests' receiver listens on loopback (tests/exports test the refusal).
    "EXPORT_WEBHOOK_PRIVATE_NETWORKS": True,
}
# The in-test worker must leave pytest's log capture alone.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

"""Settings shared by every environment.

Everything is configured here; environment variables only switch integrations on
or off (STYLE.md, Settings). ``local``, ``test`` and ``production`` change defaults,
never features.
"""

from celery.schedules import crontab

from cdp.env import BASE_DIR, env

SECRET_KEY = env("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "apps.common",
    "apps.api_auth",
    "apps.identity",
    "apps.events",
    "apps.consent",
    "apps.segments",
    "apps.clustering",
    "apps.personalization",
    "apps.exports",
    "simple_history",
]

MIDDLEWARE = [
    "apps.common.middleware.healthz_middleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Records which admin made each change in the history tables.
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"
ASGI_APPLICATION = "cdp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The embedded default is a SQLite file so the quickstart runs on a bare machine;
# production and CI use PostgreSQL (DATABASE_URL=postgres://...).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the server read while a worker writes; the timeout rides out the
    # short write locks SQLite takes instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
}

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- CORS -----------------------------------------------------------------------
# Browser SDKs post events from the customer's own sites. Ingestion is the only
# cross-origin surface; the management API is never exposed to other origins.
CORS_URLS_REGEX = r"^/(v1|beacon)/.*$"
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = not CORS_ALLOWED_ORIGINS
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "content-encoding",
    "user-agent",
    "x-retry-count",
]
CORS_PREFLIGHT_MAX_AGE = 86400

# --- Django REST framework --------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.api_auth.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.api_auth.permissions.ModelPermissions"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apps.common.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.common.exceptions.api_exception_handler",
    # DRF's other two (form and multipart) as they were; JSON nested too deep is a 400.
    "DEFAULT_PARSER_CLASSES": [
        "apps.common.parsers.DepthSafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CDP management API",
    "DESCRIPTION": (
        "Profiles, their events and consent, and data-subject requests (segments "
        "and content decisions come in later versions). Authenticate with "
        "`Authorization: Bearer <token>`; create a token with `python manage.py "
        'create_api_token NAME`. Errors are `{"detail": ...}` (with `errors` per '
        "field for a 400). Event ingestion follows the Segment HTTP tracking API "
        "under `/v1/` and is not listed here."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # The bearer scheme comes from apps.api_auth.authentication.BearerTokenScheme.
    # Names for the choice sets several components share (else StatusAc1Enum...).
    "ENUM_NAME_OVERRIDES": {
        "ConsentStatusEnum": "apps.consent.models.ConsentStatus",
        "PrivacyRequestStatusEnum": "apps.consent.models.RequestStatus",
        "PrivacyRequestTypeEnum": "apps.consent.models.RequestType",
        "PrivacyRequestMoveEnum": "apps.consent.api.serializers.MOVE_TARGETS",
        "PrivacyRequestRejectEnum": "apps.consent.api.serializers.REJECT_TARGETS",
        "ClusteringRunStatusEnum": "apps.clustering.models.RunStatus",
        "ClusteringFeatureEnum": "apps.clustering.extract.CLUSTERABLE",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.identity.api.schema.postprocess_external_ids",
        "apps.consent.api.schema.postprocess_purpose_keys",
    ],
}

# --- Celery -----------------------------------------------------------------------
# Unset broker: tasks run eagerly in-process (quickstart). Set: a real broker
# (Redis in production and CI).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 4 * 60
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
# The chunks of a clustering run (minutes each) have a queue of their own, so
# they never wait ahead of the event pipeline's tasks. A worker started without
# -Q consumes both queues; docker-compose runs one worker per queue.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES: dict[str, dict[str, str]] = {"celery": {}, "clustering": {}}
CELERY_TASK_ROUTES = {"apps.clustering.tasks.assign_chunk": {"queue": "clustering"}}
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request must never hang on a broker outage: publish once, quickly, and leave
# the event to the pending-event sweep if the broker is away.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The one place periodic work is scheduled; beat's DatabaseScheduler loads it.
CELERY_BEAT_SCHEDULE = {
    "events-process-pending": {
        "task": "apps.events.tasks.events_process_pending",
        "schedule": 60.0,
    },
    "segments-rfm-refresh": {
        "task": "apps.segments.tasks.rfm_refresh",
        "schedule": crontab(hour=1, minute=30),
    },
    # Windows expire on their own: whoever left one is out within this period.
    "segments-recheck-due": {
        "task": "apps.segments.tasks.segments_recheck_due",
        "schedule": 15.0,
    },
    "segments-refresh-all": {
        "task": "apps.segments.tasks.segments_refresh_all",
        "schedule": float(env.int("CDP_SEGMENT_REFRESH_SECONDS", default=300)),
    },
    "events-pipeline-sweep": {
        "task": "apps.events.tasks.pipeline_sweep",
        "schedule": 60.0,
    },
    "identity-dedup-incremental": {
        "task": "apps.identity.dedup.tasks.dedup_run",
        "schedule": 15 * 60.0,
    },
    "consent-erasure-resume": {
        "task": "apps.consent.tasks.erasure_resume_stalled",
        "schedule": 10 * 60.0,
    },
    "consent-dsr-deadlines": {
        "task": "apps.consent.tasks.dsr_deadlines_check",
        "schedule": crontab(hour=7, minute=0),
    },
    "consent-retention-purge": {
        "task": "apps.consent.tasks.retention_purge",
        "schedule": crontab(hour=2, minute=15),
    },
    "exports-webhooks-tick": {"task": "apps.exports.tasks.webhooks_tick", "schedule": 10.0},
    "exports-files-expire": {
        "task": "apps.exports.tasks.export_files_expire",
        "schedule": crontab(hour=2, minute=45),
    },
    "identity-dedup-full-weekly": {
        "task": "apps.identity.dedup.tasks.dedup_run",
        "schedule": crontab(hour=3, minute=30, day_of_week="sun"),
        "kwargs": {"full": True},
    },
}

# --- Logging ----------------------------------------------------------------------
# Personal data stays out of logs: messages log ids and counts, never payloads.
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# Request paths name people (/api/v1/profiles/email:...): the request loggers
# redact them (apps/common/logging.py; gunicorn's access log: cdp/gunicorn.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_personal_data": {"()": "apps.common.logging.RedactPersonalData"},
    },
    "formatters": {
        # Redacts whole lines, tracebacks included (apps/common/logging.py).
        "plain": {
            "()": "apps.common.logging.RedactingFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers (a console one with DEBUG on, mail_admins) would
        # write tracebacks unredacted: everything goes through the root's.
        "django": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # redis-py gives this logger a handler of its own unless it exists already.
        "push_response": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"filters": ["redact_personal_data"]},
        "django.server": {
            "handlers": ["console"],
            "filters": ["redact_personal_data"],
            "propagate": False,
        },
    },
}

# --- CDP ----------------------------------------------------------------------------
CDP = {
    # Whole request body, after decompression (Segment: 500 KB per batch; we are
    # more generous because server-side imports send large batches).
    "MAX_REQUEST_BYTES": env.int("CDP_MAX_REQUEST_BYTES", default=4 * 1024 * 1024),
    # One event, serialized (Segment's limit).
    "MAX_EVENT_BYTES": env.int("CDP_MAX_EVENT_BYTES", default=32 * 1024),
    # How long a write key lookup is cached per process; a disabled key stops
    # working within this many seconds.
    "WRITE_KEY_CACHE_SECONDS": env.int("CDP_WRITE_KEY_CACHE_SECONDS", default=5),
    # How long an API token's or publishable key's lookup (with the user's
    # permissions) is cached per process: a revoked token, a deactivated user or a
    # permission change takes effect everywhere within this many seconds.
    "API_TOKEN_CACHE_SECONDS": env.float("CDP_API_TOKEN_CACHE_SECONDS", default=1.0),
    # Events still unprocessed after this long are re-enqueued by the sweep (a
    # broker outage or a crashed worker delays processing, never loses it).
    "PENDING_SWEEP_AFTER_SECONDS": env.int("CDP_PENDING_SWEEP_AFTER_SECONDS", default=60),
    "PROCESS_BATCH_SIZE": env.int("CDP_PROCESS_BATCH_SIZE", default=500),
    # A cart add or checkout start with no order within this long is abandoned.
    "CART_ABANDONED_AFTER_SECONDS": env.int("CDP_CART_ABANDONED_AFTER_SECONDS", default=3600),
    # Pipeline batches (apps/events/pipeline.py) one sweep runs at most.
    "PIPELINE_SWEEP_BATCHES": env.int("CDP_PIPELINE_SWEEP_BATCHES", default=200),
    # Plausible client times (apps/events/parsing.py, time_window): an event dated
    # before January 1st of this year, or more than this many seconds past the
    # server's clock, is timed on arrival; what the client sent is kept.
    "EARLIEST_EVENT_YEAR": env.int("CDP_EARLIEST_EVENT_YEAR", default=2000),
    # /v1/import carries history: back to this year.
    "IMPORT_EARLIEST_EVENT_YEAR": env.int("CDP_IMPORT_EARLIEST_EVENT_YEAR", default=1990),
    "MAX_FUTURE_EVENT_SECONDS": env.int("CDP_MAX_FUTURE_EVENT_SECONDS", default=24 * 3600),
    # Each web process gathers stored events' ids this long and hands them to the
    # workers together (apps/events/enqueue.py); 0 publishes a task per request.
    "PROCESS_COALESCE_MS": env.int("CDP_PROCESS_COALESCE_MS", default=100),
    # Behind a reverse proxy, take the client address from X-Forwarded-For.
    "TRUST_X_FORWARDED_FOR": env.bool("CDP_TRUST_X_FORWARDED_FOR", default=False),
    # Default region for phone numbers written without a country code.
    "PHONE_DEFAULT_REGION": env("CDP_PHONE_DEFAULT_REGION", default="US"),
    # Consent purposes and the suppression list are cached per process this long.
    "CONSENT_CACHE_SECONDS": env.int("CDP_CONSENT_CACHE_SECONDS", default=5),
    # Key of the hashes kept instead of IP addresses (consent proof) and of erased
    # people's identifiers (suppression). Set it once and keep it: by default it is
    # derived from SECRET_KEY, and rotating that would forget who was erased.
    "PRIVACY_HASH_KEY": env("CDP_PRIVACY_HASH_KEY", default=""),
    # Keys of the secrets stored encrypted (webhook signing secrets,
    # apps/common/crypto.py), comma-separated: the first encrypts, any decrypts.
    # Rotate: put a new key first, run `manage.py secrets_reencrypt`, drop the old.
    # Unset: one key derived from SECRET_KEY (development; production requires it).
    "SECRETS_KEYS": env.list("CDP_SECRETS_KEY", default=[]),
    # Retention (0 keeps forever): events, and refused payloads (raw client data).
    "EVENT_RETENTION_DAYS": env.int("CDP_EVENT_RETENTION_DAYS", default=730),
    "REJECTED_EVENT_RETENTION_DAYS": env.int("CDP_REJECTED_EVENT_RETENTION_DAYS", default=30),
    # Erasure: a failed deletion hook (export destination) is tried again after
    # each of these delays (seconds), then the request completes "with failures".
    "ERASURE_HOOK_RETRY_DELAYS": env.list(
        "CDP_ERASURE_HOOK_RETRY_DELAYS", cast=int, default=[60, 600, 1800]
    ),
    # Steps (event batches of 5000...) one erasure task runs before it enqueues
    # the rest, well inside the task time limit.
    "ERASURE_STEPS_PER_TASK": env.int("CDP_ERASURE_STEPS_PER_TASK", default=40),
    # BLAS/OpenMP threads a clustering fit may use. A worker process shares its
    # node with the other workers: with one thread per core in every process,
    # threads outnumber the cores (bench/recluster.py: a fit 8x slower on two
    # busy cores). Raise it on a node that runs nothing but the one fit.
    "CLUSTERING_THREADS": env.int("CDP_CLUSTERING_THREADS", default=1),
    # A run's assignment is a map over chunks of this many profiles (Celery tasks
    # that workers on any node take). The run's own process takes chunks too unless
    # CLUSTERING_ASSIGN_LOCAL is off (then only other workers do: keep a worker
    # free for them, or the run waits for its own chunks).
    "CLUSTERING_CHUNK_SIZE": env.int("CDP_CLUSTERING_CHUNK_SIZE", default=250_000),
    "CLUSTERING_ASSIGN_LOCAL": env.bool("CDP_CLUSTERING_ASSIGN_LOCAL", default=True),
    # How stale a web process's copy of the content mapping (placements, variants,
    # rules) may be: it checks the database's mapping version at most this often.
    "DECIDE_MAPPING_CHECK_MS": env.int("CDP_DECIDE_MAPPING_CHECK_MS", default=500),
    # A background thread per process does those checks (and the consent, identity
    # rules and origins reloads decide reads) so requests do not wait for them
    # (apps/personalization/refresher.py). Off: the request that finds one due does it.
    "DECIDE_REFRESHER": env.bool("CDP_DECIDE_REFRESHER", default=True),
    # Webhook destinations may name private, loopback and link-local addresses
    # (a receiver inside one's own network). Off: a webhook URL is a way into the
    # network the CDP runs in (its database, its cloud's metadata service).
    "EXPORT_WEBHOOK_PRIVATE_NETWORKS": env.bool(
        "CDP_EXPORT_WEBHOOK_PRIVATE_NETWORKS", default=False
    ),
    # Export runs' files (they name people) are deleted this many days after the
    # run finished (0 keeps them); the run and its file list stay, marked expired.
    "EXPORT_FILE_RETENTION_DAYS": env.int("CDP_EXPORT_FILE_RETENTION_DAYS", default=30),
}

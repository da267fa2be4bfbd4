"""Production: the same features as base, with hardened transport settings.

It never falls back to an insecure value: a missing or weak secret, or DEBUG
switched on, stops the process at start with a message naming what to set
(``manage.py check --deploy`` is clean on these defaults; tests/test_deploy.py).
"""

from django.core.exceptions import ImproperlyConfigured

from cdp.env import env

from .base import *  # noqa: F403
from .base import CDP, REST_FRAMEWORK, SECRET_KEY

# The keys other settings files or the docs set where no secret is needed: public,
# so never acceptable here.
_PUBLIC_KEYS = {"insecure-local-only-key-change-me", "test-only-secret-key"}


def _require_strong(name: str, value: str) -> str:
    # Django's own bar (security.W009): 50 characters, 5 different ones.
    if value in _PUBLIC_KEYS or len(value) < 50 or len(set(value)) < 5:
        raise ImproperlyConfigured(
            f"{name} must be a long random value (at least 50 characters), not a "
            'placeholder: python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    return value


if env.bool("DEBUG", default=False):
    raise ImproperlyConfigured(
        "DEBUG is on with production settings. Unset DEBUG, or run the development "
        "settings (DJANGO_SETTINGS_MODULE=cdp.settings.local) on your own machine."
    )
DEBUG = False
_require_strong("SECRET_KEY", SECRET_KEY)
# The key of the suppression list's hashes must not follow SECRET_KEY (rotating
# that would forget who was erased): production names it, or refuses to start.
# The keys of the secrets stored encrypted (webhook signing secrets): derived from
# SECRET_KEY elsewhere, which would tie every stored secret to it. Every key of the
# list (the first encrypts, the others still decrypt during a rotation) is one.
CDP = {
    **CDP,
    "PRIVACY_HASH_KEY": _require_strong("CDP_PRIVACY_HASH_KEY", env("CDP_PRIVACY_HASH_KEY")),
    "SECRETS_KEYS": [
        _require_strong("CDP_SECRETS_KEY", key.strip())
        for key in env.list("CDP_SECRETS_KEY", default=[]) or [""]
    ],
}

# Behind a TLS-terminating proxy that sets X-Forwarded-Proto. Health probes over
# plain HTTP are answered before the redirect (apps/common/middleware.py).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
# Browsers send the HSTS header's promise only for answers over HTTPS, so a plain
# HTTP install (docker compose on localhost) is not pinned by it.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading puts the domain in the browsers' built-in lists, a commitment only
# the domain's owner should make: opt in with SECURE_HSTS_PRELOAD=true. Until
# then Django's reminder (security.W021) is silenced, not the other checks.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# base chose these from the DEBUG variable; production fixes them whatever it says.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

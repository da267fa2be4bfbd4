"""Production: the same features as base, with hardened transport settings."""

from cdp.env import env

from .base import *  # noqa: F403
from .base import CDP

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
CONN_MAX_AGE = env.int("CONN_MAX_AGE", default=60)
# The key of the suppression list's hashes must not follow SECRET_KEY (rotating
# that would forget who was erased): production names it, or refuses to start.
CDP = {**CDP, "PRIVACY_HASH_KEY": env("CDP_PRIVACY_HASH_KEY")}

"""The project package.

The one place that decides which settings run when the environment names none:
production. Every server and worker entry point (``gunicorn cdp.wsgi``,
``cdp.asgi``, ``celery -A cdp``) imports this package first, so none of them can
start on development settings by accident; production settings refuse to start
without real secrets (cdp/settings/production.py). Developer tools name their
own: ``manage.py`` and the Makefile choose ``cdp.settings.local``, pytest
``cdp.settings.test``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.production")

from .celery import app as celery_app

__all__ = ("celery_app",)

"""Start-up checks: what would otherwise fail on the first request instead.

Without ``collectstatic`` the manifest storage has no manifest, and every page
that names a static file (admin login, API docs) answers 500 ("Missing
staticfiles manifest entry"). The servers (cdp/wsgi.py, cdp/asgi.py) refuse to
start instead, and ``manage.py check --deploy`` reports it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def static_manifest_missing() -> str | None:
    """Why static files cannot be served, or None when they can."""
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return None
    if staticfiles_storage.exists(staticfiles_storage.manifest_name):
        return None
    path = f"{settings.STATIC_ROOT}/{staticfiles_storage.manifest_name}"
    return (
        f"Static files are not collected ({path} is missing), so the admin and the API "
        "docs would answer 500. Run `python manage.py collectstatic --noinput` with the "
        "same settings and STATIC_ROOT first (the Docker image does it when it is built)."
    )


def static_files_require() -> None:
    """Stop a server at start when its static files are not collected."""
    problem = static_manifest_missing()
    if problem:
        raise ImproperlyConfigured(problem)


@checks.register(checks.Tags.staticfiles, deploy=True)
def static_manifest_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    problem = static_manifest_missing()
    return [checks.Error(problem, id="cdp.E001")] if problem else []

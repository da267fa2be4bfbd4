"""The WSGI entry point (``gunicorn cdp.wsgi``). Importing the ``cdp`` package
chose production settings unless the environment names others (cdp/__init__.py)."""

from django.core.wsgi import get_wsgi_application

from apps.common.checks import static_files_require

application = get_wsgi_application()
static_files_require()

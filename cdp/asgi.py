"""The ASGI entry point. Importing the ``cdp`` package chose production settings
unless the environment names others (cdp/__init__.py)."""

from django.core.asgi import get_asgi_application

from apps.common.checks import static_files_require

application = get_asgi_application()
static_files_require()

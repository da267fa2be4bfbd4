from django.apps import AppConfig


class HooksAppConfig(AppConfig):
    """A test-only app, installed by cdp/settings/test.py, with a table of its own:
    what a higher app's pipeline stage or lifecycle handler writes. It registers
    nothing by itself; each test registers what it needs (tests/registry.py)."""

    name = "tests.hooks_app"
    label = "hooks_app"
    default_auto_field = "django.db.models.BigAutoField"

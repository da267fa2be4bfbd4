from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "apps.exports"
    label = "exports"
    verbose_name = "Exports and destinations"

    def ready(self) -> None:
        # The erasure hooks exports register with consent (apps/common/registry.py).
        from . import registrations  # noqa: F401

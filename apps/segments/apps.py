from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "apps.segments"
    label = "segments"
    verbose_name = "Segments and features"

    def ready(self) -> None:
        # The pipeline stage, lifecycle handlers, erasers and profile sections
        # segments register with the layers below (apps/common/registry.py).
        from . import registrations  # noqa: F401

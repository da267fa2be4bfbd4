from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "apps.events"
    label = "events"
    verbose_name = "Events"

    def ready(self) -> None:
        # Events plug into the layers below them (apps/common/registry.py): what a
        # merge, a split or an erasure of identity and consent does to events.
        from . import handlers, privacy  # noqa: F401

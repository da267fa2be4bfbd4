from django.apps import AppConfig


class PersonalizationConfig(AppConfig):
    name = "apps.personalization"
    label = "personalization"
    verbose_name = "Personalization"

    def ready(self) -> None:
        # Lifecycle handlers, erasers, the mapping cache's invalidation and the
        # publishable keys' CORS check (apps/common/registry.py, django-cors-headers).
        from . import registrations  # noqa: F401

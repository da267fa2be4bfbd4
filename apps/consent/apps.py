from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "apps.consent"
    label = "consent"
    verbose_name = "Consent and privacy"

    def ready(self) -> None:
        # What a merge or a split of profiles (apps/identity/hooks.py) does to consent.
        from . import handlers  # noqa: F401
